//! The deadlines of one HTTP connection's life after the handshake: first request, request
//! head, idle keep-alive, maximum age.
//!
//! hyper's own HTTP/1 header timer also runs while a keep-alive connection waits for its
//! next request, so it cannot tell "slow head" from "idle"; HTTP/2 has neither. Instead the
//! connection task keeps one [`Activity`] per connection (atomics, no lock), fed by the I/O
//! wrapper [`ActivityIo`] and by a guard around each request ([`Activity::enter`]), and one
//! timer armed at [`Activity::next_deadline`]. On expiry [`Activity::expired`] says what to
//! do. The decision logic is pure (time is passed in), so it is unit-tested without sleeping.
//!
//! Idle memory: an HTTP/1.1 connection that has been quiet for [`PARK_AFTER`] with nothing in
//! flight is *parked* (see `conn::ParkingH1`): [`ActivityIo`] answers hyper's next read with a
//! (fake) end of stream so hyper ends the connection at a message boundary and hands the I/O
//! back, which drops hyper's read and write buffers and its dispatcher. While parked, only the
//! TLS stream is kept; [`ActivityIo::poll_fill_prefix`] waits for the next plaintext with a
//! stack buffer and keeps what it read as a small prefix that the next hyper connection reads
//! first. [`Activity::park_at`] says when a connection may be parked; [`TrackedBody`] keeps
//! it from parking while a response body is still being sent.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::Limits;

/// What a connection has been doing, in milliseconds since it started serving HTTP.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Requests whose response head is not yet produced.
    in_flight: AtomicU32,
    /// Requests received so far.
    requests: AtomicU64,
    /// Last sign of life: the end of a request, or (HTTP/1) any byte read or written.
    last_active_ms: AtomicU64,
    /// HTTP/1: when the first byte of the next request head arrived (ms + 1; 0 = none).
    head_started_ms: AtomicU64,
    /// Whether bytes on the wire count as activity (HTTP/1). HTTP/2 PINGs and SETTINGS must
    /// not keep an idle connection alive, so only streams count there.
    track_io: AtomicBool,
    /// A deadline may have moved earlier (a head started, a request ended): the connection
    /// task re-arms its timer.
    rearm: AtomicBool,
    /// Response bodies handed to hyper and not yet finished (dropped).
    open_bodies: AtomicU32,
    /// The connection task asks [`ActivityIo`] to park the connection at hyper's next read.
    park: AtomicBool,
    /// Times hyper's connection was ended for parking (its buffers dropped).
    parks: AtomicU32,
}

/// How long an HTTP/1.1 connection must be quiet (no byte either way, nothing in flight)
/// before its HTTP state (hyper's buffers) is released. Short enough that idle keep-alive
/// connections cost little soon after their last response (nginx frees its request
/// buffers at once), long enough that back-to-back requests keep their HTTP state; a
/// parked connection's next request costs a new hyper connection and two AES key
/// expansions, a few microseconds.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(250);

/// Why a connection is closed by its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No complete request within `first_request_timeout` of the handshake: close now.
    FirstRequest,
    /// An HTTP/1 request head started but did not complete in time: close now.
    HeaderRead,
    /// No request in flight for `idle_timeout`: graceful close.
    Idle,
    /// `max_connection_age` reached: graceful close (in-flight requests finish).
    MaxAge,
}

impl Expiry {
    /// Whether in-flight work may finish (graceful) or the connection is dropped now.
    pub(crate) fn is_graceful(self) -> bool {
        matches!(self, Expiry::Idle | Expiry::MaxAge)
    }

    /// For logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expiry::FirstRequest => "no request within first_request_timeout_secs",
            Expiry::HeaderRead => "request head not complete within header_read_timeout_secs",
            Expiry::Idle => "idle for idle_timeout_secs",
            Expiry::MaxAge => "max_connection_age_secs reached",
        }
    }
}

/// Marks one request in flight; dropping it (response head produced, or the request
/// cancelled) records the activity.
#[derive(Debug)]
pub(crate) struct RequestGuard<'a>(&'a Activity);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.last_active_ms.store(self.0.now_ms(), Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.rearm.store(true, Relaxed);
    }
}

impl Activity {
    /// A connection starting now; `http1` says whether I/O counts as activity (false for
    /// HTTP/2 negotiated by ALPN; an HTTP/2 request switches it off too).
    pub(crate) fn new(http1: bool) -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            track_io: AtomicBool::new(http1),
            rearm: AtomicBool::new(false),
            open_bodies: AtomicU32::new(0),
            park: AtomicBool::new(false),
            parks: AtomicU32::new(0),
        }
    }

    /// Times the connection was parked (hyper's connection and buffers dropped).
    #[cfg(test)]
    pub(crate) fn parks(&self) -> u32 {
        self.parks.load(Relaxed)
    }

    /// When (ms since start) the connection may be parked (its HTTP state released): `None`
    /// while a request or a response body is in flight, a request head has started, or I/O
    /// does not count as activity (HTTP/2).
    pub(crate) fn park_at(&self) -> Option<u64> {
        if !self.track_io.load(Relaxed)
            || self.in_flight.load(Relaxed) > 0
            || self.open_bodies.load(Relaxed) > 0
            || self.head_started_ms.load(Relaxed) > 0
        {
            return None;
        }
        Some(self.last_active_ms.load(Relaxed) + PARK_AFTER.as_millis() as u64)
    }

    /// Asks the I/O wrapper to park the connection at hyper's next read.
    pub(crate) fn request_park(&self) {
        self.park.store(true, Relaxed);
    }

    /// Whether a park request is pending (not yet seen by the I/O wrapper).
    pub(crate) fn park_pending(&self) -> bool {
        self.park.load(Relaxed)
    }

    /// Whether the connection may be parked now (re-checked by the I/O wrapper at the read
    /// that would end hyper's connection).
    fn may_park_now(&self) -> bool {
        self.park_at().is_some_and(|at| self.now_ms() >= at)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The instant `ms` milliseconds after the start.
    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Milliseconds since the start (for [`Activity::next_deadline`] / [`Activity::expired`]).
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.now_ms()
    }

    /// The last sign of life, in ms since the start.
    pub(crate) fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Relaxed)
    }

    /// A request arrived (its head is complete).
    pub(crate) fn enter(&self, http2: bool) -> RequestGuard<'_> {
        if http2 {
            self.track_io.store(false, Relaxed);
        }
        self.in_flight.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.head_started_ms.store(0, Relaxed);
        RequestGuard(self)
    }

    fn on_io(&self, read: bool) {
        if !self.track_io.load(Relaxed) {
            return;
        }
        let now = self.now_ms();
        self.last_active_ms.store(now, Relaxed);
        if read && self.in_flight.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == 0 {
            self.head_started_ms.store(now + 1, Relaxed);
            self.rearm.store(true, Relaxed);
        }
    }

    /// Whether a deadline may have moved earlier since the last call (clears the flag).
    pub(crate) fn take_rearm(&self) -> bool {
        self.rearm.swap(false, Relaxed)
    }

    /// The next instant (ms since start) at which a limit may expire.
    pub(crate) fn next_deadline(&self, l: &Limits) -> u64 {
        let ms = |d: Duration| d.as_millis() as u64;
        let mut next = u64::MAX;
        if let Some(age) = l.max_connection_age {
            next = next.min(ms(age));
        }
        if self.requests.load(Relaxed) == 0 {
            next = next.min(ms(l.first_request_timeout));
        }
        if self.in_flight.load(Relaxed) == 0 {
            let head = self.head_started_ms.load(Relaxed);
            if head > 0 {
                next = next.min(head - 1 + ms(l.header_read_timeout));
            }
            next = next.min(self.last_active_ms.load(Relaxed) + ms(l.idle_timeout));
        }
        next
    }

    /// Which limit, if any, has expired at `now_ms`.
    pub(crate) fn expired(&self, l: &Limits, now_ms: u64) -> Option<Expiry> {
        let ms = |d: Duration| d.as_millis() as u64;
        if l.max_connection_age.is_some_and(|a| now_ms >= ms(a)) {
            return Some(Expiry::MaxAge);
        }
        if self.requests.load(Relaxed) == 0 && now_ms >= ms(l.first_request_timeout) {
            return Some(Expiry::FirstRequest);
        }
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let head = self.head_started_ms.load(Relaxed);
        if head > 0 && now_ms >= head - 1 + ms(l.header_read_timeout) {
            return Some(Expiry::HeaderRead);
        }
        if now_ms >= self.last_active_ms.load(Relaxed) + ms(l.idle_timeout) {
            return Some(Expiry::Idle);
        }
        None
    }
}

/// An I/O object that reports bytes read and written to an [`Activity`], and parks an idle
/// HTTP/1.1 connection on request (see the module docs).
#[derive(Debug)]
pub(crate) struct ActivityIo<T> {
    inner: T,
    activity: std::sync::Arc<Activity>,
    /// Plaintext read while parked, served before `inner` (`None` once consumed).
    prefix: Option<Bytes>,
    /// Everything written has been flushed (the last write-side call was a successful
    /// `poll_flush`): hyper holds no unsent bytes.
    write_clean: bool,
    /// A read was answered with a fake end of stream to park the connection; `poll_shutdown`
    /// then does nothing (the connection stays open).
    parked_eof: bool,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T, activity: std::sync::Arc<Activity>) -> Self {
        ActivityIo {
            inner,
            activity,
            prefix: None,
            write_clean: true,
            parked_eof: false,
        }
    }

    /// The wrapped stream.
    pub(crate) fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Whether the last read was a fake end of stream for parking (clears the flag).
    pub(crate) fn take_parked_eof(&mut self) -> bool {
        let parked = std::mem::take(&mut self.parked_eof);
        if parked {
            self.activity.parks.fetch_add(1, Relaxed);
        }
        parked
    }

    /// Puts `bytes` back in front of the stream (read again first).
    pub(crate) fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.prefix = Some(match self.prefix.take() {
            None => bytes,
            Some(rest) => {
                let mut v = Vec::with_capacity(bytes.len() + rest.len());
                v.extend_from_slice(&bytes);
                v.extend_from_slice(&rest);
                Bytes::from(v)
            }
        });
    }

    /// Bytes waiting in the prefix.
    pub(crate) fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, Bytes::len)
    }
}

/// Plaintext read at once while parked (on the stack; only what was read is kept).
const PARKED_READ: usize = 4096;

impl<T: AsyncRead + Unpin> ActivityIo<T> {
    /// While parked: waits for plaintext without holding a buffer, then keeps what one read
    /// returned as the prefix. `Ok(true)`: data is ready; `Ok(false)`: end of stream.
    pub(crate) fn poll_fill_prefix(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.prefix_len() > 0 {
            return Poll::Ready(Ok(true));
        }
        let mut stack = [0u8; PARKED_READ];
        let mut buf = ReadBuf::new(&mut stack);
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        self.activity.on_io(true);
        self.prefix = Some(Bytes::copy_from_slice(buf.filled()));
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(prefix) = self.prefix.as_mut() {
            // Already counted as activity when it was read.
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix.split_to(n));
            if prefix.is_empty() {
                self.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        // A plain load on the hot path; the flag is cleared only when set.
        let park = self.activity.park.load(Relaxed) && self.activity.park.swap(false, Relaxed);
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.activity.on_io(true),
            Poll::Pending if park && self.write_clean && self.activity.may_park_now() => {
                // Nothing to read, nothing unsent, nothing in flight, quiet for PARK_AFTER:
                // end hyper's connection here (an idle keep-alive connection ends cleanly
                // at a message boundary; anything else ends with an error and is closed).
                self.parked_eof = true;
                return Poll::Ready(Ok(()));
            }
            _ => {}
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_clean = false;
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_io(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_clean = false;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_io(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.write_clean = true;
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parked_eof {
            // hyper ends its connection after the fake end of stream: the TLS connection
            // stays open (parked).
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that counts as in flight (no parking) until hyper has sent all of it
/// (hyper drops the body at its end) or dropped it.
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    inner: B,
    activity: std::sync::Arc<Activity>,
}

impl<B> TrackedBody<B> {
    /// Tracks `inner` in `activity`.
    pub(crate) fn new(inner: B, activity: std::sync::Arc<Activity>) -> Self {
        activity.open_bodies.fetch_add(1, Relaxed);
        TrackedBody { inner, activity }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        let a = &self.activity;
        a.last_active_ms.store(a.now_ms(), Relaxed);
        a.open_bodies.fetch_sub(1, Relaxed);
        a.rearm.store(true, Relaxed);
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            first_request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Some(Duration::from_secs(3600)),
            ..Limits::default()
        }
    }

    #[test]
    fn silent_connection_expires_at_the_first_request_deadline() {
        let a = Activity::new(true);
        let l = limits();
        assert_eq!(a.next_deadline(&l), 10_000);
        assert_eq!(a.expired(&l, 9_999), None);
        assert_eq!(a.expired(&l, 10_000), Some(Expiry::FirstRequest));
    }

    #[test]
    fn slow_head_and_idle_keepalive_are_told_apart() {
        let a = Activity::new(true);
        let l = limits();
        drop(a.enter(false)); // one request served at ~0 ms
        assert_eq!(a.expired(&l, 30_000), None, "idle but not for long");
        assert_eq!(a.next_deadline(&l), 60_000);
        assert_eq!(a.expired(&l, 60_000), Some(Expiry::Idle));
        // A head starts: the header deadline applies from its first byte.
        a.head_started_ms.store(20_000 + 1, Relaxed);
        assert_eq!(a.next_deadline(&l), 25_000);
        assert_eq!(a.expired(&l, 24_999), None);
        assert_eq!(a.expired(&l, 25_000), Some(Expiry::HeaderRead));
        // In flight: no idle or head expiry, only the age.
        let g = a.enter(false);
        assert_eq!(a.expired(&l, 3_000_000), None);
        assert_eq!(a.expired(&l, 3_600_000), Some(Expiry::MaxAge));
        drop(g);
    }

    #[test]
    fn http2_io_does_not_count_as_activity() {
        let a = Activity::new(false);
        a.on_io(true);
        assert_eq!(a.head_started_ms.load(Relaxed), 0);
        let a = Activity::new(true);
        drop(a.enter(true));
        a.on_io(true);
        assert_eq!(
            a.head_started_ms.load(Relaxed),
            0,
            "h2 request switched I/O tracking off"
        );
    }
}
