//! The per-request work of one keep-alive request before it is forwarded: path
//! canonicalisation, host check, identity hygiene, identity + forwarding headers, and the
//! backend URI. `before_10` is main before issue #10 (copied here as the reference: raw path
//! forwarded via `format!` + parse, only `x-client-*` stripped, X-Forwarded-For appended);
//! `after_10` is the gateway's code now.

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::proxy::headers::{self, IdentityHeaders};
use gateway::proxy::path::{canonicalize, PathOptions};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};

/// A browser-like keep-alive request with a query.
fn request() -> Request<()> {
    let mut r = Request::get("/app/reports/2026/index.html?page=2&sort=desc")
        .version(Version::HTTP_11)
        .body(())
        .expect("request");
    let h = r.headers_mut();
    for (n, v) in [
        ("host", "app.example.org"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-NZ,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.org/app/reports/"),
        (
            "cookie",
            "session=0123456789abcdef0123456789abcdef; theme=dark",
        ),
        ("connection", "keep-alive"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("priority", "u=0, i"),
    ] {
        h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    r
}

mod before_10 {
    use super::*;

    pub fn strip_identity(h: &mut HeaderMap) {
        let reserved: Vec<HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("x-client-"))
            .cloned()
            .collect();
        for k in reserved {
            h.remove(k);
        }
    }

    pub fn set_forwarded(h: &mut HeaderMap, client: std::net::IpAddr) {
        let xff = HeaderName::from_static("x-forwarded-for");
        let joined = match h.get(&xff).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
            _ => client.to_string(),
        };
        h.insert(xff, HeaderValue::from_str(&joined).expect("value"));
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
    }

    /// The rules' normaliser of main before #10 (allocating, result used for matching only).
    pub fn normalize_path(path: &str) -> Option<String> {
        let b = path.as_bytes();
        let mut bytes: Vec<u8> = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let h = b.get(i + 1..i + 3)?;
                let s = std::str::from_utf8(h).ok()?;
                let v = u8::from_str_radix(s, 16).ok()?;
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    bytes.push(v);
                } else {
                    bytes.push(b'%');
                    bytes.extend_from_slice(s.to_ascii_uppercase().as_bytes());
                }
                i += 3;
            } else {
                bytes.push(b[i]);
                i += 1;
            }
        }
        let decoded = String::from_utf8(bytes).ok()?;
        let mut segs: Vec<&str> = Vec::new();
        for s in decoded.split('/') {
            match s {
                "" | "." => {}
                ".." => {
                    segs.pop()?;
                }
                other => segs.push(other),
            }
        }
        let mut out = String::from("/");
        out.push_str(&segs.join("/"));
        Some(out)
    }

    pub fn run(mut req: Request<()>, id: &IdentityHeaders, peer: std::net::IpAddr) -> Request<()> {
        let path = req.uri().path().to_owned();
        let norm = normalize_path(&path).expect("path");
        std::hint::black_box(&norm);
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        strip_identity(h);
        id.apply(h);
        set_forwarded(h, peer);
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = format!("http://127.0.0.1:8080{pq}").parse().expect("uri");
        *req.uri_mut() = uri;
        req
    }
}

fn after_10(
    mut req: Request<()>,
    id: &IdentityHeaders,
    xff: &HeaderValue,
    base: &(Scheme, Authority),
) -> Request<()> {
    let path = canonicalize(req.uri().path(), &PathOptions::STRICT).expect("path");
    let authority = req.uri().authority().cloned();
    let version = req.version();
    let host = headers::check_host(req.headers_mut(), version, authority.as_ref()).expect("host");
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h);
    headers::strip_client_claims(h, false);
    id.apply(h);
    headers::set_forwarded(h, xff, host, false);
    let mut pq = path.into_string();
    if let Some(q) = req.uri().query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(base.0.clone());
    parts.authority = Some(base.1.clone());
    parts.path_and_query =
        Some(PathAndQuery::from_maybe_shared(bytes::Bytes::from(pq)).expect("pq"));
    *req.uri_mut() = Uri::from_parts(parts).expect("uri");
    req
}

fn bench(c: &mut Criterion) {
    let id = IdentityHeaders::for_password_user("alice");
    let peer: std::net::IpAddr = "192.0.2.10".parse().expect("ip");
    let xff = headers::forwarded_for_value(peer);
    let base = (Scheme::HTTP, Authority::from_static("127.0.0.1:8080"));
    let mut g = c.benchmark_group("request_rewrite");
    g.bench_function("before_10", |b| {
        b.iter_batched(
            request,
            |r| before_10::run(r, &id, peer),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("after_10", |b| {
        b.iter_batched(
            request,
            |r| after_10(r, &id, &xff, &base),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
