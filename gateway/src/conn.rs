//! One client connection: TLS handshake under the listener's policy, the post-handshake
//! status check, then HTTP service until the client or shutdown closes it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metrics::{ListenerCounters, Metrics, Refusal, Rejection, WorkerCounters};
use crate::pki::identity::CertIdentity;
use crate::plan::{ListenerKind, ListenerPlan};
use crate::proxy::{ConnContext, Proxy};
use crate::status::CertStatus;

/// Called with the client's address when a failure is the client's fault (for abuse
/// blocking): a bad, revoked or (on SENSITIVE listeners) missing certificate, or a TLS
/// protocol error after the gateway answered its ClientHello. Never called for empty
/// connections (connect-then-close health checks, scanners that send nothing or no TLS),
/// time-outs, network errors, or revocation outages.
pub type FailureHook = Arc<dyn Fn(std::net::IpAddr) + Send + Sync>;

/// A listener as one worker serves it: the shared plan plus the worker's own backend
/// connection pools. Rebuilt by the worker when a reload swaps the plan.
pub struct ListenerRuntime {
    /// The listener's plan (TLS acceptor, status check, access, routes, limits).
    pub plan: Arc<ListenerPlan>,
    /// The proxy (the plan's targets, each with this worker's pool).
    pub proxy: Proxy,
    /// Failure hook (abuse blocking).
    pub on_failure: Option<FailureHook>,
    /// This listener's counters in this worker (see [`Metrics::listener_slot`]).
    pub counters: Arc<ListenerCounters>,
}

impl ListenerRuntime {
    /// A worker's runtime for `plan`, with fresh backend pools, counting into `counters`.
    pub fn new(
        plan: Arc<ListenerPlan>,
        on_failure: Option<FailureHook>,
        counters: Arc<ListenerCounters>,
    ) -> Self {
        ListenerRuntime {
            proxy: Proxy::with_plan(plan.access.clone(), plan.forwarding.clone()),
            plan,
            on_failure,
            counters,
        }
    }
}

impl fmt::Debug for ListenerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerRuntime")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// Whether a failed handshake is the client's fault, for abuse blocking.
///
/// `answered`: whether the gateway had answered a ClientHello (sent more than one alert's
/// worth of bytes) before the failure: protocol errors count only then, so garbage, plain
/// HTTP or a half ClientHello from a scanner or a health check never blocks its source.
fn client_fault(e: &std::io::Error, answered: bool) -> bool {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        // EOF, reset, time-out: empty or broken connections, not evidence of abuse.
        return false;
    };
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            // A certificate whose status could not be had is not the client's fault.
            o.0.downcast_ref::<crate::revocation::RevocationError>()
                .is_none_or(|r| r.is_revoked())
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        // The client refusing *our* certificate, or the peer's stack not speaking our
        // versions or suites: not an attack on the gateway.
        rustls::Error::AlertReceived(_) | rustls::Error::PeerIncompatible(_) => false,
        _ => answered,
    }
}

/// Bytes the kernel has sent or queued on `stream` (Linux `TCP_INFO`: `tcpi_bytes_sent` +
/// `tcpi_notsent_bytes`); `None` when the kernel does not report them.
fn bytes_sent(stream: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // struct tcp_info, append-only: tcpi_notsent_bytes at byte 144 (u32), tcpi_bytes_sent
    // at byte 200 (u64, Linux 4.19+).
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of `len` bytes on a socket we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < 208 {
        return None;
    }
    let notsent = u32::from_ne_bytes(buf[144..148].try_into().ok()?);
    let sent = u64::from_ne_bytes(buf[200..208].try_into().ok()?);
    Some(sent + u64::from(notsent))
}

/// A plaintext TLS alert record is 7 bytes: more than that means a ServerHello went out.
const ONE_ALERT: u64 = 7;

fn classify(e: &std::io::Error) -> (Rejection, Refusal, String) {
    use rustls::CertificateError as C;
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return (Rejection::Handshake, Refusal::Protocol, e.to_string());
    };
    match err {
        rustls::Error::InvalidCertificate(c) => {
            let refusal = match c {
                C::Revoked => Refusal::Revoked,
                C::Expired | C::ExpiredContext { .. } => Refusal::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Refusal::NotYetValid,
                C::UnknownIssuer => Refusal::Untrusted,
                C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
                    Refusal::BadSignature
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => Refusal::Eku,
                C::Other(o) => {
                    if let Some(r) = o.0.downcast_ref::<crate::revocation::RevocationError>() {
                        if r.is_revoked() {
                            Refusal::Revoked
                        } else {
                            Refusal::NoCurrentStatus
                        }
                    } else if o.0.is::<crate::pki::keypolicy::PolicyRejection>() {
                        Refusal::KeyPolicy
                    } else {
                        Refusal::BadCertificate
                    }
                }
                _ => Refusal::BadCertificate,
            };
            let text = match c {
                C::Other(o) => o.0.to_string(),
                c => format!("{c:?}"),
            };
            (Rejection::Certificate, refusal, text)
        }
        rustls::Error::NoCertificatesPresented => (
            Rejection::Handshake,
            Refusal::NoCertificate,
            "no client certificate presented".into(),
        ),
        other => (Rejection::Handshake, Refusal::Protocol, other.to_string()),
    }
}

/// Counts the connection closed when dropped (however the connection task ends).
struct ClosedGuard(Arc<ListenerCounters>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        WorkerCounters::inc(&self.0.closed);
    }
}

/// Closes a refused connection politely: the alert has been written; send FIN and drain what
/// the client still sends for a moment, so the kernel does not answer with a RST that could
/// destroy the alert before the client reads it.
async fn linger_close(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut budget: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while budget > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Serves one accepted TCP connection to completion.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    rt: Arc<ListenerRuntime>,
    metrics: Metrics,
    worker: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let counters: &WorkerCounters = metrics.worker(worker);
    let plan = &rt.plan;
    let lc = &rt.counters;
    WorkerCounters::inc(&lc.accepted);
    let _closed = ClosedGuard(lc.clone());
    let started = std::time::Instant::now();
    let local = stream.local_addr();
    let accept = plan.acceptor.accept(stream).into_fallible();
    let tls = match tokio::time::timeout(plan.limits.handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, stream))) => {
            lc.handshake_seconds.observe(started.elapsed());
            // Measured before the close; only read on this (rare) path.
            let answered =
                rt.on_failure.is_some() && bytes_sent(&stream).is_none_or(|n| n > ONE_ALERT);
            linger_close(stream).await;
            let (kind, refusal, reason) = classify(&e);
            counters.reject(kind);
            lc.refuse(refusal);
            tracing::info!(listener = %plan.name, %peer, %reason, "handshake rejected");
            if let Some(hook) = &rt.on_failure {
                if client_fault(&e, answered) {
                    hook(peer.ip());
                }
            }
            return;
        }
        Err(_) => {
            counters.reject(Rejection::HandshakeTimeout);
            lc.refuse(Refusal::Timeout);
            tracing::debug!(listener = %plan.name, %peer, "handshake timed out");
            return;
        }
    };
    lc.handshake_seconds.observe(started.elapsed());
    let (_, session) = tls.get_ref();
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    if resumed {
        WorkerCounters::inc(&counters.resumed);
    }
    let identity = match session.peer_certificates() {
        Some(chain) if !chain.is_empty() => {
            if let Some(check) = &plan.status {
                let verdict =
                    tokio::time::timeout(plan.limits.check_timeout, check.check_chain(chain)).await;
                let refusal = match verdict {
                    Ok(status) if !status.covers(chain.len()) => Some((
                        "the status check gave no answer for every certificate".to_string(),
                        false,
                    )),
                    // Revoked: the client's certificate is bad. Unavailable (unreachable,
                    // stale, unknown...) is the status sources' failure, not the client's.
                    Ok(status) => status.refusal().map(|r| {
                        (
                            r.to_string(),
                            matches!(r.status, CertStatus::Revoked { .. }),
                        )
                    }),
                    Err(_) => Some((
                        "certificate status check deadline exceeded".to_string(),
                        false,
                    )),
                };
                if let Some((reason, client_fault)) = refusal {
                    counters.reject(Rejection::Status);
                    // Only a revoked certificate is the client's fault here.
                    lc.refuse(if client_fault {
                        Refusal::Revoked
                    } else {
                        Refusal::NoCurrentStatus
                    });
                    tracing::warn!(listener = %plan.name, %peer, %reason, "connection refused after handshake");
                    // A revoked certificate counts; a revocation outage never does (it
                    // would block genuine clients).
                    if let (Some(hook), true) = (&rt.on_failure, client_fault) {
                        hook(peer.ip());
                    }
                    return;
                }
            }
            match CertIdentity::from_der(&chain[0]) {
                Ok(id) => Some(Arc::new(id)),
                Err(e) => {
                    counters.reject(Rejection::Certificate);
                    lc.refuse(Refusal::BadCertificate);
                    tracing::warn!(listener = %plan.name, %peer, error = %e, "unreadable client certificate");
                    return;
                }
            }
        }
        _ => None,
    };
    WorkerCounters::inc(&counters.handshakes_ok);
    WorkerCounters::inc(if resumed { &lc.resumed } else { &lc.full });

    if let ListenerKind::Tcp { backend } = &plan.kind {
        // Raw TCP mode: certificate + access decision, then the stream with a PROXY v2
        // header.
        let local = match local {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(listener = %plan.name, %peer, error = %e, "tcp connection without a local address");
                return;
            }
        };
        let res = crate::tcp_proxy::serve_tcp_connection(
            tls,
            peer,
            local,
            identity.as_deref(),
            &plan.access.access,
            backend,
        )
        .await;
        if let Err(reason) = res {
            tracing::info!(listener = %plan.name, %peer, %reason, "tcp connection refused or failed");
        }
        return;
    }

    let ctx = Arc::new(ConnContext::new(peer, identity));
    let proxy = rt.proxy.clone();
    let metrics2 = metrics.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let proxy = proxy.clone();
        let metrics = metrics2.clone();
        async move {
            let t0 = std::time::Instant::now();
            let counters = metrics.worker(worker);
            let resp = proxy.handle(req, &ctx, counters).await;
            counters.response(resp.status().as_u16(), t0.elapsed());
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Slow-loris guard: a request head must arrive within the deadline.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(plan.limits.handshake_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
