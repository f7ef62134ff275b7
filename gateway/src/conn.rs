//! One client connection: TLS handshake under the listener's policy, the post-handshake
//! status check, then HTTP service until the client or shutdown closes it.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::audit::{AuditEvent, AuditLog, Decision};
use crate::lifetime::{Activity, ActivityIo, TrackedBody};
use crate::limits::Limits;
use crate::metrics::{ListenerCounters, Metrics, Refusal, Rejection, WorkerCounters};
use crate::pki::identity::CertIdentity;
use crate::plan::{ListenerKind, ListenerPlan};
use crate::proxy::{ConnContext, Proxy};
use crate::status::CertStatus;
use crate::tls::handshake::{self, Established};
use crate::tls::session::TlsSession;
use crate::tls::SessionInfo;

/// Called with the client's address when a failure is the client's fault (for abuse
/// blocking): a bad, revoked or (on SENSITIVE listeners) missing certificate, or a TLS
/// protocol error after the gateway answered its ClientHello. Never called for empty
/// connections (connect-then-close health checks, scanners that send nothing or no TLS),
/// time-outs, network errors, or revocation outages.
pub(crate) type FailureHook = Arc<dyn Fn(std::net::IpAddr) + Send + Sync>;

/// A listener as one worker serves it: the shared plan plus the worker's own backend
/// connection pools. Rebuilt by the worker when a reload swaps the plan.
pub(crate) struct ListenerRuntime {
    /// The listener's plan (TLS acceptor, status check, access, routes, limits).
    pub plan: Arc<ListenerPlan>,
    /// The proxy (the plan's targets, each with this worker's pool); shared by the worker's
    /// connections (a clone per connection or request would copy its target list).
    pub proxy: Arc<Proxy>,
    /// Failure hook (abuse blocking).
    pub on_failure: Option<FailureHook>,
    /// This listener's counters in this worker (see [`Metrics::listener_slot`]).
    pub counters: Arc<ListenerCounters>,
    /// The audit log (`[audit]`), when configured.
    pub audit: Option<Arc<AuditLog>>,
    /// hyper's HTTP/1.1 settings for connections that chose `http/1.1` by ALPN (made once:
    /// every connection and every unparking uses it by reference).
    pub h1: hyper::server::conn::http1::Builder,
}

impl ListenerRuntime {
    /// A worker's runtime for `plan`, with fresh backend pools, counting into `counters`.
    pub(crate) fn new(
        plan: Arc<ListenerPlan>,
        on_failure: Option<FailureHook>,
        counters: Arc<ListenerCounters>,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // hyper's own header timer would also cut idle keep-alive connections; the deadlines
        // are kept by `activity` instead (header read, idle, first request, age).
        h1.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(plan.limits.max_header_bytes as usize);
        ListenerRuntime {
            h1,
            proxy: Arc::new(Proxy::with_plan(
                plan.access.clone(),
                plan.forwarding.clone(),
                &plan.limits,
            )),
            plan,
            on_failure,
            counters,
            audit,
        }
    }

    /// Records an authentication decision in the audit log (when configured): the
    /// connection's TLS facts, the certificate's identity, the decision and its reason.
    fn audit(&self, peer: SocketAddr, tls: Option<&SessionInfo>, f: AuditFields<'_>) {
        let Some(log) = &self.audit else { return };
        let mut ev = AuditEvent {
            time: crate::audit::now_rfc3339(),
            listener: self.plan.name.to_string(),
            source_ip: peer.ip().to_canonical().to_string(),
            source_port: peer.port(),
            auth_method: f.method,
            decision: Some(f.decision),
            reason: f.reason.map(str::to_string),
            detail: f.detail,
            revocation_source: f.revocation.as_ref().map(|r| r.0.clone()),
            revocation_detail: f.revocation.map(|r| r.1),
            ..AuditEvent::default()
        };
        if let Some(s) = tls {
            ev.sni = s.server_name.clone();
            ev.tls_version = s.version.map(|v| format!("{v:?}"));
            ev.cipher_suite = s.suite.map(|c| format!("{:?}", c.suite()));
            ev.resumed = Some(s.resumed);
        }
        if let Some(id) = f.identity {
            ev.cert_subject = Some(id.subject.clone());
            ev.cert_issuer = Some(id.issuer.clone());
            ev.cert_serial = Some(id.serial_hex.clone());
            ev.cert_sha256 = Some(id.fingerprint_sha256.clone());
        }
        log.record(ev);
    }
}

impl fmt::Debug for ListenerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerRuntime")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// What one audit event says beyond the connection's facts.
struct AuditFields<'a> {
    method: &'static str,
    decision: Decision,
    reason: Option<&'static str>,
    detail: Option<String>,
    identity: Option<&'a CertIdentity>,
    /// (source, freshness) of the leaf's status.
    revocation: Option<(String, String)>,
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
        crate::memory::note_release();
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

/// Checks a client chain's status within `timeout`: `None` when good, else the reason and
/// whether it is the client's fault (revoked) rather than the status sources' (unavailable,
/// deadline exceeded), for abuse blocking.
async fn status_refusal(
    check: &dyn crate::status::StatusCheck,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    timeout: Duration,
) -> Option<(String, bool)> {
    status_verdict(check, chain, timeout).await.0
}

/// As [`status_refusal`], also returning the leaf's status source and freshness (for the
/// audit log).
async fn status_verdict(
    check: &dyn crate::status::StatusCheck,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    timeout: Duration,
) -> (Option<(String, bool)>, Option<(String, String)>) {
    match tokio::time::timeout(timeout, check.check_chain(chain)).await {
        Ok(status) => {
            let leaf = status.certs.first().map(|r| {
                let source = match &r.status {
                    CertStatus::Good { source: Some(s) } => s.to_string(),
                    CertStatus::Good { source: None } => "none".to_string(),
                    CertStatus::Revoked { source, .. } => source.to_string(),
                    CertStatus::Unavailable { .. } => "unavailable".to_string(),
                };
                (source, r.detail.clone())
            });
            let refusal = if !status.covers(chain.len()) {
                Some((
                    "the status check gave no answer for every certificate".to_string(),
                    false,
                ))
            } else {
                // Revoked: the client's certificate is bad. Unavailable (unreachable, stale,
                // unknown...) is the status sources' failure, not the client's.
                status.refusal().map(|r| {
                    (
                        r.to_string(),
                        matches!(r.status, CertStatus::Revoked { .. }),
                    )
                })
            };
            (refusal, leaf)
        }
        Err(_) => (
            Some((
                "certificate status check deadline exceeded".to_string(),
                false,
            )),
            None,
        ),
    }
}

/// Serves one accepted TCP connection to completion.
///
/// The connection task's future is as large as its largest state and lives as long as the
/// connection, idle or not: the handshake and admission ([`admit`]) run boxed, so what
/// stays is the HTTP service's state ([`serve_http`]) and a few pointers.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    rt: Arc<ListenerRuntime>,
    metrics: Metrics,
    worker: usize,
    shutdown: watch::Receiver<bool>,
) {
    let _closed = ClosedGuard(rt.counters.clone());
    let Some(admitted) = Box::pin(admit(stream, peer, &rt, &metrics, worker)).await else {
        return;
    };
    let limits = &rt.plan.limits;
    serve_http(
        admitted.tls,
        admitted.alpn,
        admitted.ctx,
        &rt.proxy,
        &rt.h1,
        metrics,
        worker,
        limits,
        recheck_fn(admitted.recheck, limits.check_timeout),
        &rt.plan.name,
        shutdown,
    )
    .await;
}

/// A client chain re-checked periodically: the status check and the chain.
type RecheckState = (
    Arc<dyn crate::status::StatusCheck>,
    Arc<[rustls::pki_types::CertificateDer<'static>]>,
);

/// A connection admitted to HTTP service by [`admit`].
struct Admitted {
    tls: Box<TlsSession>,
    alpn: Alpn,
    ctx: Arc<ConnContext>,
    recheck: Option<RecheckState>,
}

/// The protocol ALPN chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    H2,
    /// None (or another): hyper-util tells HTTP/1.1 from prior-knowledge HTTP/2.
    Unspecified,
}

/// The future of one status re-check.
type RecheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The re-check of `state` as [`serve_loop`] and the TCP relay call it.
fn recheck_fn(
    state: Option<RecheckState>,
    timeout: Duration,
) -> Option<impl FnMut() -> RecheckFuture> {
    state.map(|(check, chain)| {
        move || -> RecheckFuture {
            let (check, chain) = (check.clone(), chain.clone());
            Box::pin(async move {
                match status_refusal(check.as_ref(), &chain, timeout).await {
                    None => Ok(()),
                    Some((reason, _)) => Err(reason),
                }
            })
        }
    })
}

/// The TLS handshake under the listener's policy and the post-handshake checks (status,
/// identity, audit); a `tcp://` listener's connection is relayed to its end here. `None`:
/// the connection was refused or is finished.
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    rt: &ListenerRuntime,
    metrics: &Metrics,
    worker: usize,
) -> Option<Admitted> {
    let counters: &WorkerCounters = metrics.worker(worker);
    let plan = &rt.plan;
    let lc = &rt.counters;
    WorkerCounters::inc(&lc.accepted);
    let started = std::time::Instant::now();
    let accept = handshake::accept(&plan.server_config, stream);
    let Established { session: tls, info } =
        match tokio::time::timeout(plan.limits.handshake_timeout, accept).await {
            Ok(Ok(established)) => established,
            Ok(Err((e, stream))) => {
                lc.handshake_seconds.observe(started.elapsed());
                // Measured before the close; only read on this (rare) path.
                let answered =
                    rt.on_failure.is_some() && bytes_sent(&stream).is_none_or(|n| n > ONE_ALERT);
                // Boxed (like every rarely used branch here): `admit`'s own future, made for
                // every handshake, stays small.
                Box::pin(linger_close(stream)).await;
                let (kind, refusal, reason) = classify(&e);
                counters.reject(kind);
                lc.refuse(refusal);
                rt.audit(
                    peer,
                    None,
                    AuditFields {
                        method: if kind == Rejection::Certificate {
                            "certificate"
                        } else {
                            "none"
                        },
                        decision: Decision::Refused,
                        reason: Some(refusal.label()),
                        detail: Some(reason.clone()),
                        identity: None,
                        revocation: None,
                    },
                );
                tracing::info!(listener = %plan.name, %peer, %reason, "handshake rejected");
                if let Some(hook) = &rt.on_failure {
                    if client_fault(&e, answered) {
                        hook(peer.ip());
                    }
                }
                return None;
            }
            Err(_) => {
                counters.reject(Rejection::HandshakeTimeout);
                lc.refuse(Refusal::Timeout);
                tracing::debug!(listener = %plan.name, %peer, "handshake timed out");
                return None;
            }
        };
    lc.handshake_seconds.observe(started.elapsed());
    // On the heap: the connection task's future holds (copies of) a pointer instead of the
    // session for the rest of the connection's life.
    let tls = Box::new(tls);
    let session = &info;
    let resumed = session.resumed;
    if resumed {
        WorkerCounters::inc(&counters.resumed);
        // A resumed session skips chain validation: the certificate may have expired since.
        if let Some(chain) = session.peer_certificates.as_deref() {
            if let Err(e) = crate::pki::path::leaf_valid_at(chain, crate::revocation::now_secs()) {
                counters.reject(Rejection::Certificate);
                tracing::warn!(listener = %plan.name, %peer, reason = %e, "resumed session refused: certificate no longer valid");
                if let Some(hook) = &rt.on_failure {
                    hook(peer.ip());
                }
                return None;
            }
        }
    }
    let mut leaf_status: Option<(String, String)> = None;
    let identity = match session.peer_certificates.as_deref() {
        Some(chain @ [leaf_der, ..]) => {
            if let Some(check) = &plan.status {
                let (refusal, leaf) = Box::pin(status_verdict(
                    check.as_ref(),
                    chain,
                    plan.limits.check_timeout,
                ))
                .await;
                if rt.audit.is_some() {
                    leaf_status = leaf;
                }
                if let Some((reason, client_fault)) = refusal {
                    counters.reject(Rejection::Status);
                    // Only a revoked certificate is the client's fault here.
                    lc.refuse(if client_fault {
                        Refusal::Revoked
                    } else {
                        Refusal::NoCurrentStatus
                    });
                    if rt.audit.is_some() {
                        let id = CertIdentity::from_der(leaf_der).ok();
                        rt.audit(
                            peer,
                            Some(session),
                            AuditFields {
                                method: "certificate",
                                decision: Decision::Refused,
                                reason: Some(if client_fault {
                                    Refusal::Revoked.label()
                                } else {
                                    Refusal::NoCurrentStatus.label()
                                }),
                                detail: Some(reason.clone()),
                                identity: id.as_ref(),
                                revocation: leaf_status.take(),
                            },
                        );
                    }
                    tracing::warn!(listener = %plan.name, %peer, %reason, "connection refused after handshake");
                    // A revoked certificate counts; a revocation outage never does (it
                    // would block genuine clients).
                    if let (Some(hook), true) = (&rt.on_failure, client_fault) {
                        hook(peer.ip());
                    }
                    return None;
                }
            }
            match CertIdentity::from_der_cached(leaf_der) {
                Ok(id) => Some(id),
                Err(e) => {
                    counters.reject(Rejection::Certificate);
                    lc.refuse(Refusal::BadCertificate);
                    rt.audit(
                        peer,
                        Some(session),
                        AuditFields {
                            method: "certificate",
                            decision: Decision::Refused,
                            reason: Some(Refusal::BadCertificate.label()),
                            detail: Some(e.to_string()),
                            identity: None,
                            revocation: None,
                        },
                    );
                    tracing::warn!(listener = %plan.name, %peer, error = %e, "unreadable client certificate");
                    return None;
                }
            }
        }
        _ => None,
    };
    WorkerCounters::inc(&counters.handshakes_ok);
    WorkerCounters::inc(if resumed { &lc.resumed } else { &lc.full });
    if let Some(id) = &identity {
        rt.audit(
            peer,
            Some(session),
            AuditFields {
                method: "certificate",
                decision: Decision::Accepted,
                reason: None,
                detail: None,
                identity: Some(id),
                revocation: leaf_status,
            },
        );
    }
    let limits = &plan.limits;
    // A connection that may outlive the status refresh interval re-checks its certificate
    // (an h2 or tcp:// connection can live for hours after a revocation).
    let recheck_state = match (
        &plan.status,
        limits.status_recheck_interval,
        session.peer_certificates.as_deref(),
    ) {
        (Some(check), Some(every), Some(chain))
            if !chain.is_empty() && limits.max_connection_age.is_none_or(|age| age > every) =>
        {
            Some((
                check.clone(),
                Arc::<[rustls::pki_types::CertificateDer<'static>]>::from(chain.to_vec()),
            ))
        }
        _ => None,
    };

    if let ListenerKind::Tcp { backend } = &plan.kind {
        // Raw TCP mode: certificate + access decision, then the stream with a PROXY v2
        // header.
        // Asked here, not at accept: an HTTP connection never needs it (one system call
        // less per connection).
        let local = match tls.tcp().local_addr() {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(listener = %plan.name, %peer, error = %e, "tcp connection without a local address");
                return None;
            }
        };
        let res = Box::pin(crate::tcp_proxy::serve_tcp_connection(
            *tls,
            &info,
            peer,
            local,
            identity.as_deref(),
            &plan.access.access,
            backend,
            crate::tcp_proxy::RelayLimits {
                connect_timeout: limits.upstream_connect_timeout,
                idle_timeout: limits.tcp_idle_timeout,
                max_age: limits.max_connection_age,
                recheck_interval: recheck_state.as_ref().and(limits.status_recheck_interval),
            },
            recheck_fn(recheck_state, limits.check_timeout),
        ))
        .await;
        if let Err(reason) = res {
            tracing::info!(listener = %plan.name, %peer, %reason, "tcp connection refused or failed");
        }
        return None;
    }

    let mut ctx = ConnContext::new(peer, identity);
    if let (Some(log), None) = (&rt.audit, &ctx.identity) {
        // Without a certificate, IN CONFIDENCE: the password decisions are audited per request.
        ctx.audit = Some(Box::new((
            log.clone(),
            AuditEvent {
                listener: plan.name.to_string(),
                source_ip: peer.ip().to_canonical().to_string(),
                source_port: peer.port(),
                sni: session.server_name.clone(),
                tls_version: session.version.map(|v| format!("{v:?}")),
                cipher_suite: session.suite.map(|c| format!("{:?}", c.suite())),
                resumed: Some(resumed),
                ..AuditEvent::default()
            },
        )));
    }
    let alpn = match info.alpn.as_deref() {
        Some(b"http/1.1") => Alpn::Http1,
        Some(b"h2") => Alpn::H2,
        _ => Alpn::Unspecified,
    };
    Some(Admitted {
        tls,
        alpn,
        ctx: Arc::new(ctx),
        recheck: recheck_state,
    })
}

/// The TLS stream as hyper sees it.
type HttpIo = ActivityIo<Box<TlsSession>>;

/// An error ending an HTTP connection (hyper's or hyper-util's).
type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve_http`]'s loop needs from an HTTP connection future.
trait HttpConn: Future<Output = Result<(), ConnError>> {
    /// Starts a graceful close (in-flight requests finish, then the connection closes).
    fn graceful(self: Pin<&mut Self>);
    /// Whether the connection holds HTTP state that parking would release.
    fn parkable(&self) -> bool {
        false
    }
}

/// hyper-util's `auto` connection (boxed) with its graceful close.
struct AutoConn<C, G> {
    conn: Pin<Box<C>>,
    graceful: G,
}

impl<C: Future, G: Unpin> Future for AutoConn<C, G> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<C::Output> {
        self.get_mut().conn.as_mut().poll(cx)
    }
}

impl<C, G> HttpConn for AutoConn<C, G>
where
    C: Future<Output = Result<(), ConnError>>,
    G: FnMut(Pin<&mut C>) + Unpin,
{
    fn graceful(self: Pin<&mut Self>) {
        let this = self.get_mut();
        (this.graceful)(this.conn.as_mut());
    }
}

/// Starts the graceful close of hyper-util's `auto` connection.
fn auto_graceful<I, S, E, B>(c: Pin<&mut hyper_util::server::conn::auto::Connection<'_, I, S, E>>)
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<ConnError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<ConnError>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    c.graceful_shutdown();
}

/// An HTTP/1.1 connection whose HTTP state exists only while it is in use: after
/// [`crate::lifetime::PARK_AFTER`] of quiet, hyper's connection (read buffer, write buffer,
/// dispatcher) is ended at a message boundary and dropped; only the TLS stream is kept until
/// the client sends again (see [`crate::lifetime`]).
struct ParkingH1<'b, S: hyper::service::HttpService<hyper::body::Incoming>> {
    builder: &'b hyper::server::conn::http1::Builder,
    state: H1State<S>,
}

enum H1State<S: hyper::service::HttpService<hyper::body::Incoming>> {
    /// hyper serves the connection (boxed: its size is paid only while in use).
    Active(Box<hyper::server::conn::http1::Connection<TokioIo<HttpIo>, S>>),
    /// No HTTP state: waiting for the client's next bytes.
    Parked {
        io: HttpIo,
        service: S,
    },
    /// Graceful close while parked: TLS close_notify and FIN.
    Closing(HttpIo),
    Done,
}

impl<'b, S: hyper::service::HttpService<hyper::body::Incoming>> ParkingH1<'b, S> {
    /// Starts parked: hyper is set up when the first request's bytes arrive.
    fn new(builder: &'b hyper::server::conn::http1::Builder, io: HttpIo, service: S) -> Self {
        ParkingH1 {
            builder,
            state: H1State::Parked { io, service },
        }
    }
}

impl<S, B> Future for ParkingH1<'_, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    S::Error: Into<ConnError>,
    B: hyper::body::Body + Unpin + 'static,
    B::Error: Into<ConnError>,
{
    type Output = Result<(), ConnError>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::{ready, Poll};
        let this = self.get_mut();
        loop {
            match &mut this.state {
                H1State::Active(conn) => {
                    let res = ready!(Pin::new(&mut **conn).poll(cx));
                    let H1State::Active(conn) = std::mem::replace(&mut this.state, H1State::Done)
                    else {
                        return Poll::Ready(Ok(()));
                    };
                    res?;
                    let parts = conn.into_parts();
                    let mut io = parts.io.into_inner();
                    if !io.take_parked_eof() {
                        // The client closed (hyper has shut the TLS stream down).
                        return Poll::Ready(Ok(()));
                    }
                    // Bytes hyper read but did not parse (none at a clean message boundary)
                    // are read again first.
                    io.unread(parts.read_buf);
                    // The AEAD contexts too: the next record makes them again (one key
                    // expansion per direction).
                    io.inner_mut().park_keys();
                    crate::memory::note_release();
                    this.state = H1State::Parked {
                        io,
                        service: parts.service,
                    };
                }
                H1State::Parked { io, .. } => {
                    if !ready!(io.poll_fill_prefix(cx))? {
                        // The client closed while parked.
                        return Poll::Ready(Ok(()));
                    }
                    let H1State::Parked { io, service } =
                        std::mem::replace(&mut this.state, H1State::Done)
                    else {
                        return Poll::Ready(Ok(()));
                    };
                    this.state = H1State::Active(Box::new(
                        this.builder.serve_connection(TokioIo::new(io), service),
                    ));
                }
                H1State::Closing(io) => {
                    let res = ready!(tokio::io::AsyncWrite::poll_shutdown(Pin::new(io), cx));
                    this.state = H1State::Done;
                    return Poll::Ready(res.map_err(Into::into));
                }
                H1State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S, B> HttpConn for ParkingH1<'_, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    S::Error: Into<ConnError>,
    B: hyper::body::Body + Unpin + 'static,
    B::Error: Into<ConnError>,
{
    fn graceful(self: Pin<&mut Self>) {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, H1State::Done) {
            H1State::Active(mut conn) => {
                Pin::new(&mut *conn).graceful_shutdown();
                this.state = H1State::Active(conn);
            }
            H1State::Parked { io, .. } | H1State::Closing(io) => {
                this.state = H1State::Closing(io);
            }
            H1State::Done => {}
        }
    }

    fn parkable(&self) -> bool {
        matches!(self.state, H1State::Active(_))
    }
}

/// Serves HTTP/1.1 or HTTP/2 on an established TLS connection until the client closes it,
/// a limit of the listener ends it ([`crate::lifetime`]), `recheck` (called every
/// `limits.status_recheck_interval`) refuses the client's certificate, or shutdown.
///
/// HTTP/1.1 chosen by ALPN is served by [`ParkingH1`] (hyper's state released while idle);
/// HTTP/2, and connections without ALPN (HTTP/1.1 or prior-knowledge HTTP/2, told apart by
/// hyper-util), by hyper-util's `auto` connection.
#[allow(clippy::too_many_arguments)]
async fn serve_http<F, Fut>(
    tls: Box<TlsSession>,
    alpn: Alpn,
    ctx: Arc<ConnContext>,
    proxy: &Arc<Proxy>,
    h1: &hyper::server::conn::http1::Builder,
    metrics: Metrics,
    worker: usize,
    limits: &Limits,
    mut recheck: Option<F>,
    name: &str,
    mut shutdown: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let peer = ctx.peer;
    let activity = Arc::new(Activity::new(alpn != Alpn::H2));
    let io = ActivityIo::new(tls, activity.clone());
    let act = activity.clone();
    let proxy = proxy.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let ctx = ctx.clone();
        let proxy = proxy.clone();
        let metrics = metrics.clone();
        let act = act.clone();
        async move {
            let in_flight = act.enter(req.version() == http::Version::HTTP_2);
            let t0 = std::time::Instant::now();
            let counters = metrics.worker(worker);
            let resp = proxy.handle(req, &ctx, counters).await;
            counters.response(resp.status().as_u16(), t0.elapsed());
            // The body counts as in flight until hyper has sent it (no parking before).
            let resp = resp.map(|b| TrackedBody::new(b, act.clone()));
            drop(in_flight);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let ends = LoopEnds {
        peer,
        activity: &activity,
        limits,
        name,
    };
    if alpn == Alpn::Http1 {
        let conn = ParkingH1::new(h1, io, service);
        tokio::pin!(conn);
        serve_loop(conn, &ends, &mut recheck, &mut shutdown).await;
    } else {
        // Boxed: hyper-util's connection (and its HTTP/2 state) would make the connection
        // task's own future, which every idle HTTP/1.1 connection keeps, much larger.
        Box::pin(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(limits.max_header_bytes as usize);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_concurrent_streams(limits.h2_max_concurrent_streams)
                .max_header_list_size(limits.max_header_bytes)
                .keep_alive_interval(limits.h2_keepalive_interval)
                .keep_alive_timeout(limits.h2_keepalive_timeout);
            // ALPN decided the protocol: no detection read (h2 preface sniffing) is needed.
            let builder = if alpn == Alpn::H2 {
                builder.http2_only()
            } else {
                builder
            };
            let conn = AutoConn {
                conn: Box::pin(builder.serve_connection(TokioIo::new(io), service)),
                graceful: auto_graceful,
            };
            tokio::pin!(conn);
            serve_loop(conn, &ends, &mut recheck, &mut shutdown).await;
        })
        .await;
    }
}

/// What [`serve_loop`] reads but never changes (passed by reference: an async function keeps
/// its arguments for as long as it runs, and this one runs as long as the connection).
struct LoopEnds<'a> {
    peer: SocketAddr,
    activity: &'a Activity,
    limits: &'a Limits,
    name: &'a str,
}

/// Drives one HTTP connection under the listener's limits: the `activity` deadlines, the
/// periodic status re-check, shutdown, and (HTTP/1.1) parking after
/// [`crate::lifetime::PARK_AFTER`] of quiet.
async fn serve_loop<C, F, Fut>(
    mut conn: Pin<&mut C>,
    ends: &LoopEnds<'_>,
    recheck: &mut Option<F>,
    shutdown: &mut watch::Receiver<bool>,
) where
    C: HttpConn,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let LoopEnds {
        peer,
        activity,
        limits,
        name,
    } = *ends;
    let ms = |d: Duration| d.as_millis() as u64;
    let mut next_check = limits.status_recheck_interval.map(ms);
    let mut check: Option<Pin<Box<Fut>>> = None;
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // Graceful close in progress: the instant it must be done by.
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let wake = match draining {
            Some(d) => d,
            None => {
                let mut at = activity.next_deadline(limits).min(if check.is_none() {
                    next_check.unwrap_or(u64::MAX)
                } else {
                    u64::MAX
                });
                if conn.parkable() && !activity.park_pending() {
                    at = at.min(activity.park_at().unwrap_or(u64::MAX));
                }
                tokio::time::Instant::from_std(activity.at(at))
            }
        };
        timer.as_mut().reset(wake);
        tokio::select! {
            // The connection first: its I/O may move a deadline earlier (a head started, a
            // request ended), which the next branch notices in the same wake-up.
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
                return;
            }
            () = std::future::poll_fn(|_| {
                if activity.take_rearm() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            }), if draining.is_none() => continue,
            changed = shutdown.changed(), if draining.is_none() => {
                if changed.is_ok() && !*shutdown.borrow() {
                    continue;
                }
                // Server shutdown: the worker bounds the drain (shutdown_grace_secs).
                conn.as_mut().graceful();
                let _ = conn.as_mut().await;
                return;
            }
            verdict = async {
                match check.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            }, if check.is_some() => {
                check = None;
                next_check = limits
                    .status_recheck_interval
                    .map(|i| activity.elapsed_ms() + ms(i));
                if let Err(reason) = verdict {
                    tracing::warn!(listener = %name, %peer, %reason, "certificate refused on re-check; closing");
                    return;
                }
            }
            () = timer.as_mut() => {
                if draining.is_some() {
                    tracing::debug!(listener = %name, %peer, "graceful close did not finish in time; closing");
                    return;
                }
                let now = activity.elapsed_ms();
                if let (Some(at), Some(f), true) = (next_check, recheck.as_mut(), check.is_none()) {
                    if now >= at {
                        check = Some(Box::pin(f()));
                        continue;
                    }
                }
                match activity.expired(limits, now) {
                    None if conn.parkable()
                        && !activity.park_pending()
                        && activity.park_at().is_some_and(|at| now >= at) =>
                    {
                        // Quiet long enough: hyper's next read ends its connection and
                        // ParkingH1 keeps only the TLS stream.
                        activity.request_park();
                    }
                    None => {}
                    Some(why) if why.is_graceful() => {
                        tracing::debug!(listener = %name, %peer, reason = why.as_str(), "closing connection gracefully");
                        conn.as_mut().graceful();
                        // In-flight requests get their response deadline to finish.
                        draining = Some(tokio::time::Instant::now() + limits.upstream_response_timeout + limits.body_idle_timeout);
                    }
                    Some(why) => {
                        tracing::debug!(listener = %name, %peer, reason = why.as_str(), "closing connection");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
