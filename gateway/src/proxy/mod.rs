//! The HTTP reverse proxy: request rewriting, forwarding to the backend with streamed bodies,
//! and the built-in identity backend.

pub mod body;
pub mod builtin;
pub mod headers;

/// Request path canonicalisation (the top-level `path` module, below `access`).
pub use crate::path;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::access::AccessPlan;
use crate::audit::{AuditEvent, AuditLog, Decision};
use crate::limits::Limits;
use crate::metrics::WorkerCounters;
use crate::path::{CanonicalPath, PathError, PathOptions};
use crate::pki::identity::CertIdentity;
use crate::upstream::{Backend, UpstreamConnector};
use body::IdleTimeoutBody;
use headers::{ForwardingConfig, IdentityHeaders};
use std::time::Duration;

/// Response body type of the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the proxy knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnContext {
    /// Client address.
    pub peer: SocketAddr,
    /// The certificate identity, if the client presented a (verified) certificate.
    pub identity: Option<Arc<CertIdentity>>,
    /// Identity headers (shared by the certificate's connections).
    pub identity_headers: Option<IdentityHeaders>,
    /// The client address as an `X-Forwarded-For` value, computed once per connection.
    pub forwarded_for: HeaderValue,
    /// Where password decisions of this connection are audited (`[audit]`), with the
    /// connection's facts already filled in; `None`: no audit log.
    /// Boxed: most connections have none, and the context lives as long as the connection.
    pub audit: Option<Box<(Arc<AuditLog>, AuditEvent)>>,
}

impl ConnContext {
    /// Context for a connection; precomputes the identity headers.
    pub fn new(peer: SocketAddr, identity: Option<Arc<CertIdentity>>) -> Self {
        let identity_headers = identity.as_deref().map(IdentityHeaders::for_certificate);
        ConnContext {
            peer,
            identity,
            identity_headers,
            forwarded_for: headers::forwarded_for_value(peer.ip()),
            audit: None,
        }
    }

    /// Audits a password decision (never the password: the user name and the outcome).
    fn audit_password(&self, user: Option<&str>, refused: Option<(StatusCode, &str)>) {
        let Some((log, base)) = self.audit.as_deref() else {
            return;
        };
        let mut ev = base.clone();
        ev.time = crate::audit::now_rfc3339();
        ev.auth_method = "password";
        ev.user = user.map(str::to_string);
        match refused {
            None => ev.decision = Some(Decision::Accepted),
            Some((status, detail)) => {
                ev.decision = Some(Decision::Refused);
                ev.reason = Some(
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                        StatusCode::SERVICE_UNAVAILABLE => "busy",
                        StatusCode::FORBIDDEN => "forbidden",
                        _ => "wrong_credentials",
                    }
                    .to_string(),
                );
                ev.detail = Some(detail.to_string());
            }
        }
        log.record(ev);
    }
}

/// A worker's proxy for one listener (its own backend connection pools).
#[derive(Clone, Debug)]
pub struct Proxy {
    /// Access decision and routes.
    plan: Arc<AccessPlan>,
    /// Which peers may make forwarding claims.
    forwarding: Arc<ForwardingConfig>,
    /// One backend and pool per target: `[0]` the listener's backend, then the routes'.
    targets: Vec<ProxyTarget>,
    /// Longest pause in a request body (then 408).
    body_idle_timeout: Duration,
    /// Request forwarded → backend response head (then 504).
    response_timeout: Duration,
}

/// One backend as a worker uses it: where, how (scheme + authority parsed once) and its pool.
#[derive(Clone, Debug)]
struct ProxyTarget {
    backend: Backend,
    /// Scheme and authority of forwarded request URIs (None for builtin/tcp backends).
    base: Option<(Scheme, Authority)>,
    client: Client<UpstreamConnector, IdleTimeoutBody>,
}

impl ProxyTarget {
    fn new(backend: Backend, connector: UpstreamConnector) -> Self {
        let base = match &backend {
            Backend::Http { authority, .. } => Authority::try_from(authority.as_str())
                .ok()
                .map(|a| (Scheme::HTTP, a)),
            Backend::Https { authority, .. } => Authority::try_from(authority.as_str())
                .ok()
                .map(|a| (Scheme::HTTPS, a)),
            Backend::BuiltinIdentity | Backend::Tcp { .. } => None,
        };
        ProxyTarget {
            backend,
            base,
            client: Proxy::client(connector),
        }
    }
}

/// Why a request target was refused before any rule ran (answered with 400).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `CONNECT` (authority-form): the gateway is not a forward proxy.
    #[error("CONNECT is not supported")]
    Connect,
    /// An HTTP/1 request in absolute-form (`GET https://host/path`): its host could differ
    /// from `Host`, and the gateway is not a forward proxy.
    #[error("absolute-form request targets are not accepted; send the path and a Host header")]
    AbsoluteForm,
    /// The path is ambiguous (see [`path`]).
    #[error("bad request path: {0}")]
    Path(#[from] PathError),
}

/// The canonical path of a request, or why its target is refused.
///
/// # Errors
/// [`TargetError`] for CONNECT, an HTTP/1 absolute-form target or an ambiguous path.
pub fn request_path<B>(req: &Request<B>, opts: &PathOptions) -> Result<CanonicalPath, TargetError> {
    if req.method() == Method::CONNECT {
        return Err(TargetError::Connect);
    }
    // HTTP/2 requests always carry :scheme and :authority, which hyper puts in the URI; an
    // HTTP/1 origin-form target has neither.
    if req.version() < Version::HTTP_2
        && (req.uri().scheme().is_some() || req.uri().authority().is_some())
    {
        return Err(TargetError::AbsoluteForm);
    }
    Ok(path::canonicalize(req.uri().path(), opts)?)
}

/// Whether a backend client error is a connect deadline ([`UpstreamError::Timeout`]).
fn is_connect_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(
            err.downcast_ref::<crate::upstream::UpstreamError>(),
            Some(crate::upstream::UpstreamError::Timeout { .. })
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A small text response.
pub fn text_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|n| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A small text response with a computed body (error paths only).
fn owned_text_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = text_response(status, "");
    *r.body_mut() = Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed();
    r
}

impl Proxy {
    /// A proxy applying `plan` (password fallback, rules, routes, upstream TLS), the
    /// listener's trusted proxies and its limits, with fresh connection pools for each of its
    /// targets.
    pub fn with_plan(
        plan: Arc<AccessPlan>,
        forwarding: Arc<ForwardingConfig>,
        limits: &Limits,
    ) -> Self {
        let targets = plan
            .targets()
            .iter()
            .map(|t| {
                ProxyTarget::new(
                    t.backend.clone(),
                    UpstreamConnector::new(t.upstream.clone())
                        .with_connect_timeout(limits.upstream_connect_timeout),
                )
            })
            .collect();
        Proxy {
            plan,
            forwarding,
            targets,
            body_idle_timeout: limits.body_idle_timeout,
            response_timeout: limits.upstream_response_timeout,
        }
    }

    fn client(connector: UpstreamConnector) -> Client<UpstreamConnector, IdleTimeoutBody> {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector)
    }

    /// Handles one request: authentication gate, header rewrite, forward.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        ctx: &ConnContext,
        counters: &WorkerCounters,
    ) -> Response<ProxyBody> {
        WorkerCounters::inc(&counters.requests);
        // One canonical path: the rules and routes match it, the backend receives it.
        let path = match request_path(&req, &self.plan.paths) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = %ctx.peer, target = %req.uri(), reason = %e, "request refused: ambiguous target");
                return owned_text_response(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        // One host: a single valid Host (HTTP/1.1), equal to :authority (HTTP/2).
        let version = req.version();
        let authority = req.uri().authority().cloned();
        let host = match headers::check_host(req.headers_mut(), version, authority.as_ref()) {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(peer = %ctx.peer, reason = %e, "request refused: ambiguous host");
                return owned_text_response(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        // Access decision: certificate alone if one was verified; else (IN CONFIDENCE)
        // Basic credentials; then the rules. SENSITIVE listeners never look at passwords.
        // A password attempt (no certificate, credentials sent) is an authentication
        // decision for the audit log.
        let attempt = ctx.audit.is_some()
            && ctx.identity.is_none()
            && req.headers().contains_key(http::header::AUTHORIZATION);
        let password_user = match self
            .plan
            .access
            .authorize(ctx.peer.ip(), ctx.identity.as_deref(), &path, req.headers())
            .await
        {
            Ok(granted) => {
                if attempt {
                    ctx.audit_password(granted.user.as_ref().map(|u| u.name.as_str()), None);
                }
                granted.user
            }
            Err(refused) => {
                if attempt {
                    let user = crate::access::basic::from_headers(req.headers())
                        .ok()
                        .flatten()
                        .map(|c| c.user);
                    ctx.audit_password(
                        user.as_deref(),
                        Some((refused.response.status(), &refused.log_reason)),
                    );
                }
                tracing::info!(peer = %ctx.peer, path = path.as_str(), status = refused.response.status().as_u16(), reason = %refused.log_reason, "request refused");
                return refused.response.map(|b| b.map_err(|n| match n {}).boxed());
            }
        };
        // `authorize` grants a request only with a certificate or a password user.
        let pw_headers;
        let id_headers = match (&ctx.identity_headers, &password_user) {
            (Some(h), _) => h,
            (None, Some(u)) => {
                pw_headers = IdentityHeaders::for_password_user(&u.name);
                &pw_headers
            }
            (None, None) => {
                tracing::error!(peer = %ctx.peer, path = path.as_str(), "request granted without an identity");
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no identity\n");
            }
        };
        // Identity hygiene: the backend learns who the client is from the gateway only.
        let trusted_proxy = self.forwarding.is_trusted(ctx.peer.ip());
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        // Also `Authorization`: a password user's credentials never reach the backend, and
        // a certificate client is judged by its certificate alone.
        let stripped = headers::strip_client_claims(h, trusted_proxy);
        if stripped > 0 {
            tracing::debug!(peer = %ctx.peer, stripped, "client identity/forwarding headers removed");
        }
        id_headers.apply(h);
        headers::set_forwarded(h, &ctx.forwarded_for, host, trusted_proxy);

        let index = self.plan.target_index(&path);
        let Some(target) = self.targets.get(index) else {
            return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no backend\n");
        };
        // Exactly the path the rules matched, then the client's query as sent.
        let mut pq = path.into_string();
        if let Some(q) = req.uri().query() {
            pq.push('?');
            pq.push_str(q);
        }
        let Ok(pq) = PathAndQuery::from_maybe_shared(Bytes::from(pq)) else {
            return text_response(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        let (scheme, authority) = match (&target.backend, &target.base) {
            (Backend::BuiltinIdentity, _) => {
                *req.uri_mut() = Uri::from(pq);
                return builtin::identity_response(&req);
            }
            (_, Some(base)) => base.clone(),
            (_, None) => {
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no http backend\n")
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(pq);
        *req.uri_mut() = match Uri::from_parts(parts) {
            Ok(u) => u,
            Err(_) => return text_response(StatusCode::BAD_REQUEST, "bad request target\n"),
        };
        *req.version_mut() = Version::HTTP_11;
        let req = req.map(|b| IdleTimeoutBody::new(b, self.body_idle_timeout));
        // Connect (its own, shorter deadline) + request + response head.
        let sent = tokio::time::timeout(self.response_timeout, target.client.request(req)).await;
        match sent {
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(e)) if body::is_idle_body(&e) => {
                WorkerCounters::inc(&counters.request_timeouts);
                tracing::info!(peer = %ctx.peer, timeout = ?self.body_idle_timeout, "request body stalled; 408");
                let mut r = text_response(StatusCode::REQUEST_TIMEOUT, "request body timed out\n");
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Ok(Err(e)) if is_connect_timeout(&e) => {
                WorkerCounters::inc(&counters.backend_timeouts);
                let error = crate::upstream::error_chain(&e);
                tracing::warn!(backend = ?target.backend, %error, "backend connect timed out; 504");
                text_response(StatusCode::GATEWAY_TIMEOUT, "backend timed out\n")
            }
            Ok(Err(e)) => {
                WorkerCounters::inc(&counters.backend_errors);
                let error = crate::upstream::error_chain(&e);
                tracing::warn!(backend = ?target.backend, %error, "backend request failed");
                text_response(StatusCode::BAD_GATEWAY, "backend unavailable\n")
            }
            Err(_) => {
                WorkerCounters::inc(&counters.backend_timeouts);
                tracing::warn!(backend = ?target.backend, timeout = ?self.response_timeout, "no response head from the backend in time; 504");
                text_response(StatusCode::GATEWAY_TIMEOUT, "backend timed out\n")
            }
        }
    }
}
