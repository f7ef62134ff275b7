//! The built-in identity backend of the embedded default: answers every request with the
//! identity headers it received, as JSON.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use crate::pki::identity::headers;

/// Builds the JSON answer from the (already rewritten) request's identity headers.
pub fn identity_response<B>(req: &Request<B>) -> Response<ProxyBody> {
    let mut obj = serde_json::Map::new();
    for name in headers::ALL {
        if let Some(v) = req.headers().get(*name) {
            obj.insert(
                (*name).to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            );
        }
    }
    let body = serde_json::json!({
        "identity": obj,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "x-forwarded-for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
    });
    let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
    text.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed());
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
