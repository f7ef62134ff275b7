//! Header rewriting between client and backend: hop-by-hop removal, anti-spoofing of the
//! identity headers, the identity headers themselves, X-Forwarded-*.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::pki::identity::{headers, AuthMethod, CertIdentity, IDENTITY_CACHE_MAX};

/// Hop-by-hop headers (RFC 9110 7.6.1) never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The gateway answers `Expect: 100-continue` itself when it reads the body.
    "expect",
];

/// Whether `name` is one of [`HOP_BY_HOP`] (one comparison by length, no hashing).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// Most requests and responses carry none: one pass over the names decides that without
/// hashing (a removal by `&str` name parses and hashes it: ten of them per message were 5 %
/// of a proxied request's instructions).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Which peers may make forwarding claims: `[listener.forwarding]`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    /// Peers (CIDRs) whose `Forwarded`/`X-Forwarded-*`/`X-Real-IP` headers are kept, with
    /// the peer appended to `X-Forwarded-For`. Empty (the default): every client's are
    /// replaced. Non-empty is a relaxation, logged at start-up. Identity headers
    /// (`x-client-*`) and `Authorization` are removed from every peer regardless.
    pub trusted_proxies: Vec<crate::steering::Cidr>,
}

impl ForwardingConfig {
    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }

    /// The relaxations in this configuration, for the start-up log.
    pub fn relaxations(&self) -> Vec<String> {
        if self.trusted_proxies.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = self.trusted_proxies.iter().map(|c| c.to_string()).collect();
        vec![format!(
            "forwarding.trusted_proxies = [{}]: these peers' Forwarded/X-Forwarded-*/X-Real-IP headers reach the backend",
            list.join(", ")
        )]
    }
}

/// What a client-sent header name means to the gateway, reading `_` as `-` and ignoring
/// case (CGI, WSGI, PHP-FPM, Rack and nginx map `X_Client_User` and `X-Client-User` to the
/// same `HTTP_X_CLIENT_USER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    /// Forwarded as sent.
    Keep,
    /// The gateway's identity namespace (`x-client-*`): only the gateway writes it; always
    /// removed from client requests.
    Identity,
    /// Client address, scheme, host and path claims (`Forwarded`, `X-Forwarded-*`,
    /// `X-Real-IP`, `True-Client-IP`, `X-Cluster-Client-IP`, `X-Original-URL`,
    /// `X-Original-URI`, `X-Rewrite-URL`): removed unless the peer is a trusted proxy.
    Forwarding,
}

/// Header names (with `-`) whose claims only the gateway or a trusted proxy may make.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    // Path overrides honoured by Symfony, Zend, IIS rewrite and nginx auth_request: a rule
    // on the canonical path means nothing if the backend routes on these.
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
];

/// `name` (lower case, as `HeaderName` stores it) equals or starts with `pattern` when `_`
/// is read as `-`.
fn dashed_starts_with(name: &[u8], pattern: &[u8]) -> bool {
    name.len() >= pattern.len()
        && name
            .iter()
            .zip(pattern)
            .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
}

/// Classifies a header name; no allocation.
pub fn classify(name: &HeaderName) -> HeaderClass {
    let n = name.as_str().as_bytes();
    // Cheap reject: every reserved name starts with x, f or t.
    match n.first() {
        Some(b'x' | b'f' | b't') => {}
        _ => return HeaderClass::Keep,
    }
    if dashed_starts_with(n, headers::RESERVED_PREFIX.as_bytes()) {
        return HeaderClass::Identity;
    }
    if dashed_starts_with(n, b"x-forwarded-")
        || FORWARDING
            .iter()
            .any(|f| n.len() == f.len() && dashed_starts_with(n, f.as_bytes()))
    {
        return HeaderClass::Forwarding;
    }
    HeaderClass::Keep
}

/// Removes every client header the gateway owns: the identity namespace always, the
/// forwarding claims unless `trusted_proxy`, and `Authorization` always (certificate
/// clients are judged by the certificate; a password user's credentials were consumed by
/// the gateway). Returns how many headers were removed. Allocates only when there is
/// something to remove.
pub fn strip_client_claims(h: &mut HeaderMap, trusted_proxy: bool) -> usize {
    let doomed = |k: &HeaderName| match classify(k) {
        HeaderClass::Keep => false,
        HeaderClass::Identity => true,
        HeaderClass::Forwarding => !trusted_proxy,
    };
    let mut removed = h.remove(http::header::AUTHORIZATION).is_some() as usize;
    if !h.keys().any(doomed) {
        return removed;
    }
    let names: Vec<HeaderName> = h.keys().filter(|k| doomed(k)).cloned().collect();
    for n in names {
        removed += h.get_all(&n).iter().count();
        h.remove(n);
    }
    removed
}

/// Removes every incoming header in the reserved identity namespace (`x-client-*`, with `_`
/// read as `-`), so a client can never spoof an identity.
pub fn strip_identity(h: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = h
        .keys()
        .filter(|k| classify(k) == HeaderClass::Identity)
        .cloned()
        .collect();
    for k in reserved {
        h.remove(k);
    }
}

/// A request whose host cannot be told unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// More than one `Host` header.
    #[error("more than one Host header")]
    Duplicate,
    /// An HTTP/1.1 request without `Host`.
    #[error("Host header required")]
    Missing,
    /// `Host` is not a valid `host[:port]` (or carries user information).
    #[error("Host header is not a valid host[:port]")]
    Invalid,
    /// HTTP/2: `Host` names another authority than `:authority`.
    #[error("Host header differs from :authority")]
    Mismatch,
}

/// Checks the request's host and returns it (the `Host` value; for HTTP/2 `:authority`,
/// which is also written to `Host` if absent so the HTTP/1.1 backend gets one).
///
/// # Errors
/// [`HostError`]: the request is answered with 400.
pub fn check_host(
    h: &mut HeaderMap,
    version: http::Version,
    authority: Option<&http::uri::Authority>,
) -> Result<Option<HeaderValue>, HostError> {
    let mut all = h.get_all(http::header::HOST).iter();
    let host = all.next().cloned();
    if all.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(v) = &host {
        let ok = !v.as_bytes().contains(&b'@')
            && http::uri::Authority::try_from(v.as_bytes()).is_ok_and(|a| !a.host().is_empty());
        if !ok {
            return Err(HostError::Invalid);
        }
    }
    if version == http::Version::HTTP_2 {
        let Some(a) = authority else {
            return Ok(host);
        };
        return match host {
            Some(v) if !v.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
                Err(HostError::Mismatch)
            }
            Some(v) => Ok(Some(v)),
            None => {
                let v = HeaderValue::from_str(a.as_str()).map_err(|_| HostError::Invalid)?;
                h.insert(http::header::HOST, v.clone());
                Ok(Some(v))
            }
        };
    }
    if host.is_none() && version == http::Version::HTTP_11 {
        return Err(HostError::Missing);
    }
    Ok(host)
}

/// The identity headers of a certificate identity or password user. Cheap to clone (shared):
/// a certificate's headers are built once per certificate and shared by its connections.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders(Arc<[(HeaderName, HeaderValue)]>);

fn value(s: &str) -> HeaderValue {
    // Control characters were escaped when the identity was built; anything else non-visible
    // is percent-escaped here so the header is always valid.
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let escaped: String = s
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        HeaderValue::from_str(&escaped).unwrap_or(HeaderValue::from_static("invalid"))
    })
}

impl IdentityHeaders {
    /// Headers for a certificate-authenticated client: built once per certificate (a
    /// process-wide cache keyed by the certificate's SHA-256 fingerprint, at most
    /// [`IDENTITY_CACHE_MAX`] entries, cleared when full) and shared, so a connection holds
    /// a pointer rather than its own copy.
    pub fn for_certificate(id: &CertIdentity) -> Self {
        static CACHE: OnceLock<papaya::HashMap<String, IdentityHeaders>> = OnceLock::new();
        let cache = CACHE.get_or_init(papaya::HashMap::new);
        let g = cache.pin();
        if let Some(h) = g.get(id.fingerprint_sha256.as_str()) {
            return h.clone();
        }
        let h = Self::build_for_certificate(id);
        if g.len() >= IDENTITY_CACHE_MAX {
            g.clear();
        }
        g.insert(id.fingerprint_sha256.clone(), h.clone());
        h
    }

    /// The headers of `id`, built.
    fn build_for_certificate(id: &CertIdentity) -> Self {
        let h = |n: &'static str, v: &str| (HeaderName::from_static(n), value(v));
        IdentityHeaders(Arc::new([
            h(headers::AUTH_METHOD, AuthMethod::Certificate.as_str()),
            h(headers::SUBJECT, &id.subject),
            h(headers::ISSUER, &id.issuer),
            h(headers::SERIAL, &id.serial_hex),
            h(headers::FINGERPRINT, &id.fingerprint_sha256),
            h(headers::SANS, &id.sans.join(", ")),
            h(headers::NOT_BEFORE, &id.not_before),
            h(headers::NOT_AFTER, &id.not_after),
        ]))
    }

    /// Headers for a password-authenticated user.
    pub fn for_password_user(user: &str) -> Self {
        IdentityHeaders(Arc::new([
            (
                HeaderName::from_static(headers::AUTH_METHOD),
                HeaderValue::from_static("password"),
            ),
            (HeaderName::from_static(headers::USER), value(user)),
        ]))
    }

    /// Writes the headers into a request (room for them and the `X-Forwarded-*` three is
    /// reserved first, so the map grows once at most).
    pub fn apply(&self, h: &mut HeaderMap) {
        h.reserve(self.0.len() + 3);
        for (n, v) in self.0.iter() {
            h.insert(n.clone(), v.clone());
        }
    }
}

/// The `X-Forwarded-For` value of a client address, computed once per connection.
pub fn forwarded_for_value(client: std::net::IpAddr) -> HeaderValue {
    value(&client.to_string())
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For` to the client address, `X-Forwarded-Proto: https` and
/// `X-Forwarded-Host` to the checked host. From a trusted proxy (`trusted_proxy`), its
/// `X-Forwarded-For` chain is kept and the client address appended, and its
/// `X-Forwarded-Proto`/`-Host` are kept when present.
pub fn set_forwarded(
    h: &mut HeaderMap,
    client: &HeaderValue,
    host: Option<HeaderValue>,
    trusted_proxy: bool,
) {
    let chain = if trusted_proxy {
        h.get(&XFF)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .and_then(|p| {
                let c = client.to_str().ok()?;
                HeaderValue::from_str(&format!("{p}, {c}")).ok()
            })
    } else {
        None
    };
    h.insert(XFF, chain.unwrap_or_else(|| client.clone()));
    if !(trusted_proxy && h.contains_key(&XFP)) {
        h.insert(XFP, HeaderValue::from_static("https"));
    }
    if !(trusted_proxy && h.contains_key(&XFH)) {
        match host {
            Some(v) => {
                h.insert(XFH, v);
            }
            None => {
                h.remove(&XFH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for n in HOP_BY_HOP {
            let name = HeaderName::from_static(n);
            assert!(is_hop_by_hop(&name), "{n}");
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(*n), "{n} kept");
            assert!(h.contains_key("x-keep"));
        }
        // Named only in Connection: removed with it; without Connection it is end-to-end.
        let mut h = HeaderMap::new();
        h.insert("x-secret", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("x-secret"));
        h.insert("connection", HeaderValue::from_static("X-Secret, close"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn spoofed_identity_and_hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-client-cert-subject",
            HeaderValue::from_static("CN=admin"),
        );
        h.insert("X-Client-Anything", HeaderValue::from_static("x"));
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        strip_identity(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn underscores_and_case_cannot_smuggle_reserved_names() {
        let c = |n: &str| classify(&HeaderName::from_bytes(n.as_bytes()).expect("name"));
        for n in [
            "x-client-cert-subject",
            "X_Client_Cert_Subject",
            "x_client_user",
            "X-CLIENT-user",
            "x-client_user",
            "x_client-anything",
        ] {
            assert_eq!(c(n), HeaderClass::Identity, "{n}");
        }
        for n in [
            "x-forwarded-for",
            "X_Forwarded_For",
            "x-forwarded-host",
            "x_forwarded_proto",
            "x-forwarded-prefix",
            "forwarded",
            "x-real-ip",
            "X_Real_IP",
            "true-client-ip",
            "x-original-url",
            "x_rewrite_url",
        ] {
            assert_eq!(c(n), HeaderClass::Forwarding, "{n}");
        }
        for n in [
            "x-clientx",
            "x-client",
            "accept",
            "x-forwardedfor",
            "forwarded-for",
            "x-real-ipv6",
            "te",
        ] {
            assert_eq!(c(n), HeaderClass::Keep, "{n}");
        }
    }

    #[test]
    fn claims_stripped_unless_trusted_authorization_always() {
        let base = || {
            let mut h = HeaderMap::new();
            h.insert("x_client_user", HeaderValue::from_static("root"));
            h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
            h.insert("x_forwarded_for", HeaderValue::from_static("10.0.0.2"));
            h.insert("forwarded", HeaderValue::from_static("for=10.0.0.3"));
            h.insert("authorization", HeaderValue::from_static("Bearer x"));
            h.insert("accept", HeaderValue::from_static("*/*"));
            h
        };
        let mut h = base();
        assert_eq!(strip_client_claims(&mut h, false), 5);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut h = base();
        assert_eq!(strip_client_claims(&mut h, true), 2);
        assert!(h.contains_key("forwarded") && h.contains_key("x_forwarded_for"));
        assert!(!h.contains_key("x_client_user") && !h.contains_key("authorization"));
    }

    #[test]
    fn forwarded_overwritten_or_appended_for_trusted_proxies() {
        let client = forwarded_for_value("127.0.0.1".parse().unwrap());
        let host = Some(HeaderValue::from_static("app.example"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        set_forwarded(&mut h, &client, host.clone(), false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("outer.example"),
        );
        set_forwarded(&mut h, &client, host, true);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "outer.example");
    }

    #[test]
    fn host_must_be_single_valid_and_agree_with_authority() {
        use http::Version;
        let hv = HeaderValue::from_static;
        let mut h = HeaderMap::new();
        assert_eq!(
            check_host(&mut h, Version::HTTP_11, None),
            Err(HostError::Missing)
        );
        assert_eq!(check_host(&mut h, Version::HTTP_10, None), Ok(None));
        h.append("host", hv("a.example"));
        assert_eq!(
            check_host(&mut h, Version::HTTP_11, None),
            Ok(Some(hv("a.example")))
        );
        h.append("host", hv("b.example"));
        assert_eq!(
            check_host(&mut h, Version::HTTP_11, None),
            Err(HostError::Duplicate)
        );
        for bad in ["user@a.example", "a.example/x", "a b", ""] {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                check_host(&mut h, Version::HTTP_11, None),
                Err(HostError::Invalid),
                "{bad}"
            );
        }
        let a: http::uri::Authority = "a.example:443".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(
            check_host(&mut h, Version::HTTP_2, Some(&a)),
            Ok(Some(hv("a.example:443")))
        );
        assert_eq!(h["host"], "a.example:443");
        let mut h = HeaderMap::new();
        h.insert("host", hv("evil.example"));
        assert_eq!(
            check_host(&mut h, Version::HTTP_2, Some(&a)),
            Err(HostError::Mismatch)
        );
    }
}
