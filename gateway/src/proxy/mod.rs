//! The HTTP reverse proxy: request rewriting, forwarding to the backend with streamed bodies,
//! and the built-in identity backend.

pub mod builtin;
pub mod headers;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::access::AccessPlan;
use crate::metrics::WorkerCounters;
use crate::pki::identity::CertIdentity;
use crate::upstream::{Backend, UpstreamConnector};
use headers::IdentityHeaders;

/// Response body type of the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the proxy knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnContext {
    /// Client address.
    pub peer: SocketAddr,
    /// The certificate identity, if the client presented a (verified) certificate.
    pub identity: Option<Arc<CertIdentity>>,
    /// Identity headers, computed once per connection.
    pub identity_headers: Option<IdentityHeaders>,
}

impl ConnContext {
    /// Context for a connection; precomputes the identity headers.
    pub fn new(peer: SocketAddr, identity: Option<Arc<CertIdentity>>) -> Self {
        let identity_headers = identity.as_deref().map(IdentityHeaders::for_certificate);
        ConnContext {
            peer,
            identity,
            identity_headers,
        }
    }
}

/// A worker's proxy for one listener (its own backend connection pools).
#[derive(Clone, Debug)]
pub struct Proxy {
    /// Access decision and routes.
    plan: Arc<AccessPlan>,
    /// One backend and pool per target: `[0]` the listener's backend, then the routes'.
    targets: Vec<(Backend, Client<UpstreamConnector, Incoming>)>,
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

impl Proxy {
    /// A proxy applying `plan` (password fallback, rules, routes, upstream TLS), with fresh
    /// connection pools for each of its targets.
    pub fn new(plan: Arc<AccessPlan>) -> Self {
        let targets = plan
            .targets()
            .iter()
            .map(|t| {
                let c = Self::client(UpstreamConnector::new(t.upstream.clone()));
                (t.backend.clone(), c)
            })
            .collect();
        Proxy { plan, targets }
    }

    fn client(connector: UpstreamConnector) -> Client<UpstreamConnector, Incoming> {
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
        let path = req.uri().path().to_owned();
        // Access decision: certificate alone if one was verified; else (IN CONFIDENCE)
        // Basic credentials; then the rules. SENSITIVE listeners never look at passwords.
        let password_user = match self
            .plan
            .access
            .authorize(ctx.peer.ip(), ctx.identity.as_deref(), &path, req.headers())
            .await
        {
            Ok(granted) => granted.user,
            Err(refused) => {
                tracing::info!(peer = %ctx.peer, %path, status = refused.response.status().as_u16(), reason = %refused.log_reason, "request refused");
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
                tracing::error!(peer = %ctx.peer, %path, "request granted without an identity");
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no identity\n");
            }
        };
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        headers::strip_identity(h);
        if password_user.is_some() {
            // The backend gets the user name, never the password.
            h.remove(http::header::AUTHORIZATION);
        }
        id_headers.apply(h);
        headers::set_forwarded(h, ctx.peer.ip());

        let index = self.plan.target_index(&path);
        let Some((backend, client)) = self.targets.get(index) else {
            return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no backend\n");
        };
        let (scheme, authority) = match backend {
            Backend::BuiltinIdentity => return builtin::identity_response(&req),
            Backend::Tcp { .. } => {
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, "tcp backend\n")
            }
            Backend::Http { authority, .. } => ("http", authority),
            Backend::Https { authority, .. } => ("https", authority),
        };
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(a) = req.uri().authority().cloned() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
        }
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = match format!("{scheme}://{authority}{pq}").parse() {
            Ok(u) => u,
            Err(_) => return text_response(StatusCode::BAD_REQUEST, "bad request target\n"),
        };
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        match client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                WorkerCounters::inc(&counters.backend_errors);
                let error = crate::upstream::error_chain(&e);
                tracing::warn!(backend = %authority, %error, "backend request failed");
                text_response(StatusCode::BAD_GATEWAY, "backend unavailable\n")
            }
        }
    }
}
