//! HTTP Basic authentication (RFC 7617): parsing `Authorization` and the 401 challenge.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

/// Largest `Authorization` header value accepted (bytes).
pub const MAX_HEADER_LEN: usize = 4096;

/// Why an `Authorization` header is not usable Basic credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    Multiple,
    /// The header is longer than [`MAX_HEADER_LEN`].
    #[error("Authorization header too long")]
    TooLong,
    /// Another scheme (Bearer, Digest, ...).
    #[error("Authorization scheme is not Basic")]
    NotBasic,
    /// The credentials are not base64.
    #[error("Basic credentials are not valid base64")]
    Base64,
    /// The decoded credentials are not UTF-8.
    #[error("Basic credentials are not UTF-8")]
    Utf8,
    /// No `:` between user and password.
    #[error("Basic credentials have no ':' separator")]
    NoColon,
    /// Empty user name or a control character in user or password.
    #[error("Basic credentials have an empty user name or a control character")]
    BadChars,
}

/// User name and password from a Basic `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Reads Basic credentials from request headers: `Ok(None)` if there is no `Authorization`
/// header.
///
/// # Errors
/// A [`BasicError`] if the header is present but unusable (the caller answers 401).
pub fn from_headers(headers: &HeaderMap) -> Result<Option<BasicCredentials>, BasicError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BasicError::Multiple);
    }
    parse(v.as_bytes()).map(Some)
}

/// Parses one `Authorization` header value: `Basic` (any case), one or more spaces, base64
/// (padding optional) of `user:password` in UTF-8. The user may not contain `:`; the
/// password may.
///
/// # Errors
/// A [`BasicError`] naming what is wrong.
pub fn parse(value: &[u8]) -> Result<BasicCredentials, BasicError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(BasicError::TooLong);
    }
    let value = value.trim_ascii();
    let split = value
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .ok_or(BasicError::NotBasic)?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(BasicError::NotBasic);
    }
    let token = rest.trim_ascii();
    if token.is_empty() || token.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(BasicError::Base64);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(token))
        .map_err(|_| BasicError::Base64)?;
    let text = String::from_utf8(decoded).map_err(|_| BasicError::Utf8)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    if user.is_empty() || user.chars().chain(password.chars()).any(char::is_control) {
        return Err(BasicError::BadChars);
    }
    Ok(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The `WWW-Authenticate` value: `Basic realm="...", charset="UTF-8"`, with `"` and `\`
/// escaped and control characters dropped from the realm.
pub fn challenge_value(realm: &str) -> HeaderValue {
    let mut escaped = String::with_capacity(realm.len() + 8);
    for c in realm.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let s = format!("Basic realm=\"{escaped}\", charset=\"UTF-8\"");
    HeaderValue::from_str(&s)
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"gateway\", charset=\"UTF-8\""))
}

/// A 401 response asking for Basic credentials in `realm`, with a short plain-text body.
pub fn unauthorized(realm: &str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    let h = r.headers_mut();
    h.insert(WWW_AUTHENTICATE, challenge_value(realm));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_good_credentials() {
        let c = parse(format!("Basic {}", b64("alice:pa:ss wörd")).as_bytes()).expect("ok");
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, "pa:ss wörd");
        let c = parse(format!("bAsIc   {}  ", b64("bob:x")).as_bytes()).expect("case, spaces");
        assert_eq!(c.user, "bob");
        // Padding optional.
        let unpadded = b64("bob:xy").trim_end_matches('=').to_string();
        assert_eq!(
            parse(format!("Basic {unpadded}").as_bytes())
                .expect("nopad")
                .password,
            "xy"
        );
        assert_eq!(
            parse(format!("Basic {}", b64("carol:")).as_bytes())
                .expect("empty pw")
                .password,
            ""
        );
    }

    #[test]
    fn rejects_bad_credentials() {
        assert_eq!(parse(b"Bearer abc"), Err(BasicError::NotBasic));
        assert_eq!(parse(b"Basic"), Err(BasicError::NotBasic));
        assert_eq!(parse(b"Basic !!!"), Err(BasicError::Base64));
        assert_eq!(parse(b"Basic YWxp Y2U6eA=="), Err(BasicError::Base64));
        assert_eq!(
            parse(format!("Basic {}", b64("nocolon")).as_bytes()),
            Err(BasicError::NoColon)
        );
        assert_eq!(
            parse(format!("Basic {}", b64(":pw")).as_bytes()),
            Err(BasicError::BadChars)
        );
        assert_eq!(
            parse(format!("Basic {}", b64("a:b\nc")).as_bytes()),
            Err(BasicError::BadChars)
        );
        let latin1 = base64::engine::general_purpose::STANDARD.encode([b'a', b':', 0xe9]);
        assert_eq!(
            parse(format!("Basic {latin1}").as_bytes()),
            Err(BasicError::Utf8)
        );
        assert_eq!(
            parse(&vec![b'a'; MAX_HEADER_LEN + 1]),
            Err(BasicError::TooLong)
        );
    }

    #[test]
    fn headers_absent_or_multiple() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h), Ok(None));
        h.append(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(
            from_headers(&h).expect("one").map(|c| c.user),
            Some("a".into())
        );
        h.append(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert_eq!(from_headers(&h), Err(BasicError::Multiple));
    }

    #[test]
    fn challenge_escapes_realm() {
        let r = unauthorized("Intranet \"A\"", "authentication required\n");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Basic realm=\"Intranet \\\"A\\\"\", charset=\"UTF-8\""
        );
    }
}
