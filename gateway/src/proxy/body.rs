//! The request body as forwarded to the backend, with an idle deadline: a client that stops
//! sending in the middle of a body (slow POST) is cut off after `body_idle_timeout` instead
//! of holding a backend connection and a worker slot forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why the forwarded request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No byte of the body arrived for the idle deadline.
    #[error("request body idle for more than {0:?}")]
    Idle(Duration),
    /// Reading from the client failed.
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// A client's request body with an idle deadline. The timer is allocated only if the body
/// ever has to wait (a GET's empty body never does).
#[derive(Debug)]
pub struct IdleTimeoutBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the timer is armed for the current wait.
    armed: bool,
}

impl IdleTimeoutBody {
    /// Wraps `inner`.
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            timeout,
            sleep: None,
            armed: false,
        }
    }
}

impl Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|r| r.map_err(BodyError::Read)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                let sleep = match &mut this.sleep {
                    Some(s) => {
                        if !this.armed {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.armed = true;
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(this.timeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (from the backend client) was caused by an idle request body.
pub fn is_idle_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(err.downcast_ref::<BodyError>(), Some(BodyError::Idle(_))) {
            return true;
        }
        cur = err.source();
    }
    false
}
