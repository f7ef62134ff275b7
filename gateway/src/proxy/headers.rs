//! Header rewriting between client and backend: hop-by-hop removal, anti-spoofing of the
//! identity headers, the identity headers themselves, X-Forwarded-*.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::pki::identity::{headers, AuthMethod, CertIdentity};

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

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
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

/// Removes every incoming header in the reserved identity namespace (`x-client-*`), so a
/// client can never spoof an identity.
pub fn strip_identity(h: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(headers::RESERVED_PREFIX))
        .cloned()
        .collect();
    for k in reserved {
        h.remove(k);
    }
}

/// The identity headers of a certificate identity, computed once per connection.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders(Vec<(HeaderName, HeaderValue)>);

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
    /// Headers for a certificate-authenticated client.
    pub fn for_certificate(id: &CertIdentity) -> Self {
        let h = |n: &'static str, v: &str| (HeaderName::from_static(n), value(v));
        IdentityHeaders(vec![
            h(headers::AUTH_METHOD, AuthMethod::Certificate.as_str()),
            h(headers::SUBJECT, &id.subject),
            h(headers::ISSUER, &id.issuer),
            h(headers::SERIAL, &id.serial_hex),
            h(headers::FINGERPRINT, &id.fingerprint_sha256),
            h(headers::SANS, &id.sans.join(", ")),
            h(headers::NOT_BEFORE, &id.not_before),
            h(headers::NOT_AFTER, &id.not_after),
        ])
    }

    /// Headers for a password-authenticated user.
    pub fn for_password_user(user: &str) -> Self {
        IdentityHeaders(vec![
            (
                HeaderName::from_static(headers::AUTH_METHOD),
                HeaderValue::from_static("password"),
            ),
            (HeaderName::from_static(headers::USER), value(user)),
        ])
    }

    /// Writes the headers into a request.
    pub fn apply(&self, h: &mut HeaderMap) {
        for (n, v) in &self.0 {
            h.insert(n.clone(), v.clone());
        }
    }
}

/// Appends the client address to X-Forwarded-For and sets X-Forwarded-Proto.
pub fn set_forwarded(h: &mut HeaderMap, client: std::net::IpAddr) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let joined = match h.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    h.insert(xff, value(&joined));
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn xff_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
