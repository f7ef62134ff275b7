//! End-to-end: the S.E.E. handshake policy, judged by real clients (curl, openssl s_client)
//! against the real gateway on loopback, with a PKI made by the test.

use std::path::{Path, PathBuf};

use gateway_tests::backend::EchoBackend;
use gateway_tests::clients::{curl, s_client};
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{tamper_signature, Leaf, LeafSpec, TestCa};
use gateway_tests::require_tool;
use rcgen::{ExtendedKeyUsagePurpose, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: TestCa,
    ca_file: PathBuf,
    backend: EchoBackend,
    gw: TestGateway,
}

impl Fixture {
    fn new(classification: &str) -> Fixture {
        Self::with_extra(classification, "", &[])
    }

    fn with_extra(classification: &str, extra: &str, more_cas: &[&TestCa]) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let ca = TestCa::new("Client CA One");
        let ca_file = ca.write_cert(&dir, "ca.pem");
        let server_ca = TestCa::new("Server CA");
        let server = server_ca.issue(&dir, "server", &LeafSpec::server());
        let _ = server_ca.write_cert(&dir, "server-ca.pem");
        let mut cas: Vec<PathBuf> = vec![ca_file.clone()];
        for (i, c) in more_cas.iter().enumerate() {
            cas.push(c.write_cert(&dir, &format!("extra-ca-{i}.pem")));
        }
        let ca_refs: Vec<&Path> = cas.iter().map(|p| p.as_path()).collect();
        let backend = EchoBackend::start();
        let toml = format!(
            "{GLOBAL}{}",
            listener_toml(
                &backend.url(),
                &server.cert,
                &server.key,
                &ca_refs,
                classification,
                extra
            )
        );
        let gw = TestGateway::start(&dir, &toml);
        Fixture {
            _dir: tmp,
            dir,
            ca,
            ca_file,
            backend,
            gw,
        }
    }

    fn server_ca(&self) -> PathBuf {
        self.dir.join("server-ca.pem")
    }

    fn leaf(&self, stem: &str, spec: LeafSpec) -> Leaf {
        self.ca.issue(&self.dir, stem, &spec)
    }

    fn curl_with(&self, leaf: Option<&Leaf>, extra: &[&str]) -> gateway_tests::clients::Outcome {
        curl(
            self.gw.port(),
            "/app",
            &self.server_ca(),
            leaf.map(|l| (l.cert.as_path(), l.key.as_path())),
            extra,
        )
    }

    /// Asserts the certificate is refused at the TLS level and nothing reached the backend.
    fn assert_refused(&self, leaf: &Leaf, why: &str) {
        let before = self.backend.hits();
        let out = self.curl_with(Some(leaf), &[]);
        assert!(!out.ok_200(), "{why}: expected refusal, got {out:?}");
        assert_ne!(out.code, 0, "{why}: curl succeeded: {out:?}");
        assert_eq!(
            self.backend.hits(),
            before,
            "{why}: request reached the backend"
        );
    }
}

fn openssl_rfc2253(cert: &Path, what: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", what, "-nameopt", "RFC2253", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn body_json(out: &gateway_tests::clients::Outcome) -> serde_json::Value {
    let body = out.stdout.split("\r\n\r\n").last().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("backend JSON: {e}: {}", out.stdout))
}

#[test]
fn good_certificate_identity_reaches_backend_and_spoofed_headers_are_stripped() {
    if !require_tool("curl") || !require_tool("openssl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let mut spec = LeafSpec::client("Alice Example");
    spec.ou = Some("Finance".into());
    spec.email = Some("alice@example.test".into());
    let alice = f.leaf("alice", spec);
    let out = f.curl_with(
        Some(&alice),
        &[
            "-H",
            "X-Client-Cert-Subject: CN=admin",
            "-H",
            "X-Client-Auth-Method: password",
            "-H",
            "X-Client-User: root",
        ],
    );
    assert!(out.ok_200(), "{out:?}");
    let h = body_json(&out);
    // RFC 4514 strings, as openssl prints them (an independent oracle).
    assert_eq!(
        h["x-client-cert-subject"],
        openssl_rfc2253(&alice.cert, "-subject").as_str()
    );
    assert_eq!(
        h["x-client-cert-issuer"],
        openssl_rfc2253(&alice.cert, "-issuer").as_str()
    );
    assert_eq!(h["x-client-cert-serial"], alice.serial_hex.as_str());
    assert_eq!(h["x-client-cert-san"], "email:alice@example.test");
    assert_eq!(h["x-client-auth-method"], "certificate");
    assert!(
        h.get("x-client-user").is_none(),
        "spoofed user header forwarded: {h}"
    );
    let fp = h["x-client-cert-sha256"].as_str().unwrap_or_default();
    assert_eq!(fp.len(), 64);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(f.backend.hits(), 1);
}

#[test]
fn p384_rsa2048_tls12_and_http2_accepted() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let p384 = f.leaf(
        "p384",
        LeafSpec {
            alg: &PKCS_ECDSA_P384_SHA384,
            ..LeafSpec::client("p384")
        },
    );
    let rsa = f.leaf(
        "rsa",
        LeafSpec {
            alg: &PKCS_RSA_SHA256,
            ..LeafSpec::client("rsa2048")
        },
    );
    assert!(f.curl_with(Some(&p384), &[]).ok_200());
    assert!(
        f.curl_with(Some(&rsa), &["--tls-max", "1.2"]).ok_200(),
        "TLS 1.2 + RSA"
    );
    let h2 = f.curl_with(Some(&p384), &["--http2"]);
    assert!(h2.stdout.starts_with("HTTP/2 200"), "{h2:?}");
}

#[test]
fn no_certificate_refused_on_sensitive_listener() {
    if !require_tool("curl") || !require_tool("openssl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let out = f.curl_with(None, &[]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("alert certificate required")
            || out.stderr.contains("handshake failure"),
        "{out:?}"
    );
    let out = s_client(
        f.gw.port(),
        &["-CAfile", f.server_ca().to_str().unwrap_or_default()],
    );
    assert!(!out.ok_200(), "{out:?}");
    assert_eq!(f.backend.hits(), 0);
}

#[test]
fn in_confidence_listener_without_certificate_gets_401() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::new("in-confidence");
    let out = f.curl_with(None, &[]);
    assert!(
        out.stdout.starts_with("HTTP/2 401") || out.stdout.starts_with("HTTP/1.1 401"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{out:?}"
    );
    assert_eq!(f.backend.hits(), 0);
    // A certificate, when presented, is still verified in full.
    let expired = f.leaf(
        "expired",
        LeafSpec {
            not_before: Duration::days(-10),
            not_after: Duration::days(-1),
            ..LeafSpec::client("old")
        },
    );
    f.assert_refused(&expired, "expired certificate on in-confidence listener");
}

#[test]
fn bad_certificates_refused_at_tls_level() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let expired = f.leaf(
        "expired",
        LeafSpec {
            not_before: Duration::days(-10),
            not_after: Duration::days(-1),
            ..LeafSpec::client("expired")
        },
    );
    f.assert_refused(&expired, "expired");
    let future = f.leaf(
        "future",
        LeafSpec {
            not_before: Duration::days(2),
            not_after: Duration::days(30),
            ..LeafSpec::client("future")
        },
    );
    f.assert_refused(&future, "not yet valid");
    let other_ca = TestCa::new("Untrusted CA");
    let stranger = other_ca.issue(&f.dir, "stranger", &LeafSpec::client("stranger"));
    f.assert_refused(&stranger, "untrusted CA");
    let good = f.leaf("good", LeafSpec::client("good"));
    let tampered = tamper_signature(&f.dir, &good, "tampered");
    f.assert_refused(&tampered, "tampered signature");
    let server_only = f.leaf(
        "srv",
        LeafSpec {
            ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
            ..LeafSpec::client("server-only")
        },
    );
    f.assert_refused(&server_only, "serverAuth-only EKU");
    let no_eku = f.leaf(
        "noeku",
        LeafSpec {
            ekus: vec![],
            ..LeafSpec::client("no-eku")
        },
    );
    f.assert_refused(&no_eku, "no EKU");
    assert!(
        f.curl_with(Some(&good), &[]).ok_200(),
        "control: the good one still works"
    );
    let m = f.gw.metrics();
    assert!(m.rejected_certificate >= 6, "{m:?}");
}

#[test]
fn weak_keys_and_sha1_signatures_refused() {
    if !require_tool("openssl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let ca = f.server_ca();
    let ca = ca.to_str().unwrap_or_default();
    let rsa1024 = f.ca.issue_with_openssl(&f.dir, "rsa1024", 1024, "sha256");
    let sha1 = f.ca.issue_with_openssl(&f.dir, "sha1", 2048, "sha1");
    let rsa2048 = f.ca.issue_with_openssl(&f.dir, "rsa2048", 2048, "sha256");
    let run = |leaf: &Leaf| {
        s_client(
            f.gw.port(),
            &[
                "-CAfile",
                ca,
                "-cert",
                leaf.cert.to_str().unwrap_or_default(),
                "-key",
                leaf.key.to_str().unwrap_or_default(),
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ],
        )
    };
    let out = run(&rsa2048);
    assert!(
        out.stdout.contains("HTTP/1.1 200"),
        "control (openssl-made RSA-2048): {out:?}"
    );
    let out = run(&rsa1024);
    assert!(
        !out.stdout.contains("HTTP/1.1 200"),
        "RSA-1024 accepted: {out:?}"
    );
    let out = run(&sha1);
    assert!(
        !out.stdout.contains("HTTP/1.1 200"),
        "SHA-1 signature accepted: {out:?}"
    );
    assert_eq!(f.backend.hits(), 1);
}

#[test]
fn old_protocols_and_non_aes_gcm_suites_refused() {
    if !require_tool("openssl") || !require_tool("curl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let good = f.leaf("good", LeafSpec::client("good"));
    let ca = f.server_ca();
    let (ca, cert, key) = (
        ca.to_str().unwrap_or_default(),
        good.cert.to_str().unwrap_or_default(),
        good.key.to_str().unwrap_or_default(),
    );
    let base = ["-CAfile", ca, "-cert", cert, "-key", key];
    let with = |more: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(more);
        s_client(f.gw.port(), &a)
    };
    assert!(with(&[]).stdout.contains("HTTP/1.1 200"), "control");
    assert!(
        with(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
            .stdout
            .contains("HTTP/1.1 200"),
        "TLS 1.2 AES-GCM"
    );
    for (what, args) in [
        ("TLS 1.0", vec!["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        ("TLS 1.1", vec!["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        (
            "3DES only",
            vec![
                "-tls1_2",
                "-cipher",
                "DES-CBC3-SHA:ECDHE-ECDSA-DES-CBC3-SHA@SECLEVEL=0",
            ],
        ),
        (
            "AES-CBC only",
            vec![
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA",
            ],
        ),
        (
            "ChaCha20 only (1.2)",
            vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        ),
        (
            "ChaCha20 only (1.3)",
            vec!["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ),
    ] {
        let out = with(&args);
        assert!(
            !out.stdout.contains("HTTP/1.1 200"),
            "{what} accepted: {out:?}"
        );
    }
    let out = f.curl_with(Some(&good), &["--tlsv1.0", "--tls-max", "1.1"]);
    assert_ne!(out.code, 0, "curl with TLS <= 1.1 succeeded: {out:?}");
    assert_eq!(f.backend.hits(), 2);
}

#[test]
fn certificate_request_lists_exactly_the_configured_cas() {
    if !require_tool("openssl") {
        return;
    }
    let second = TestCa::new("Client CA Two");
    let f = Fixture::with_extra("sensitive", "", &[&second]);
    let ca = f.server_ca();
    let out = s_client(f.gw.port(), &["-CAfile", ca.to_str().unwrap_or_default()]);
    let text = format!("{}{}", out.stdout, out.stderr);
    let section: Vec<&str> = text
        .split("Acceptable client certificate CA names")
        .nth(1)
        .unwrap_or_else(|| panic!("no CA names section: {text}"))
        .lines()
        .skip(1)
        .take_while(|l| {
            !l.starts_with("Requested")
                && !l.starts_with("Client Certificate Types")
                && !l.trim().is_empty()
        })
        .collect();
    assert_eq!(section.len(), 2, "{section:?}");
    assert!(
        section.iter().any(|l| l.contains("Client CA One")),
        "{section:?}"
    );
    assert!(
        section.iter().any(|l| l.contains("Client CA Two")),
        "{section:?}"
    );
    assert!(
        !section.iter().any(|l| l.contains("Server CA")),
        "server CA must not be listed"
    );
    let _ = &f.ca_file;
}

#[test]
fn strong_rsa_floor_is_configurable() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::with_extra("sensitive", "[listener.tls]\nmin_rsa_bits = 3072\n", &[]);
    let rsa = f.leaf(
        "rsa",
        LeafSpec {
            alg: &PKCS_RSA_SHA256,
            ..LeafSpec::client("rsa2048")
        },
    );
    f.assert_refused(&rsa, "RSA-2048 under a 3072 floor");
    let ec = f.leaf("ec", LeafSpec::client("ec"));
    assert!(f.curl_with(Some(&ec), &[]).ok_200());
}

#[test]
fn required_certificate_policies_are_enforced() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::with_extra(
        "sensitive",
        "[listener.pki]\nrequired_policies = [\"2.16.840.1.101.3.2.1.3.13\"]\n",
        &[],
    );
    let medium = vec![2, 16, 840, 1, 101, 3, 2, 1, 3, 13];
    let other = vec![2, 16, 840, 1, 101, 3, 2, 1, 3, 1];
    let ok = f.leaf(
        "pol-ok",
        LeafSpec {
            policies: vec![other.clone(), medium],
            ..LeafSpec::client("pol-ok")
        },
    );
    assert!(f.curl_with(Some(&ok), &[]).ok_200());
    let wrong = f.leaf(
        "pol-wrong",
        LeafSpec {
            policies: vec![other],
            ..LeafSpec::client("pol-wrong")
        },
    );
    f.assert_refused(&wrong, "a certificate of another policy");
    let none = f.leaf("pol-none", LeafSpec::client("pol-none"));
    f.assert_refused(&none, "a certificate without certificatePolicies");
}

#[test]
fn request_bodies_are_streamed_to_the_backend() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let good = f.leaf("good", LeafSpec::client("uploader"));
    let body = f.dir.join("upload.bin");
    std::fs::write(&body, vec![7u8; 8 * 1024 * 1024 + 13]).expect("write body");
    let arg = format!("@{}", body.display());
    for proto in ["--http1.1", "--http2"] {
        let out = f.curl_with(
            Some(&good),
            &[
                proto,
                "--data-binary",
                &arg,
                "-H",
                "Content-Type: application/octet-stream",
            ],
        );
        assert!(out.ok_200(), "{proto}: {out:?}");
        assert_eq!(
            body_json(&out)["_body_len"],
            8 * 1024 * 1024 + 13,
            "{proto}"
        );
    }
}

#[test]
fn shutdown_drains_in_flight_requests() {
    if !require_tool("curl") {
        return;
    }
    let f = Fixture::new("sensitive");
    let good = f.leaf("good", LeafSpec::client("patient"));
    let port = f.gw.port();
    let ca = f.server_ca();
    let (cert, key) = (good.cert.clone(), good.key.clone());
    let slow = std::thread::spawn(move || curl(port, "/slow", &ca, Some((&cert, &key)), &[]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let Fixture { gw, .. } = f;
    drop(gw); // signals shutdown and waits for the drain
    let out = slow.join().expect("curl thread");
    assert!(out.ok_200(), "in-flight request was cut: {out:?}");
    let again = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(again.is_err(), "still accepting after shutdown");
}

/// TLS 1.3 session tickets per handshake, counted by openssl s_client: one by default (each
/// costs the server an encryption and a key derivation), `tls13_tickets` more.
#[test]
fn one_session_ticket_per_handshake_by_default() {
    if !require_tool("openssl") {
        return;
    }
    let count = |extra: &str| {
        let f = Fixture::with_extra("sensitive", extra, &[]);
        let leaf = f.leaf("tickets", LeafSpec::client("tickets"));
        let ca = f.server_ca();
        let out = s_client(
            f.gw.port(),
            &[
                "-tls1_3",
                "-CAfile",
                ca.to_str().unwrap_or_default(),
                "-cert",
                leaf.cert.to_str().unwrap_or_default(),
                "-key",
                leaf.key.to_str().unwrap_or_default(),
            ],
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(text.contains("HTTP/1.1 200"), "{text}");
        text.matches("Post-Handshake New Session Ticket arrived")
            .count()
    };
    assert_eq!(count(""), 1, "default");
    assert_eq!(count("[listener.tls]\ntls13_tickets = 3\n"), 3);
}
