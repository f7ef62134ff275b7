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

// ---------------------------------------------------------------------------------------
// Identity hygiene
// ---------------------------------------------------------------------------------------

const SPOOFS: &[&str] = &[
    "X-Client-Cert-Subject: CN=admin",
    "X_Client_Cert_Subject: CN=admin",
    "x_client_user: root",
    "X-Client_Auth-Method: password",
    "Authorization: Bearer stolen-token",
    "X-Forwarded-For: 6.6.6.6",
    "X_Forwarded_For: 6.6.6.6",
    "X-Forwarded-Host: evil.example",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Prefix: /admin",
    "Forwarded: for=6.6.6.6;proto=http",
    "X-Real-IP: 6.6.6.6",
    "X_Real_IP: 6.6.6.6",
    "True-Client-IP: 6.6.6.6",
    "X-Original-URL: /admin",
    "X-Rewrite-URL: /admin",
];

/// The JSON keys a CGI-style backend would read as the same variable as `name`.
fn cgi_names(j: &serde_json::Value) -> Vec<String> {
    j.as_object()
        .map(|o| o.keys().map(|k| k.replace('_', "-")).collect())
        .unwrap_or_default()
}

#[test]
fn spoofed_identity_and_forwarding_headers_never_reach_the_backend() {
    let f = fixture("");
    let r = f.get("/app", SPOOFS);
    assert_eq!(r.status, 200, "{}", r.head);
    let j = r.json();
    // The gateway's identity, and nothing a client wrote in its namespace.
    let subject = j["x-client-cert-subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains("CN=alice") && !subject.contains("admin"),
        "{j}"
    );
    assert_eq!(j["x-client-auth-method"], "certificate", "{j}");
    let names = cgi_names(&j);
    for n in [
        "x-client-user",
        "authorization",
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
    ] {
        assert!(
            !names.iter().any(|k| k == n),
            "{n} reached the backend: {j}"
        );
    }
    let obj = j.as_object().expect("object");
    for k in obj.keys().filter(|k| !k.starts_with('_')) {
        assert!(
            !k.contains('_'),
            "underscore variant {k} reached the backend: {j}"
        );
    }
    assert_eq!(j["x-forwarded-for"], "127.0.0.1", "{j}");
    assert_eq!(j["x-forwarded-proto"], "https", "{j}");
    assert_eq!(j["x-forwarded-host"], "localhost", "{j}");
}

#[test]
fn trusted_proxy_mode_keeps_forwarding_claims_never_identity() {
    let f = fixture("[listener.forwarding]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    let r = f.get("/app", SPOOFS);
    assert_eq!(r.status, 200, "{}", r.head);
    let j = r.json();
    assert_eq!(j["x-forwarded-for"], "6.6.6.6, 127.0.0.1", "{j}");
    assert_eq!(j["forwarded"], "for=6.6.6.6;proto=http", "{j}");
    assert_eq!(j["x-forwarded-host"], "evil.example", "{j}");
    assert_eq!(j["x-real-ip"], "6.6.6.6", "{j}");
    let names = cgi_names(&j);
    assert!(!names.iter().any(|k| k == "authorization"), "{j}");
    assert!(!names.iter().any(|k| k == "x-client-user"), "{j}");
    assert!(j["x-client-cert-subject"]
        .as_str()
        .is_some_and(|s| s.contains("CN=alice")));
}

#[test]
fn ambiguous_hosts_and_odd_header_lines_are_refused() {
    let f = fixture("");
    let send = |raw: &str| raw::exchange(f.gw.port(), &f.client, raw.as_bytes()).expect("exchange");
    for (what, raw) in [
        (
            "two Host headers",
            "GET /a HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host on HTTP/1.1",
            "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        (
            "user info in Host",
            "GET /a HTTP/1.1\r\nHost: admin@localhost\r\nConnection: close\r\n\r\n",
        ),
        (
            "space before the colon",
            "GET /a HTTP/1.1\r\nHost: localhost\r\nX-Client-User : root\r\nConnection: close\r\n\r\n",
        ),
        (
            "obsolete line folding",
            "GET /a HTTP/1.1\r\nHost: localhost\r\nX-Note: a\r\n X-Client-User: root\r\nConnection: close\r\n\r\n",
        ),
        (
            "NUL in a header name",
            "GET /a HTTP/1.1\r\nHost: localhost\r\nX-Client\0-User: root\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let r = send(raw);
        assert_eq!(r.status, 400, "{what}: {}\n{}", r.head, r.body);
    }
    assert_eq!(f.backend.hits(), 0, "nothing reached the backend");
    // HTTP/1.0 without Host is still served.
    let r = send("GET /a HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head);
}

#[test]
fn http2_host_must_match_authority_and_identity_is_clean() {
    let f = fixture("");
    let cfg = raw::client_config(&f.server_ca, Some(&f.leaf), &["h2"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let port = f.gw.port();
    let statuses = rt.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        let mut out = Vec::new();
        for (host, spoof) in [
            (None, true),
            (Some("evil.example"), false),
            (Some("localhost"), false),
        ] {
            let mut b = hyper::Request::get(format!("https://localhost:{port}/app"));
            if let Some(h) = host {
                b = b.header("host", format!("{h}:{port}"));
            }
            if spoof {
                b = b
                    .header("x_client_user", "root")
                    .header("x-client-cert-subject", "CN=admin")
                    .header("authorization", "Bearer stolen");
            }
            let resp = send
                .send_request(b.body(Empty::<bytes::Bytes>::new()).expect("request"))
                .await
                .expect("response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            out.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        out
    });
    assert_eq!(statuses[0].0, 200, "{statuses:?}");
    let j: serde_json::Value = serde_json::from_str(&statuses[0].1).expect("json");
    assert!(
        j.get("x_client_user").is_none() && j.get("authorization").is_none(),
        "{j}"
    );
    assert!(j["x-client-cert-subject"]
        .as_str()
        .is_some_and(|s| s.contains("CN=alice")));
    assert_eq!(j["host"], format!("localhost:{port}"), "{j}");
    assert_eq!(
        statuses[1].0, 400,
        "Host differing from :authority: {statuses:?}"
    );
    assert_eq!(statuses[2].0, 200, "{statuses:?}");
}
