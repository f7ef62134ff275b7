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
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::{Backend, Classification};
use crate::metrics::WorkerCounters;
use crate::pki::identity::CertIdentity;
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
    /// Listener classification.
    pub classification: Classification,
}

impl ConnContext {
    /// Context for a connection; precomputes the identity headers.
    pub fn new(
        peer: SocketAddr,
        identity: Option<Arc<CertIdentity>>,
        classification: Classification,
    ) -> Self {
        let identity_headers = identity.as_deref().map(IdentityHeaders::for_certificate);
        ConnContext {
            peer,
            identity,
            identity_headers,
            classification,
        }
    }
}

/// A worker's proxy for one listener (its own backend connection pool).
#[derive(Clone, Debug)]
pub struct Proxy {
    backend: Backend,
    client: Client<HttpConnector, Incoming>,
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
    /// A proxy to `backend` with a fresh connection pool.
    pub fn new(backend: Backend) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector);
        Proxy { backend, client }
    }

    /// Handles one request: authentication gate, header rewrite, forward.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        ctx: &ConnContext,
        counters: &WorkerCounters,
    ) -> Response<ProxyBody> {
        WorkerCounters::inc(&counters.requests);
        let Some(id_headers) = &ctx.identity_headers else {
            // Only IN CONFIDENCE listeners complete a handshake without a certificate.
            let mut r = text_response(StatusCode::UNAUTHORIZED, "authentication required\n");
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gateway\", charset=\"UTF-8\""),
            );
            return r;
        };
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        headers::strip_identity(h);
        id_headers.apply(h);
        headers::set_forwarded(h, ctx.peer.ip());

        match &self.backend {
            Backend::BuiltinIdentity => builtin::identity_response(&req),
            Backend::Http { authority, .. } => {
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
                let uri: Uri = match format!("http://{authority}{pq}").parse() {
                    Ok(u) => u,
                    Err(_) => {
                        return text_response(StatusCode::BAD_REQUEST, "bad request target\n")
                    }
                };
                *req.uri_mut() = uri;
                *req.version_mut() = Version::HTTP_11;
                match self.client.request(req).await {
                    Ok(resp) => {
                        let (mut parts, body) = resp.into_parts();
                        headers::strip_hop_by_hop(&mut parts.headers);
                        Response::from_parts(parts, body.boxed())
                    }
                    Err(e) => {
                        WorkerCounters::inc(&counters.backend_errors);
                        tracing::warn!(backend = %authority, error = %e, "backend request failed");
                        text_response(StatusCode::BAD_GATEWAY, "backend unavailable\n")
                    }
                }
            }
        }
    }
}
