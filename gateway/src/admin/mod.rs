//! The admin listener (`[admin] bind = "127.0.0.1:9901"`, off when absent): `/metrics`
//! (Prometheus text format), `/healthz` (process up), `/readyz` (listeners bound, every CRL
//! held still current), `/config` (the effective configuration, secrets redacted).
//!
//! It runs on its own thread with its own small runtime, never on a worker. Loopback only by
//! default: another address is a relaxation (logged at start), and `[admin.tls]` puts it
//! behind mutual TLS with its own client CA.

pub mod exposition;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::config::{AdminConfig, AdminTlsConfig, ConfigError};
use crate::metrics::Metrics;
use crate::plan::{GatewayPlan, SharedPlan};
use crate::revocation::cache::CrlOverview;

/// Reload outcomes.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Successful reloads.
    pub ok: AtomicU64,
    /// Refused reloads.
    pub failed: AtomicU64,
    /// Unix time of the last successful load (start or reload).
    pub last_success_unix: AtomicI64,
    /// Whether the last reload was refused.
    pub last_failed: AtomicBool,
}

/// Everything the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// Data-path counters and registered collectors.
    pub metrics: Metrics,
    /// Kernel steering state.
    pub steering: Option<crate::steering::SteeringControl>,
    /// The plan being served (swapped by a reload).
    pub plan: SharedPlan,
    /// Reload outcomes.
    pub reloads: ReloadStats,
    /// Set once every listener socket is bound and the workers run.
    pub listeners_bound: AtomicBool,
    /// `POST /reload`: set by the server when it knows its configuration file.
    pub reload: std::sync::OnceLock<ReloadHook>,
}

/// Runs a reload (blocking) and returns its outcome or error as text.
#[derive(Clone)]
pub struct ReloadHook(pub Arc<dyn Fn() -> Result<String, String> + Send + Sync>);

impl std::fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHook")
    }
}

impl AdminState {
    /// A state for `metrics` and `plan`, not ready yet.
    pub fn new(
        metrics: Metrics,
        steering: Option<crate::steering::SteeringControl>,
        plan: SharedPlan,
    ) -> Self {
        let st = AdminState {
            metrics,
            steering,
            plan,
            reloads: ReloadStats::default(),
            listeners_bound: AtomicBool::new(false),
            reload: std::sync::OnceLock::new(),
        };
        st.reloads.last_success_unix.store(now_unix(), Relaxed);
        st
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every CRL the gateway holds: configured files of each listener and downloaded ones.
pub fn all_crls(plan: &GatewayPlan) -> Vec<CrlOverview> {
    let mut out: Vec<CrlOverview> = plan
        .listeners
        .iter()
        .filter_map(|l| l.revocation.as_ref())
        .flat_map(|c| c.local_crls())
        .collect();
    if let Some(cache) = &plan.revocation_cache {
        out.extend(cache.crls());
    }
    out.sort_by(|a, b| a.source.cmp(&b.source));
    out.dedup_by(|a, b| a.source == b.source && a.issuer == b.issuer);
    out
}

/// `Ok` when ready; else what is not.
///
/// # Errors
/// The reasons, one per line.
pub fn readiness(st: &AdminState) -> Result<(), String> {
    let mut problems = Vec::new();
    if !st.listeners_bound.load(Relaxed) {
        problems.push("listeners not bound yet".to_string());
    }
    let now = now_unix();
    for c in all_crls(&st.plan.load()) {
        if c.next_update < now {
            problems.push(format!(
                "CRL {} (issuer {}) expired {} s ago: its clients are refused until a current one is had",
                c.source,
                c.issuer,
                now - c.next_update
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Errors starting the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad `[admin]` settings or files.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket or the thread.
    #[error("admin listener on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The running admin listener; stops when dropped.
#[derive(Debug)]
pub struct AdminHandle {
    /// The bound address (port 0 resolved).
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn admin_tls(
    cfg: &AdminTlsConfig,
    provider: &str,
) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    let inv = |k: &str, m: String| ConfigError::invalid(format!("admin.tls.{k}"), m);
    let provider = Arc::new(
        crate::tls::policy::base_provider(provider)
            .map_err(|e| inv("server_cert", e.to_string()))?,
    );
    let chain =
        crate::pki::load_certs(&cfg.server_cert).map_err(|e| inv("server_cert", e.to_string()))?;
    let key =
        crate::pki::load_key(&cfg.server_key).map_err(|e| inv("server_key", e.to_string()))?;
    let cas = crate::pki::load_ca_bundle(&cfg.client_cas)
        .map_err(|e| inv("client_cas", e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in cas {
        roots.add(c).map_err(|e| inv("client_cas", e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| inv("client_cas", e.to_string()))?;
    let sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| inv("server_cert", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| inv("server_key", e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

/// Starts the admin listener on its own thread.
///
/// # Errors
/// [`AdminError`] when the address cannot be bound or the TLS files are unusable.
pub fn start(
    cfg: &AdminConfig,
    crypto_provider: &str,
    state: Arc<AdminState>,
) -> Result<AdminHandle, AdminError> {
    let addr = cfg
        .bind_addr()
        .map_err(|m| ConfigError::invalid("admin.bind", m))?;
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| admin_tls(t, crypto_provider))
        .transpose()?;
    let io = |source| AdminError::Io { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(io)?;
    std_listener.set_nonblocking(true).map_err(io)?;
    let local_addr = std_listener.local_addr().map_err(io)?;
    let (stop, mut stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin listener: cannot build its runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "admin listener: cannot register socket");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = stop_rx.changed() => break,
                        res = listener.accept() => {
                            let Ok((stream, peer)) = res else { continue };
                            let state = state.clone();
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                serve(stream, peer, tls, state).await;
                            });
                        }
                    }
                }
            });
        })
        .map_err(io)?;
    tracing::info!(%local_addr, mtls = cfg.tls.is_some(), "admin listener: /metrics /healthz /readyz /config");
    Ok(AdminHandle {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

async fn serve(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AdminState>,
) {
    // Mutations (POST /reload) only from loopback or an authenticated (mTLS) peer.
    let trusted = tls.is_some() || peer.ip().to_canonical().is_loopback();
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let resp = if req.method() == http::Method::POST && req.uri().path() == "/reload" {
                reload(&state, trusted).await
            } else {
                route(&req, &state)
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let builder = hyper::server::conn::http1::Builder::new();
    let res = match tls {
        Some(acceptor) => {
            let deadline = std::time::Duration::from_secs(10);
            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "admin listener: TLS handshake refused");
                    return;
                }
                Err(_) => return,
            }
        }
        None => builder.serve_connection(TokioIo::new(stream), svc).await,
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "admin connection ended with error");
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

async fn reload(st: &Arc<AdminState>, trusted: bool) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if !trusted {
        return text(
            StatusCode::FORBIDDEN,
            PLAIN,
            "POST /reload is accepted from loopback or over mutual TLS only\n".into(),
        );
    }
    let Some(hook) = st.reload.get().cloned() else {
        return text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "this gateway has no configuration file to reload\n".into(),
        );
    };
    match tokio::task::spawn_blocking(move || (hook.0)()).await {
        Ok(Ok(outcome)) => text(StatusCode::OK, PLAIN, outcome + "\n"),
        Ok(Err(e)) => text(StatusCode::UNPROCESSABLE_ENTITY, PLAIN, e + "\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            format!("reload failed: {e}\n"),
        ),
    }
}

fn route(req: &Request<hyper::body::Incoming>, st: &Arc<AdminState>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            exposition::render(st),
        ),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match readiness(st) {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready:\n{why}\n"),
            ),
        },
        "/config" => {
            let body = serde_json::to_string_pretty(&st.plan.load().effective_config)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            text(StatusCode::OK, "application/json", body + "\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: GET /metrics /healthz /readyz /config, POST /reload\n".into(),
        ),
    }
}
