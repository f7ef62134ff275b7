//! End-to-end edge hardening, as an attacker would try it: raw TLS clients (and curl) against
//! a gateway on loopback with a header-echo backend.
//!
//! * One canonical path: what the rules match is what the backend receives; ambiguous
//!   targets are refused with 400.

use std::path::PathBuf;
use std::sync::Arc;

use gateway_tests::backend::EchoBackend;
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{Leaf, LeafSpec, TestCa};
use gateway_tests::raw::{self, RawResponse};

struct Fixture {
    _tmp: tempfile::TempDir,
    #[allow(dead_code)]
    dir: PathBuf,
    client: Arc<rustls::ClientConfig>,
    #[allow(dead_code)]
    server_ca: TestCa,
    #[allow(dead_code)]
    ca: TestCa,
    #[allow(dead_code)]
    leaf: Leaf,
    backend: EchoBackend,
    gw: TestGateway,
}

/// A SENSITIVE listener in front of the echo backend (or `backend_url`), a client
/// certificate `CN=alice, OU=Staff`, and `extra` appended to the listener block.
fn fixture_with(backend_url: Option<&str>, global_extra: &str, extra: &str) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new("Hardening Client CA");
    let ca_file = ca.write_cert(&dir, "ca.pem");
    let server_ca = TestCa::new("Hardening Server CA");
    let server = server_ca.issue(&dir, "server", &LeafSpec::server());
    server_ca.write_cert(&dir, "server-ca.pem");
    let leaf = ca.issue(
        &dir,
        "alice",
        &LeafSpec {
            ou: Some("Staff".into()),
            ..LeafSpec::client("alice")
        },
    );
    let backend = EchoBackend::start();
    let url = backend_url
        .map(str::to_string)
        .unwrap_or_else(|| backend.url());
    let toml = format!(
        "{GLOBAL}{global_extra}{}",
        listener_toml(
            &url,
            &server.cert,
            &server.key,
            &[ca_file.as_path()],
            "sensitive",
            extra
        )
    );
    let gw = TestGateway::start(&dir, &toml);
    let client = raw::client_config(&server_ca, Some(&leaf), &["http/1.1"]);
    Fixture {
        _tmp: tmp,
        dir,
        client,
        server_ca,
        ca,
        leaf,
        backend,
        gw,
    }
}

fn fixture(extra: &str) -> Fixture {
    fixture_with(None, "", extra)
}

impl Fixture {
    fn get(&self, target: &str, headers: &[&str]) -> RawResponse {
        raw::get(self.gw.port(), &self.client, target, headers)
    }
}

const DENY_ADMIN: &str = r#"
[[listener.rule]]
path = "/admin"
action = "deny"
reason = "administrators only"

[[listener.rule]]
action = "allow"
"#;

#[test]
fn deny_admin_cannot_be_bypassed_by_path_spelling() {
    let f = fixture(DENY_ADMIN);
    // The plain case, for reference.
    assert_eq!(f.get("/admin/x", &[]).status, 403);
    // Ambiguous spellings: refused before any rule runs.
    for target in [
        "/admin;a/x",
        "/admin%2Fx",
        "/admin%2fx",
        "/admin\\x",
        "/admin%5Cx",
        "/x/..%2Fadmin",
        "/admin%00",
        "/admin%3Bx",
        "/admin/%c3",
        "/../admin",
    ] {
        let r = f.get(target, &[]);
        assert_eq!(r.status, 400, "{target}: {}\n{}", r.head, r.body);
    }
    // Equivalent spellings: normalised, then denied by the rule.
    for target in [
        "/./admin",
        "//admin",
        "/%61dmin",
        "/x/../admin",
        "/x/%2e%2e/admin",
        "/x/.%2E/admin/y",
        "/admin/.",
    ] {
        let r = f.get(target, &[]);
        assert_eq!(r.status, 403, "{target}: {}\n{}", r.head, r.body);
    }
    assert_eq!(f.backend.hits(), 0, "nothing reached the backend");
    // Absolute-form and asterisk-form targets.
    assert_eq!(f.get("https://localhost/admin", &[]).status, 400);
    assert_eq!(f.get("http://other.example/public", &[]).status, 400);
    let r = raw::exchange(
        f.gw.port(),
        &f.client,
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .expect("exchange");
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(f.backend.hits(), 0);
}

#[test]
fn backend_receives_exactly_the_canonical_path_and_the_original_query() {
    let f = fixture(DENY_ADMIN);
    for (target, forwarded) in [
        ("/public", "/public"),
        ("//a//b/./c/", "/a/b/c/"),
        ("/x/../%7euser/%61", "/~user/a"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/p?q=%2F..;x&y=/admin", "/p?q=%2F..;x&y=/admin"),
        ("/a/b/..?", "/a/?"),
    ] {
        let r = f.get(target, &[]);
        assert_eq!(r.status, 200, "{target}: {}\n{}", r.head, r.body);
        let j = r.json();
        assert_eq!(
            j["_path"], forwarded,
            "{target} must reach the backend as {forwarded}: {j}"
        );
    }
}

#[test]
fn case_insensitive_matching_is_an_option() {
    // Off (default): /ADMIN is another path to the rules and reaches the backend as /ADMIN.
    let f = fixture(DENY_ADMIN);
    let r = f.get("/ADMIN/x", &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.json()["_path"], "/ADMIN/x");
    // On: a case-insensitive backend cannot be reached past the rule.
    let f = fixture(&format!(
        "[listener.paths]\ncase_insensitive = true\n{DENY_ADMIN}"
    ));
    for target in ["/ADMIN/x", "/Admin", "/%41dmin"] {
        assert_eq!(f.get(target, &[]).status, 403, "{target}");
    }
    assert_eq!(f.get("/public", &[]).status, 200);
}

#[test]
fn relaxed_paths_are_opt_in_and_still_canonical() {
    let f = fixture(&format!(
        "[listener.paths]\nallow_semicolon = true\nallow_encoded_slash = true\n{DENY_ADMIN}"
    ));
    let r = f.get("/app;jsessionid=1/x", &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.json()["_path"], "/app;jsessionid=1/x");
    let r = f.get("/files/a%2fb", &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.json()["_path"], "/files/a%2Fb");
    // A dot segment hidden behind an encoded slash is refused even then.
    assert_eq!(f.get("/x/..%2Fadmin", &[]).status, 400);
}
