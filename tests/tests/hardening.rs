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

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// One worker, so per-worker caps are exact.
const ONE_WORKER: &str =
    "[global]\nworkers = 1\nshutdown_grace_secs = 2\nmetrics_interval_secs = 0\n";

/// A gateway with one worker and `limits` (a `[listener.limits]` body) in front of
/// `backend_url` (default: the echo backend).
fn limited(backend_url: Option<&str>, limits: &str) -> Fixture {
    // The fixture's GLOBAL block comes first; a second [global] would be a TOML error, so
    // build the text here.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new("Limits Client CA");
    let ca_file = ca.write_cert(&dir, "ca.pem");
    let server_ca = TestCa::new("Limits Server CA");
    let server = server_ca.issue(&dir, "server", &LeafSpec::server());
    let leaf = ca.issue(&dir, "alice", &LeafSpec::client("alice"));
    let backend = EchoBackend::start();
    let url = backend_url
        .map(str::to_string)
        .unwrap_or_else(|| backend.url());
    let toml = format!(
        "{ONE_WORKER}{}",
        listener_toml(
            &url,
            &server.cert,
            &server.key,
            &[ca_file.as_path()],
            "sensitive",
            &format!("[listener.limits]\n{limits}\n"),
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

fn short_reads(s: &raw::TlsStream) {
    s.sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
}

#[test]
fn silent_tls_connections_are_closed_after_the_first_request_deadline() {
    let f = limited(None, "first_request_timeout_secs = 1");
    let h2 = raw::client_config(&f.server_ca, Some(&f.leaf), &["h2"]);
    let none = raw::client_config(&f.server_ca, Some(&f.leaf), &[]);
    // 20 clients complete the handshake and send nothing: HTTP/1.1, h2 and no ALPN.
    let start = Instant::now();
    let mut conns: Vec<raw::TlsStream> = (0..20)
        .map(|i| {
            let cfg = match i % 3 {
                0 => &f.client,
                1 => &h2,
                _ => &none,
            };
            raw::connect(f.gw.port(), cfg).expect("handshake")
        })
        .collect();
    // One more sends the h2 preface and SETTINGS only, and never a request.
    let mut preface = raw::connect(f.gw.port(), &h2).expect("handshake");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    conns.push(preface);
    for (i, c) in conns.iter_mut().enumerate() {
        short_reads(c);
        let left = Duration::from_secs(6).saturating_sub(start.elapsed());
        assert!(
            raw::time_until_closed(c, left).is_some(),
            "connection {i} still open {:?} after its handshake",
            start.elapsed()
        );
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert_eq!(f.backend.hits(), 0);
}

#[test]
fn slow_head_is_cut_off_but_idle_keepalive_lives_until_its_own_deadline() {
    let f = limited(
        None,
        "first_request_timeout_secs = 5\nheader_read_timeout_secs = 1\nidle_timeout_secs = 4",
    );
    let req = b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let read_response = |s: &mut raw::TlsStream| {
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).expect("response");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // A slow-loris head on a kept-alive connection: closed after ~1 s, not 4.
    let mut s = raw::connect(f.gw.port(), &f.client).expect("handshake");
    s.write_all(req).expect("request");
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET /b HTTP/1.1\r\nHost: loc")
        .expect("partial head");
    short_reads(&s);
    let closed = raw::time_until_closed(&mut s, Duration::from_secs(6)).expect("closed");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_millis(3500),
        "slow head closed after {closed:?} (want ~1 s)"
    );
    // An idle keep-alive connection: still open after 2 s, closed by ~4 s.
    let mut s = raw::connect(f.gw.port(), &f.client).expect("handshake");
    s.write_all(req).expect("request");
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    short_reads(&s);
    assert!(
        raw::time_until_closed(&mut s, Duration::from_secs(2)).is_none(),
        "idle connection closed before idle_timeout_secs"
    );
    let closed = raw::time_until_closed(&mut s, Duration::from_secs(5)).expect("closed");
    assert!(
        closed < Duration::from_secs(4),
        "idle close after {closed:?} more"
    );
}

#[test]
fn stalled_request_body_gets_408() {
    let f = limited(None, "body_idle_timeout_secs = 1");
    let mut s = raw::connect(f.gw.port(), &f.client).expect("handshake");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .expect("request");
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = raw::parse_response(&out);
    assert_eq!(r.status, 408, "{}\n{}", r.head, r.body);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(f.gw.metrics().request_timeouts, 1);
}

#[test]
fn silent_backend_gives_504_within_the_response_deadline() {
    // Accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in silent.incoming().take(1) {
            keep.push(s);
            std::thread::sleep(Duration::from_secs(8));
        }
    });
    let f = limited(
        Some(&format!("http://{addr}")),
        "upstream_response_timeout_secs = 1",
    );
    let t = Instant::now();
    let r = f.get("/slow", &[]);
    assert_eq!(r.status, 504, "{}\n{}", r.head, r.body);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(f.gw.metrics().backend_timeouts, 1);
    drop(f);
    let _ = held.join();
}

#[test]
fn oversized_request_head_is_refused() {
    let f = limited(None, "max_header_bytes = 16384");
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let r = f.get("/a", &[&big]);
    assert_eq!(r.status, 431, "{}", r.head);
    let ok = format!("X-Big: {}", "a".repeat(8_000));
    assert_eq!(f.get("/a", &[&ok]).status, 200);
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let f = limited(None, "max_connections_per_worker = 3");
    let held: Vec<raw::TlsStream> = (0..3)
        .map(|_| raw::connect(f.gw.port(), &f.client).expect("handshake"))
        .collect();
    let t = Instant::now();
    let fourth = raw::connect(f.gw.port(), &f.client);
    assert!(fourth.is_err(), "a fourth connection was served");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(f.gw.metrics().over_capacity, 1);
    drop(held);
    // Capacity comes back when connections close.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.get("/a", &[]).status, 200);
}

#[test]
fn max_connection_age_closes_gracefully_between_requests() {
    let f = limited(None, "max_connection_age_secs = 2\nidle_timeout_secs = 30");
    let mut s = raw::connect(f.gw.port(), &f.client).expect("handshake");
    let t = Instant::now();
    let mut served = 0;
    loop {
        if s.write_all(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            break;
        }
        let mut buf = vec![0u8; 8192];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                served += 1;
            }
            _ => break,
        }
        assert!(
            t.elapsed() < Duration::from_secs(6),
            "still open after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let age = t.elapsed();
    assert!(
        age >= Duration::from_millis(1800) && age < Duration::from_secs(5),
        "closed after {age:?} ({served} requests)"
    );
    assert!(served >= 5, "{served}");
}

#[test]
fn idle_tcp_relay_is_closed() {
    let be = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let be_addr = be.local_addr().expect("addr");
    let backend = std::thread::spawn(move || {
        let (mut s, _) = be.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let t = Instant::now();
        // The PROXY header, then silence until the gateway closes.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {}
            }
        }
    });
    let f = limited(
        Some(&format!("tcp://{be_addr}")),
        "tcp_idle_timeout_secs = 1",
    );
    let mut s = raw::connect(f.gw.port(), &f.client).expect("handshake");
    short_reads(&s);
    let closed = raw::time_until_closed(&mut s, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|c| c >= Duration::from_millis(800)),
        "idle relay: {closed:?}"
    );
    let backend_saw = backend.join().expect("backend");
    assert!(backend_saw < Duration::from_secs(6), "{backend_saw:?}");
}

#[test]
fn idle_http2_connection_is_closed_although_pings_flow() {
    let f = limited(
        None,
        "idle_timeout_secs = 2\nh2_keepalive_interval_secs = 1\nh2_keepalive_timeout_secs = 1",
    );
    let cfg = raw::client_config(&f.server_ca, Some(&f.leaf), &["h2"]);
    let port = f.gw.port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, closed_after) = rt.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .expect("handshake");
        let (mut send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                // The client pings too: traffic in both directions, still no request.
                .keep_alive_interval(Duration::from_millis(500))
                .keep_alive_while_idle(true)
                .handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        let resp = send
            .send_request(
                hyper::Request::get(format!("https://localhost:{port}/a"))
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        let t = Instant::now();
        let done = tokio::time::timeout(Duration::from_secs(8), conn).await;
        (status, done.ok().map(|_| t.elapsed()))
    });
    assert_eq!(status, 200);
    let after = closed_after.expect("idle h2 connection stayed open for 8 s");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
}

#[test]
fn unreachable_backend_gives_504_within_the_connect_deadline() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // hangs (a black-holed backend) instead of being refused.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .expect("addr")
            .into(),
    )
    .expect("bind");
    sock.listen(0).expect("listen");
    let addr = sock.local_addr().expect("addr").as_socket().expect("inet");
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "the accept queue is not full; the test proves nothing"
    );
    let f = limited(
        Some(&format!("http://{addr}")),
        "upstream_connect_timeout_secs = 1\nupstream_response_timeout_secs = 30",
    );
    let t = Instant::now();
    let r = f.get("/a", &[]);
    assert_eq!(r.status, 504, "{}\n{}", r.head, r.body);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(f.gw.metrics().backend_timeouts, 1);
    drop(fillers);
    drop(sock);
}

#[test]
fn http2_streams_per_connection_are_capped() {
    let f = limited(None, "h2_max_concurrent_streams = 2");
    let cfg = raw::client_config(&f.server_ca, Some(&f.leaf), &["h2"]);
    let port = f.gw.port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let took = rt.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .expect("handshake");
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        // Let the server's SETTINGS arrive before opening streams.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut send = send.clone();
            tasks.push(tokio::spawn(async move {
                let resp = send
                    .send_request(
                        hyper::Request::get(format!("https://localhost:{port}/slow"))
                            .body(Empty::<bytes::Bytes>::new())
                            .expect("request"),
                    )
                    .await
                    .expect("response");
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), 200);
        }
        t.elapsed()
    });
    // The echo backend answers /slow after 1 s: 4 requests, 2 at a time, take two rounds.
    assert!(
        took >= Duration::from_millis(1900),
        "{took:?}: streams were not capped at 2"
    );
}
