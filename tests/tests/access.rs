//! End-to-end: access control through the running gateway. The IN CONFIDENCE password
//! fallback (S.E.E. 14.2.14), authorisation rules on certificate fields (14.2.18), routes to
//! an HTTPS backend checked under the client rules (14.2.11), raw TCP mode with PROXY v2,
//! and `gateway probe` against the gateway itself.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::access::password::set_password;
use gateway_tests::backend::EchoBackend;
use gateway_tests::clients::{curl, Outcome};
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{Leaf, LeafSpec, TestCa};
use gateway_tests::require_tool;
use time::Duration;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ca: TestCa,
    backend: EchoBackend,
    gw: TestGateway,
}

const PASSWORDS: &str = "users.passwd";

fn fixture(classification: &str, backend_url: Option<&str>, extra: &str) -> Fixture {
    try_fixture(classification, backend_url, extra)
        .unwrap_or_else(|e| panic!("gateway failed to start: {e}"))
}

fn try_fixture(
    classification: &str,
    backend_url: Option<&str>,
    extra: &str,
) -> Result<Fixture, String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new("Client CA One");
    let ca_file = ca.write_cert(&dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(&dir, "server", &LeafSpec::server());
    server_ca.write_cert(&dir, "server-ca.pem");
    set_password(
        &dir.join(PASSWORDS),
        "alice",
        "alice-password",
        Some(&["staff".to_string()]),
    )
    .expect("password file");
    set_password(&dir.join(PASSWORDS), "bob", "bob-password", None).expect("password file");
    let backend = EchoBackend::start();
    let url = backend_url
        .map(str::to_string)
        .unwrap_or_else(|| backend.url());
    let toml = format!(
        "{GLOBAL}{}",
        listener_toml(
            &url,
            &server.cert,
            &server.key,
            &[ca_file.as_path()],
            classification,
            extra
        )
    );
    let gw = TestGateway::try_start(&dir, &toml)?;
    Ok(Fixture {
        _tmp: tmp,
        dir,
        ca,
        backend,
        gw,
    })
}

impl Fixture {
    fn leaf(&self, stem: &str, spec: LeafSpec) -> Leaf {
        self.ca.issue(&self.dir, stem, &spec)
    }

    fn curl(&self, path: &str, leaf: Option<&Leaf>, extra: &[&str]) -> Outcome {
        curl(
            self.gw.port(),
            path,
            &self.dir.join("server-ca.pem"),
            leaf.map(|l| (l.cert.as_path(), l.key.as_path())),
            extra,
        )
    }
}

fn status(out: &Outcome) -> u16 {
    out.stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_json(out: &Outcome) -> serde_json::Value {
    let body = out.stdout.split("\r\n\r\n").last().unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn header<'a>(out: &'a Outcome, name: &str) -> Option<&'a str> {
    out.stdout.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const PASSWORD_ACCESS: &str =
    "[listener.access]\npassword_file = \"users.passwd\"\nrealm = \"Intranet\"\n";

#[test]
fn password_fallback_accepted_and_backend_gets_the_user_not_the_password() {
    if !require_tool("curl") {
        return;
    }
    let f = fixture("in-confidence", None, PASSWORD_ACCESS);
    let out = f.curl(
        "/app",
        None,
        &["-u", "alice:alice-password", "-H", "X-Client-User: mallory"],
    );
    assert_eq!(status(&out), 200, "{out:?}");
    let j = body_json(&out);
    assert_eq!(j["x-client-user"], "alice", "{j}");
    assert_eq!(j["x-client-auth-method"], "password", "{j}");
    assert!(
        j.get("authorization").is_none(),
        "password must not reach the backend: {j}"
    );
    assert!(j.get("x-client-cert-subject").is_none(), "{j}");
}

#[test]
fn wrong_password_and_no_credentials_get_401_with_realm() {
    if !require_tool("curl") {
        return;
    }
    let f = fixture("in-confidence", None, PASSWORD_ACCESS);
    for extra in [
        &["-u", "alice:wrong"][..],
        &["-u", "nobody:alice-password"][..],
        &[][..],
    ] {
        let out = f.curl("/app", None, extra);
        assert_eq!(status(&out), 401, "{extra:?}: {out:?}");
        let challenge = header(&out, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic realm=\"Intranet\""),
            "{challenge:?}"
        );
        assert!(challenge.contains("charset=\"UTF-8\""), "{challenge:?}");
    }
    assert_eq!(f.backend.hits(), 0);
}

#[test]
fn invalid_certificate_is_refused_even_with_a_good_password() {
    if !require_tool("curl") {
        return;
    }
    let f = fixture("in-confidence", None, PASSWORD_ACCESS);
    let expired = f.leaf(
        "expired",
        LeafSpec {
            not_before: Duration::days(-10),
            not_after: Duration::days(-1),
            ..LeafSpec::client("alice")
        },
    );
    let out = f.curl("/app", Some(&expired), &["-u", "alice:alice-password"]);
    assert_ne!(status(&out), 200, "{out:?}");
    let stranger_ca = TestCa::new("Stranger CA");
    let untrusted = stranger_ca.issue(&f.dir, "untrusted", &LeafSpec::client("alice"));
    let out = f.curl("/app", Some(&untrusted), &["-u", "alice:alice-password"]);
    assert_ne!(status(&out), 200, "{out:?}");
    assert_eq!(f.backend.hits(), 0, "nothing reached the backend");
    // A good certificate is judged by the certificate alone: the Basic header is ignored.
    let good = f.leaf("good", LeafSpec::client("carol"));
    let out = f.curl("/app", Some(&good), &["-u", "alice:wrong"]);
    assert_eq!(status(&out), 200, "{out:?}");
    let j = body_json(&out);
    assert_eq!(j["x-client-auth-method"], "certificate", "{j}");
    assert!(j.get("x-client-user").is_none(), "{j}");
}

#[test]
fn sensitive_listener_ignores_basic_credentials() {
    if !require_tool("curl") {
        return;
    }
    let f = fixture("sensitive", None, "");
    let out = f.curl("/app", None, &["-u", "alice:alice-password"]);
    assert_ne!(status(&out), 200, "{out:?}");
    assert_ne!(
        status(&out),
        401,
        "no password prompt on SENSITIVE: {out:?}"
    );
    assert_eq!(f.backend.hits(), 0);
    // And a password file on a SENSITIVE listener is a configuration error.
    let e = try_fixture("sensitive", None, PASSWORD_ACCESS)
        .err()
        .expect("refused to start");
    assert!(
        e.contains("access.password_file") && e.contains("SENSITIVE"),
        "{e}"
    );
}

#[test]
fn failed_passwords_are_rate_limited() {
    if !require_tool("curl") {
        return;
    }
    let extra = format!(
        "{PASSWORD_ACCESS}login_cache_secs = 0\n[listener.access.rate_limit]\nper_user_burst = 2\nper_user_per_minute = 1\nper_source_burst = 4\nper_source_per_minute = 1\n"
    );
    let f = fixture("in-confidence", None, &extra);
    assert_eq!(status(&f.curl("/", None, &["-u", "alice:bad1"])), 401);
    assert_eq!(status(&f.curl("/", None, &["-u", "alice:bad2"])), 401);
    // The user's bucket is empty: even the right password waits.
    let out = f.curl("/", None, &["-u", "alice:alice-password"]);
    assert_eq!(status(&out), 429, "{out:?}");
    assert!(header(&out, "retry-after").is_some(), "{out:?}");
    // Another user from the same source still works until the source's burst (4) is used.
    assert_eq!(status(&f.curl("/", None, &["-u", "bob:bob-password"])), 200);
    assert_eq!(status(&f.curl("/", None, &["-u", "carol:guess"])), 401);
    assert_eq!(status(&f.curl("/", None, &["-u", "dave:guess"])), 401);
    let out = f.curl("/", None, &["-u", "bob:bob-password"]);
    assert_eq!(status(&out), 429, "source limit: {out:?}");
}

const RULES: &str = r#"
[listener.access]
password_file = "users.passwd"

[[listener.rule]]
path = "/admin"
action = "allow"
ou = ["Platform"]

[[listener.rule]]
path = "/admin"
action = "deny"
reason = "administrators only"

[[listener.rule]]
path = "/mail"
action = "allow"
san_email = ["*@example.org"]

[[listener.rule]]
action = "allow"
policy = ["1.3.6.1.4.1.99999.1.1"]

[[listener.rule]]
action = "allow"
group = ["staff"]
"#;

#[test]
fn rules_allow_and_deny_by_ou_san_email_and_policy_oid() {
    if !require_tool("curl") {
        return;
    }
    let f = fixture("in-confidence", None, RULES);
    let platform = f.leaf(
        "platform",
        LeafSpec {
            ou: Some("Platform".into()),
            ..LeafSpec::client("pat")
        },
    );
    let sales = f.leaf(
        "sales",
        LeafSpec {
            ou: Some("Sales".into()),
            email: Some("sam@example.org".into()),
            ..LeafSpec::client("sam")
        },
    );
    let outsider = f.leaf(
        "outsider",
        LeafSpec {
            email: Some("olga@example.com".into()),
            ..LeafSpec::client("olga")
        },
    );
    let policy = f.leaf(
        "policy",
        LeafSpec {
            policies: vec![vec![1, 3, 6, 1, 4, 1, 99999, 1, 1]],
            ..LeafSpec::client("pol")
        },
    );
    let other_policy = f.leaf(
        "other-policy",
        LeafSpec {
            policies: vec![vec![1, 3, 6, 1, 4, 1, 99999, 1, 2]],
            ..LeafSpec::client("pol2")
        },
    );

    // OU.
    assert_eq!(status(&f.curl("/admin/users", Some(&platform), &[])), 200);
    let out = f.curl("/admin/users", Some(&sales), &[]);
    assert_eq!(status(&out), 403, "{out:?}");
    assert!(out.stdout.contains("administrators only"), "{out:?}");
    assert_eq!(
        status(&f.curl("/%61dmin/users", Some(&sales), &["--path-as-is"])),
        403,
        "encoded path"
    );
    // SAN email.
    assert_eq!(status(&f.curl("/mail/inbox", Some(&sales), &[])), 200);
    assert_eq!(status(&f.curl("/mail/inbox", Some(&outsider), &[])), 403);
    // Policy OID.
    assert_eq!(status(&f.curl("/app", Some(&policy), &[])), 200);
    assert_eq!(
        status(&f.curl("/app", Some(&other_policy), &[])),
        403,
        "default deny"
    );
    // Password users by group.
    assert_eq!(
        status(&f.curl("/app", None, &["-u", "alice:alice-password"])),
        200
    );
    assert_eq!(
        status(&f.curl("/app", None, &["-u", "bob:bob-password"])),
        403
    );
    assert_eq!(
        status(&f.curl("/admin", None, &["-u", "alice:alice-password"])),
        403
    );
}

/// An HTTPS backend on 127.0.0.1 (its own runtime thread) answering "tls backend ok".
struct TlsBackend {
    port: u16,
    _rt: tokio::runtime::Runtime,
}

fn tls_backend(leaf: &Leaf) -> TlsBackend {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let chain = gateway::pki::load_certs(&leaf.cert).expect("cert");
    let key = gateway::pki::load_key(&leaf.key).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"tls backend ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsBackend { port, _rt: rt }
}

#[test]
fn https_routes_only_reach_backends_with_good_certificates() {
    if !require_tool("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let backend_ca = TestCa::new("Backend CA");
    let backend_ca_file = backend_ca.write_cert(tmp.path(), "backend-ca.pem");
    let good = tls_backend(&backend_ca.issue(tmp.path(), "good", &LeafSpec::server()));
    let expired = tls_backend(&backend_ca.issue(
        tmp.path(),
        "expired",
        &LeafSpec {
            not_before: Duration::days(-10),
            not_after: Duration::days(-1),
            ..LeafSpec::server()
        },
    ));
    let stranger = TestCa::new("Stranger CA");
    let untrusted = tls_backend(&stranger.issue(tmp.path(), "untrusted", &LeafSpec::server()));
    let route = |path: &str, port: u16| {
        format!(
            "[[listener.route]]\npath = \"{path}\"\nbackend = \"https://127.0.0.1:{port}\"\n\
             [listener.route.upstream]\ntrusted_cas = [{:?}]\nserver_name = \"localhost\"\nrevocation = \"off\"\n",
            backend_ca_file.display().to_string()
        )
    };
    let extra = format!(
        "{}{}{}",
        route("/good", good.port),
        route("/expired", expired.port),
        route("/untrusted", untrusted.port)
    );
    let f = fixture("sensitive", None, &extra);
    let client = f.leaf("client", LeafSpec::client("carol"));
    let out = f.curl("/good/x", Some(&client), &[]);
    assert_eq!(status(&out), 200, "{out:?}");
    assert!(out.stdout.ends_with("tls backend ok"), "{out:?}");
    assert_eq!(status(&f.curl("/expired/x", Some(&client), &[])), 502);
    assert_eq!(status(&f.curl("/untrusted/x", Some(&client), &[])), 502);
    // Everything else still goes to the listener's own (plain HTTP) backend.
    assert_eq!(status(&f.curl("/other", Some(&client), &[])), 200);
    assert_eq!(f.backend.hits(), 1);
    // Requiring revocation without a checker refuses to start (fail closed).
    let strict = route("/good", good.port).replace("revocation = \"off\"\n", "");
    let e = try_fixture("sensitive", None, &strict)
        .err()
        .expect("refused");
    assert!(e.contains("revocation"), "{e}");
}

/// Reads one PROXY v2 header (hand-parsed) and returns its TLV area and source address.
fn read_proxy_v2(s: &mut std::net::TcpStream) -> (std::net::SocketAddr, Vec<(u8, Vec<u8>)>) {
    let mut fixed = [0u8; 16];
    s.read_exact(&mut fixed).expect("header");
    assert_eq!(&fixed[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(fixed[12], 0x21, "v2 PROXY");
    assert_eq!(fixed[13], 0x11, "TCP4");
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).expect("rest");
    let src = std::net::SocketAddr::from((
        <[u8; 4]>::try_from(&rest[0..4]).expect("ip"),
        u16::from_be_bytes([rest[8], rest[9]]),
    ));
    let mut tlvs = Vec::new();
    let mut b = &rest[12..];
    while b.len() >= 3 {
        let l = usize::from(u16::from_be_bytes([b[1], b[2]]));
        tlvs.push((b[0], b[3..3 + l].to_vec()));
        b = &b[3 + l..];
    }
    (src, tlvs)
}

#[test]
fn tcp_listener_relays_with_proxy_v2_and_applies_rules() {
    let be = TcpListener::bind("127.0.0.1:0").expect("bind");
    let be_port = be.local_addr().expect("addr").port();
    let backend = std::thread::spawn(move || {
        let (mut s, _) = be.accept().expect("accept");
        let (src, tlvs) = read_proxy_v2(&mut s);
        let mut ping = [0u8; 4];
        s.read_exact(&mut ping).expect("ping");
        s.write_all(b"pong").expect("pong");
        (src, tlvs, ping)
    });
    let extra = "[[listener.rule]]\naction = \"allow\"\nou = [\"Ops\"]\n";
    let f = fixture(
        "sensitive",
        Some(&format!("tcp://127.0.0.1:{be_port}")),
        extra,
    );
    let ops = f.leaf(
        "ops",
        LeafSpec {
            ou: Some("Ops".into()),
            ..LeafSpec::client("olivia")
        },
    );
    let sales = f.leaf(
        "sales",
        LeafSpec {
            ou: Some("Sales".into()),
            ..LeafSpec::client("sam")
        },
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let talk = |leaf: &Leaf| -> (std::net::SocketAddr, Vec<u8>) {
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut roots = rustls::RootCertStore::empty();
            for c in gateway::pki::load_certs(&f.dir.join("server-ca.pem")).expect("ca") {
                roots.add(c).expect("root");
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("v")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                gateway::pki::load_certs(&leaf.cert).expect("cert"),
                gateway::pki::load_key(&leaf.key).expect("key"),
            )
            .expect("client cert");
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", f.gw.port()))
                .await
                .expect("connect");
            let me = tcp.local_addr().expect("me");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .expect("handshake");
            let _ = tls.write_all(b"ping").await;
            let mut got = Vec::new();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut got))
                    .await;
            (me, got)
        })
    };
    // Denied by the rules: closed without reaching the backend.
    let (_, got) = talk(&sales);
    assert!(got.is_empty(), "{got:?}");
    let (me, got) = talk(&ops);
    assert_eq!(got, b"pong");
    let (src, tlvs, ping) = backend.join().expect("backend");
    assert_eq!(&ping, b"ping");
    assert_eq!(src, me, "PROXY source is the client");
    let ssl = tlvs
        .iter()
        .find(|(t, _)| *t == 0x20)
        .map(|(_, v)| v.clone())
        .expect("PP2_TYPE_SSL");
    assert_eq!(ssl[0], 0x07);
    assert_eq!(&ssl[1..5], &[0, 0, 0, 0], "verified");
    let text = String::from_utf8_lossy(&ssl);
    assert!(text.contains("olivia") && text.contains("OU=Ops"), "{text}");
}

#[test]
fn probe_checks_the_gateway_itself() {
    let f = fixture("sensitive", None, "");
    let client = f.leaf("client", LeafSpec::client("prober"));
    let args = gateway::probe::ProbeArgs {
        url: format!("https://localhost:{}", f.gw.port()),
        ca: vec![f.dir.join("server-ca.pem")],
        cert: Some(client.cert.clone()),
        key: Some(client.key.clone()),
        servername: None,
        timeout: 5,
        no_revocation: true,
        crypto_provider: "aws-lc-rs".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut out = Vec::new();
    let ok = rt
        .block_on(gateway::probe::run_with(&args, None, &mut out))
        .expect("probe");
    let text = String::from_utf8_lossy(&out);
    assert!(ok, "{text}");
    assert!(
        text.contains("CN=Client CA One"),
        "the gateway's CertificateRequest CA names: {text}"
    );
    assert!(text.contains("server reply: HTTP/1.1 200"), "{text}");
    // Trusting the wrong CA: the gateway's certificate is refused, the verdict is FAIL.
    let mut bad = args.clone();
    bad.ca = vec![write_other_ca(&f.dir)];
    let ok = rt
        .block_on(gateway::probe::run_with(&bad, None, &mut Vec::new()))
        .expect("probe");
    assert!(!ok);
}

fn write_other_ca(dir: &Path) -> PathBuf {
    TestCa::new("Not The Server CA").write_cert(dir, "other-ca.pem")
}

/// A CRL from `ca` listing `serials`.
fn client_crl(ca: &TestCa, serials: &[u64]) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    rcgen::CertificateRevocationListParams {
        this_update: now - Duration::seconds(5),
        next_update: now + Duration::hours(1),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&s.to_be_bytes()),
                revocation_time: now - Duration::seconds(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer())
    .expect("sign CRL")
    .der()
    .to_vec()
}

#[test]
fn revoked_certificate_is_refused_even_with_a_good_password() {
    if !require_tool("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = TestCa::new("Client CA One");
    let ca_file = ca.write_cert(dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let server_ca_file = server_ca.write_cert(dir, "server-ca.pem");
    set_password(&dir.join(PASSWORDS), "alice", "alice-password", None).expect("passwd");
    let revoked = ca.issue(
        dir,
        "revoked",
        &LeafSpec {
            serial: Some(0x5eed),
            ..LeafSpec::client("alice")
        },
    );
    let good = ca.issue(
        dir,
        "good",
        &LeafSpec {
            serial: Some(0x600d),
            ..LeafSpec::client("alice")
        },
    );
    std::fs::write(dir.join("client.crl"), client_crl(&ca, &[0x5eed])).expect("crl");
    let backend = EchoBackend::start();
    let extra = format!(
        "{PASSWORD_ACCESS}[listener.revocation]\norder = \"crl-only\"\ncrl_files = [\"client.crl\"]\n"
    );
    let toml = format!(
        "{GLOBAL}{}",
        listener_toml(
            &backend.url(),
            &server.cert,
            &server.key,
            &[ca_file.as_path()],
            "in-confidence",
            &extra
        )
    );
    let gw = TestGateway::start(dir, &toml);
    let run = |leaf: Option<&Leaf>| {
        curl(
            gw.port(),
            "/app",
            &server_ca_file,
            leaf.map(|l| (l.cert.as_path(), l.key.as_path())),
            &["-u", "alice:alice-password"],
        )
    };
    let out = run(Some(&revoked));
    assert_ne!(
        status(&out),
        200,
        "revoked certificate + good password: {out:?}"
    );
    assert_eq!(backend.hits(), 0, "nothing reached the backend");
    let out = run(Some(&good));
    assert_eq!(status(&out), 200, "{out:?}");
    assert_eq!(body_json(&out)["x-client-auth-method"], "certificate");
    let out = run(None);
    assert_eq!(status(&out), 200, "password alone: {out:?}");
    assert_eq!(body_json(&out)["x-client-auth-method"], "password");
}
