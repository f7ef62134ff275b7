//! One canonical request path.
//!
//! The gateway normalises a request path **once**; the rules and routes match that canonical
//! path and exactly that path (plus the original query) is forwarded to the backend. Input a
//! backend could read differently from the gateway is refused (400) instead of guessed at.
//!
//! [`canonicalize`] is a pure function (no I/O, no global state): the fuzz target calls it
//! directly, and the properties below hold for any input it accepts.
//!
//! # The canonical form
//!
//! * It starts with `/`; segments are separated by single `/` (duplicate slashes merged,
//!   unless [`PathOptions::merge_slashes`] is off); a trailing `/` is kept.
//! * `.` and `..` segments are resolved (RFC 3986 5.2.4), after decoding, so `%2E%2E` is
//!   `..`. A `..` above the root is refused (not clamped).
//! * Percent-encoded **unreserved** characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every
//!   other escape stays encoded with upper-case hex digits (`%c3%a9` → `%C3%A9`).
//! * Raw bytes that are not allowed in a path segment (e.g. `|`, `"`, `{`, non-ASCII) are
//!   percent-encoded, so a raw and an encoded spelling of them are one path.
//! * Reserved characters (`! $ & ' ( ) * + , = : @`) keep the spelling the client used:
//!   `!` and `%21` are different canonical paths (RFC 3986 6.2.2.2). Rule paths containing
//!   them match only the same spelling.
//!
//! # Refused by default ([`PathError`])
//!
//! `%2F` (an encoded slash: a segment to the gateway, a separator to many backends), `\`
//! and `%5C` (a separator on Windows back ends), `;` and `%3B` (path parameters, which
//! Tomcat/Jetty/Spring strip before routing), NUL and control bytes raw or encoded, an escape
//! that does not decode to valid UTF-8, a malformed escape, `?`/`#` inside the path, a `..`
//! above the root, and anything that is not an origin-form path (`*`, `http://…`).

use std::fmt::Write as _;

/// How strict the normaliser is: `[listener.paths]`. [`PathOptions::default`] is the strict
/// policy; each `true` `allow_*` or `false` `merge_slashes` is a relaxation (logged at
/// start-up, see [`PathOptions::relaxations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathOptions {
    /// Accept `%2F` inside a segment (kept encoded). A segment that `%2F` splits into a
    /// `.` or `..` part is still refused.
    pub allow_encoded_slash: bool,
    /// Accept `\` and `%5C` (forwarded as `%5C`, part of a segment).
    pub allow_backslash: bool,
    /// Accept `;` (kept raw) and `%3B` (kept encoded) inside a segment.
    pub allow_semicolon: bool,
    /// Merge empty segments (`//`) into one slash.
    pub merge_slashes: bool,
    /// Rules and routes compare paths ignoring ASCII case.
    pub case_insensitive: bool,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions::STRICT
    }
}

impl PathOptions {
    /// The strict policy: every ambiguity refused, slashes merged, case-sensitive.
    pub const STRICT: PathOptions = PathOptions {
        allow_encoded_slash: false,
        allow_backslash: false,
        allow_semicolon: false,
        merge_slashes: true,
        case_insensitive: false,
    };

    /// Everything the normaliser can accept (for compiling configured rule prefixes, which
    /// are trusted input).
    pub const PERMISSIVE: PathOptions = PathOptions {
        allow_encoded_slash: true,
        allow_backslash: true,
        allow_semicolon: true,
        merge_slashes: true,
        case_insensitive: false,
    };

    /// The relaxations of the strict policy in these options, for the start-up log.
    pub fn relaxations(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.allow_encoded_slash {
            out.push("paths.allow_encoded_slash: %2F accepted inside a segment (a backend that decodes it before routing sees another path)");
        }
        if self.allow_backslash {
            out.push("paths.allow_backslash: \\ and %5C accepted (a Windows backend reads them as separators)");
        }
        if self.allow_semicolon {
            out.push("paths.allow_semicolon: ; accepted in segments (Tomcat/Jetty/Spring strip path parameters before routing)");
        }
        if !self.merge_slashes {
            out.push("paths.merge_slashes = false: //x is not /x to the rules (a backend that merges slashes sees /x)");
        }
        out
    }
}

/// Why a path was refused. Each is answered with `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an origin-form path (does not start with `/`): `*`, absolute-form, empty.
    #[error("request target is not an origin-form path")]
    NotOriginForm,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape at byte {0}")]
    BadEscape(usize),
    /// `%2F` inside a segment.
    #[error("encoded slash (%2F) in the path")]
    EncodedSlash,
    /// `\` or `%5C`.
    #[error("backslash (\\ or %5C) in the path")]
    Backslash,
    /// `;` or `%3B` inside a segment.
    #[error("semicolon (path parameter) in the path")]
    Semicolon,
    /// NUL, raw or `%00`.
    #[error("NUL byte in the path")]
    Nul,
    /// A control byte (0x01-0x1F, 0x7F), raw or encoded.
    #[error("control byte in the path")]
    Control,
    /// `?` or `#` inside what should be the path alone.
    #[error("query or fragment delimiter inside the path")]
    Delimiter,
    /// The decoded bytes are not UTF-8.
    #[error("path does not decode to valid UTF-8")]
    InvalidUtf8,
    /// `..` above the root.
    #[error("path escapes the root with ..")]
    EscapesRoot,
    /// A `.`/`..` hidden between encoded separators (`..%2F`), with encoded slashes allowed.
    #[error("dot segment hidden behind an encoded separator")]
    HiddenDotSegment,
}

/// A canonical path: what the rules match and what the backend receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    path: String,
    case_insensitive: bool,
}

impl CanonicalPath {
    /// The root path `/` (TCP listeners apply their rules to it).
    pub fn root() -> Self {
        CanonicalPath {
            path: "/".into(),
            case_insensitive: false,
        }
    }

    /// The canonical path (starts with `/`, no query).
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The path as an owned string (to append the query and forward it).
    pub fn into_string(self) -> String {
        self.path
    }

    /// Whether matching ignores ASCII case.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// Whether the canonical `prefix` covers this path by whole segments: `/admin` covers
    /// `/admin`, `/admin/` and `/admin/x`, not `/administrator`; `/` covers everything.
    pub fn covered_by(&self, prefix: &str) -> bool {
        covers(prefix, &self.path, self.case_insensitive)
    }
}

/// Whether canonical `prefix` covers canonical `path` by whole segments.
pub fn covers(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return true;
    }
    let (pb, b) = (p.as_bytes(), path.as_bytes());
    if b.len() < pb.len() {
        return false;
    }
    let head = &b[..pb.len()];
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(pb)
    } else {
        head == pb
    };
    same && matches!(b.get(pb.len()), None | Some(b'/'))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may appear raw in a canonical segment: unreserved, sub-delims except `;`,
/// `:` and `@` (RFC 3986 `pchar`).
fn is_raw_ok(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{b:02X}");
}

/// Checks one byte that a client sent raw or encoded, common to both spellings.
fn check_byte(b: u8, opts: &PathOptions) -> Result<(), PathError> {
    match b {
        0 => Err(PathError::Nul),
        0x01..=0x1f | 0x7f => Err(PathError::Control),
        b'\\' if !opts.allow_backslash => Err(PathError::Backslash),
        b';' if !opts.allow_semicolon => Err(PathError::Semicolon),
        _ => Ok(()),
    }
}

/// Validates a run of decoded non-ASCII bytes as UTF-8 and clears it.
fn flush_utf8(run: &mut Vec<u8>) -> Result<(), PathError> {
    if !run.is_empty() {
        std::str::from_utf8(run).map_err(|_| PathError::InvalidUtf8)?;
        run.clear();
    }
    Ok(())
}

/// Normalises `raw` (the request path without its query) into its one canonical form, or
/// refuses it.
///
/// # Errors
/// A [`PathError`] naming the ambiguity; the request is answered with 400.
pub fn canonicalize(raw: &str, opts: &PathOptions) -> Result<CanonicalPath, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut out = String::with_capacity(b.len());
    // Decoded non-ASCII bytes of the current character run, validated as UTF-8 when the run
    // ends (allocates only for non-ASCII paths).
    let mut run: Vec<u8> = Vec::new();
    let mut i = 1; // after the leading '/'
    loop {
        // One segment: raw[i .. next '/' or end].
        let mark = out.len();
        out.push('/');
        let mut has_encoded_sep = false;
        while i < b.len() && b[i] != b'/' {
            let (byte, encoded) = if b[i] == b'%' {
                let v = match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(PathError::BadEscape(i)),
                };
                i += 3;
                (v, true)
            } else {
                i += 1;
                (b[i - 1], false)
            };
            check_byte(byte, opts)?;
            if byte >= 0x80 {
                run.push(byte);
            } else {
                flush_utf8(&mut run)?;
            }
            match byte {
                b'/' if encoded => {
                    if !opts.allow_encoded_slash {
                        return Err(PathError::EncodedSlash);
                    }
                    has_encoded_sep = true;
                    out.push_str("%2F");
                }
                b'\\' => {
                    has_encoded_sep = true;
                    out.push_str("%5C");
                }
                b'?' | b'#' if !encoded => return Err(PathError::Delimiter),
                b';' if !encoded => out.push(';'),
                _ if is_unreserved(byte) => out.push(byte as char),
                _ if !encoded && is_raw_ok(byte) => out.push(byte as char),
                _ => push_escaped(&mut out, byte),
            }
        }
        flush_utf8(&mut run)?;
        let last = i >= b.len();
        let seg = &out[mark + 1..];
        let dir_like = match seg {
            "." => {
                out.truncate(mark);
                true
            }
            ".." => {
                out.truncate(mark);
                let parent = out.rfind('/').ok_or(PathError::EscapesRoot)?;
                out.truncate(parent);
                true
            }
            "" if opts.merge_slashes => {
                out.truncate(mark);
                true
            }
            "" => false,
            _ => {
                if has_encoded_sep
                    && seg
                        .split("%2F")
                        .flat_map(|s| s.split("%5C"))
                        .any(|s| s == "." || s == "..")
                {
                    return Err(PathError::HiddenDotSegment);
                }
                false
            }
        };
        if last {
            // `/a/`, `/a/.` and `/a/b/..` end with a slash; so does the root.
            if dir_like || out.is_empty() {
                out.push('/');
            }
            break;
        }
        i += 1; // skip the '/'
    }
    Ok(CanonicalPath {
        path: out,
        case_insensitive: opts.case_insensitive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Result<String, PathError> {
        canonicalize(p, &PathOptions::STRICT).map(CanonicalPath::into_string)
    }

    fn with(p: &str, opts: PathOptions) -> Result<String, PathError> {
        canonicalize(p, &opts).map(CanonicalPath::into_string)
    }

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a/b/c", "/a/b/c"),
            ("//admin", "/admin"),
            ("/a//b///c/", "/a/b/c/"),
            ("/./admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/x/../admin", "/admin"),
            ("/x/%2e%2E/admin", "/admin"),
            ("/x/.%2e/admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%7euser", "/~user"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/a|b", "/a%7Cb"),
            ("/a%7cb", "/a%7Cb"),
            ("/a!b", "/a!b"),
            ("/a%21b", "/a%21b"),
            ("/a%20b", "/a%20b"),
            ("/a%25b", "/a%25b"),
            ("/a:b@c", "/a:b@c"),
            ("/..a/b..", "/..a/b.."),
            ("/...", "/..."),
            ("//", "/"),
            ("/.", "/"),
            ("/./", "/"),
        ] {
            assert_eq!(c(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_input_refused() {
        for (raw, err) in [
            ("", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
            ("http://x/admin", PathError::NotOriginForm),
            ("admin", PathError::NotOriginForm),
            ("/admin%2Fx", PathError::EncodedSlash),
            ("/admin%2fx", PathError::EncodedSlash),
            ("/x/..%2Fadmin", PathError::EncodedSlash),
            ("/admin\\x", PathError::Backslash),
            ("/admin%5Cx", PathError::Backslash),
            ("/admin;a/x", PathError::Semicolon),
            ("/admin%3Bx", PathError::Semicolon),
            ("/a%00", PathError::Nul),
            ("/a\0", PathError::Nul),
            ("/a%0a", PathError::Control),
            ("/a%7F", PathError::Control),
            ("/a\t", PathError::Control),
            ("/a%", PathError::BadEscape(2)),
            ("/a%4", PathError::BadEscape(2)),
            ("/a%zz", PathError::BadEscape(2)),
            ("/a%c3", PathError::InvalidUtf8),
            ("/a%c3x", PathError::InvalidUtf8),
            ("/a%ff%fe", PathError::InvalidUtf8),
            ("/a%ed%a0%80", PathError::InvalidUtf8), // a surrogate
            ("/a?b", PathError::Delimiter),
            ("/a#b", PathError::Delimiter),
            ("/..", PathError::EscapesRoot),
            ("/a/../..", PathError::EscapesRoot),
            ("/%2e%2e/x", PathError::EscapesRoot),
        ] {
            assert_eq!(c(raw), Err(err), "{raw:?}");
        }
    }

    #[test]
    fn relaxations_keep_one_spelling() {
        let o = PathOptions {
            allow_encoded_slash: true,
            allow_backslash: true,
            allow_semicolon: true,
            merge_slashes: false,
            case_insensitive: false,
        };
        assert_eq!(with("/a%2fb", o).as_deref(), Ok("/a%2Fb"));
        assert_eq!(with("/a\\b", o).as_deref(), Ok("/a%5Cb"));
        assert_eq!(with("/a%5cb", o).as_deref(), Ok("/a%5Cb"));
        assert_eq!(with("/a;v=1/b", o).as_deref(), Ok("/a;v=1/b"));
        assert_eq!(with("/a%3bb", o).as_deref(), Ok("/a%3Bb"));
        assert_eq!(with("//a//b", o).as_deref(), Ok("//a//b"));
        assert_eq!(with("/a//../b", o).as_deref(), Ok("/a/b"));
        assert_eq!(with("/x/..%2Fadmin", o), Err(PathError::HiddenDotSegment));
        assert_eq!(with("/x/a%2F..", o), Err(PathError::HiddenDotSegment));
        assert_eq!(with("/x/..\\admin", o), Err(PathError::HiddenDotSegment));
        // Still refused under every relaxation.
        assert_eq!(with("/a%00", o), Err(PathError::Nul));
        assert_eq!(with("/../a", o), Err(PathError::EscapesRoot));
    }

    #[test]
    fn covering_by_whole_segments() {
        let p = |s: &str, ci: bool| {
            canonicalize(
                s,
                &PathOptions {
                    case_insensitive: ci,
                    ..PathOptions::STRICT
                },
            )
            .expect("canonical")
        };
        assert!(p("/admin", false).covered_by("/admin"));
        assert!(p("/admin/", false).covered_by("/admin"));
        assert!(p("/admin/x", false).covered_by("/admin/"));
        assert!(!p("/administrator", false).covered_by("/admin"));
        assert!(!p("/ADMIN/x", false).covered_by("/admin"));
        assert!(p("/ADMIN/x", true).covered_by("/admin"));
        assert!(p("/Admin", true).covered_by("/aDMIN"));
        assert!(p("/anything", false).covered_by("/"));
        assert!(!p("/adm", false).covered_by("/admin"));
    }

    #[test]
    fn canonical_output_is_a_fixed_point_and_a_valid_uri_path() {
        for raw in [
            "/a/./b//c/%2e%2e/d%7c%C3%A9?",
            "/x/%7Euser/ü/a b",
            "/%41%42%43/\"{}\"/^`",
        ] {
            let raw = raw.trim_end_matches('?');
            let Ok(once) = c(raw) else { continue };
            assert_eq!(c(&once).as_deref(), Ok(once.as_str()), "{raw}");
            assert!(once.parse::<http::uri::PathAndQuery>().is_ok(), "{once}");
        }
    }

    /// Every path of up to 5 bytes over an alphabet of separators, dots and escapes: the
    /// output is canonical (a fixed point, no empty or dot segment, a valid URI path), under
    /// the strict and the most relaxed options.
    #[test]
    fn exhaustive_small_paths_are_fixed_points() {
        const ALPHA: &[u8] = b"/.aA%2eF;\\";
        let relaxed = PathOptions {
            merge_slashes: true,
            ..PathOptions::PERMISSIVE
        };
        let mut buf = vec![b'/'];
        let mut checked = 0usize;
        fn walk(buf: &mut Vec<u8>, depth: usize, f: &mut dyn FnMut(&str)) {
            if let Ok(s) = std::str::from_utf8(buf) {
                f(s);
            }
            if depth == 0 {
                return;
            }
            for &b in ALPHA {
                buf.push(b);
                walk(buf, depth - 1, f);
                buf.pop();
            }
        }
        walk(&mut buf, 5, &mut |raw| {
            for opts in [PathOptions::STRICT, relaxed] {
                let Ok(out) = canonicalize(raw, &opts) else {
                    continue;
                };
                let out = out.into_string();
                checked += 1;
                assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
                assert!(!out.contains("//"), "{raw:?} -> {out:?}");
                for seg in out.split('/').skip(1) {
                    assert!(seg != "." && seg != "..", "{raw:?} -> {out:?}");
                }
                assert_eq!(
                    canonicalize(&out, &opts).map(CanonicalPath::into_string),
                    Ok(out.clone()),
                    "{raw:?}"
                );
                assert!(out.parse::<http::uri::PathAndQuery>().is_ok(), "{out:?}");
            }
        });
        assert!(checked > 1000, "{checked}");
    }
}
