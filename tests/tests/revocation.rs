//! End-to-end: revocation through the real gateway. A session resumed after the client's
//! certificate was revoked must not reach the backend; a new full handshake gets the
//! `certificate_revoked` alert.

use std::sync::Arc;
use std::time::Duration;

use gateway_tests::backend::EchoBackend;
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{Leaf, LeafSpec, TestCa};
use gateway_tests::status_servers::CrlServer;
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::{Duration as TDuration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway on loopback in front of an echo backend, trusting `client_ca` for client
/// certificates, with `extra` TOML appended to the listener.
fn start_gateway(
    dir: &std::path::Path,
    server: &Leaf,
    client_ca: &std::path::Path,
    extra: &str,
) -> (EchoBackend, TestGateway) {
    let backend = EchoBackend::start();
    let toml = format!(
        "{GLOBAL}{}",
        listener_toml(
            &backend.url(),
            &server.cert,
            &server.key,
            &[client_ca],
            "sensitive",
            extra
        )
    );
    let gw = TestGateway::start(dir, &toml);
    (backend, gw)
}

fn crl(ca: &TestCa, revoked: &[u64]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - TDuration::seconds(5),
        next_update: now + TDuration::hours(1),
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&s.to_be_bytes()),
                revocation_time: now - TDuration::seconds(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer())
    .expect("sign CRL")
    .der()
    .to_vec()
}

fn client_config(server_ca: &TestCa, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der.clone()))
        .expect("root");
    let chain = vec![CertificateDer::from(leaf.der.clone())];
    let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("client key");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    Arc::new(cfg)
}

/// One request; returns (resumed, response text or error text).
async fn request(port: u16, cfg: &Arc<rustls::ClientConfig>) -> (bool, Result<String, String>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let connector = tokio_rustls::TlsConnector::from(cfg.clone());
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => return (false, Err(e.to_string())),
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let _ = tls
        .write_all(b"GET /app HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    match r {
        Ok(Ok(_)) => (resumed, Ok(text)),
        Ok(Err(e)) => (resumed, Err(format!("{e:?} after {text:?}"))),
        Err(_) => (resumed, Err("timeout".into())),
    }
}

#[test]
fn resumed_session_of_a_since_revoked_certificate_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = TestCa::new("Revocation Client CA");
    let ca_file = ca.write_cert(dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let (crl_srv, crl_url) = CrlServer::start(crl(&ca, &[]));
    let serial = 0x5eed_u64;
    let spec = LeafSpec {
        crl_urls: vec![crl_url],
        serial: Some(serial),
        ..LeafSpec::client("soon revoked")
    };
    let leaf = ca.issue(dir, "leaf", &spec);
    let (backend, gw) = start_gateway(
        dir,
        &server,
        ca_file.as_path(),
        "[listener.revocation]\norder = \"crl-only\"\nrefresh_interval_secs = 1\n",
    );
    let cfg = client_config(&server_ca, &leaf);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let (resumed, r) = request(gw.port(), &cfg).await;
        assert!(!resumed);
        let text = r.expect("first request");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let hits_before = backend.hits();

        // Resumption works while the certificate is good.
        let (resumed, r) = request(gw.port(), &cfg).await;
        assert!(resumed, "second connection did not resume");
        assert!(r.expect("resumed request").starts_with("HTTP/1.1 200"));
        let hits_good = backend.hits();
        assert!(hits_good > hits_before);

        // Revoke; the gateway's background refresh picks the new CRL up within the interval.
        crl_srv.set(crl(&ca, &[serial]));
        tokio::time::sleep(Duration::from_millis(3000)).await;

        let (resumed, r) = request(gw.port(), &cfg).await;
        assert!(
            resumed,
            "the session was not resumed, the test proves nothing"
        );
        if let Ok(text) = r {
            assert!(
                !text.contains("200"),
                "revoked resumed session was served: {text}"
            );
        }
        assert_eq!(backend.hits(), hits_good, "a byte reached the backend");

        // A new full handshake is refused inside the handshake with certificate_revoked.
        let fresh = client_config(&server_ca, &leaf);
        let (resumed, r) = request(gw.port(), &fresh).await;
        assert!(!resumed);
        let e = r.expect_err("revoked certificate served");
        assert!(e.contains("CertificateRevoked"), "{e}");
        assert_eq!(backend.hits(), hits_good);
    });
}

/// `openssl ocsp` answering for `ca` with `serial` good; returns (child, url).
fn openssl_responder(
    dir: &std::path::Path,
    ca: &TestCa,
    serial: u64,
) -> (std::process::Child, String) {
    let index = format!("V\t351231235959Z\t\t{serial:016X}\tunknown\t/CN=localhost\n");
    std::fs::write(dir.join("index.txt"), index).expect("index");
    let ca_pem = ca.write_cert(dir, "ocsp-ca.pem");
    let ca_key = ca.write_key(dir, "ocsp-ca.key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let log = dir.join("ocsp.log");
    let child = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &port.to_string(),
            "-rsigner",
        ])
        .arg(&ca_pem)
        .arg("-rkey")
        .arg(&ca_key)
        .arg("-CA")
        .arg(&ca_pem)
        .args(["-nmin", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("openssl ocsp");
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("waiting for OCSP client connections") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

#[test]
fn gateway_staples_a_good_ocsp_response_for_its_own_certificate() {
    if !gateway_tests::require_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let client_ca = TestCa::new("Client CA");
    let ca_file = client_ca.write_cert(dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server_ca_file = server_ca.write_cert(dir, "server-ca.pem");
    let (mut responder, url) = openssl_responder(dir, &server_ca, 0x5e1f);
    let spec = LeafSpec {
        ocsp_url: Some(url),
        serial: Some(0x5e1f),
        ..LeafSpec::server()
    };
    let server = server_ca.issue(dir, "server", &spec);
    // The chain file holds the issuer after the leaf (needed to ask for and check the staple).
    let mut chain = std::fs::read_to_string(&server.cert).expect("read");
    chain.push_str(&server_ca.cert_pem);
    std::fs::write(&server.cert, chain).expect("write chain");
    let client = client_ca.issue(dir, "client", &LeafSpec::client("stapling client"));
    let (_backend, gw) = start_gateway(
        dir,
        &server,
        ca_file.as_path(),
        "[listener.revocation]\nenabled = false\nstaple_ocsp = true\n",
    );
    let args = [
        "-status",
        "-CAfile",
        server_ca_file.to_str().expect("path"),
        "-cert",
        client.cert.to_str().expect("path"),
        "-key",
        client.key.to_str().expect("path"),
    ];
    let t0 = std::time::Instant::now();
    let out = loop {
        let out = gateway_tests::clients::s_client(gw.port(), &args);
        if out.stdout.contains("Cert Status: good") || t0.elapsed() > Duration::from_secs(8) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = responder.kill();
    let _ = responder.wait();
    assert!(
        out.stdout.contains("OCSP Response Status: successful")
            && out.stdout.contains("Cert Status: good"),
        "no good staple: {}",
        out.stdout
    );
}

/// Through the real gateway with a cold cache: many concurrent handshakes of certificates of
/// one issuer cause exactly one CRL fetch (single-flight); the good certificates get through,
/// the revoked one never reaches the backend, and an independent client (curl) is refused too.
#[test]
fn concurrent_cold_cache_handshakes_share_one_crl_fetch() {
    if !gateway_tests::require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = TestCa::new("Client CA");
    let ca_file = ca.write_cert(d, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server_ca_file = server_ca.write_cert(d, "server-ca.pem");
    let server = server_ca.issue(d, "server", &LeafSpec::server());
    let (crl_srv, url) = CrlServer::start(crl(&ca, &[666]));
    *crl_srv.delay.lock().expect("lock") = Duration::from_millis(300);
    let spec = |cn: &str, serial: u64| LeafSpec {
        crl_urls: vec![url.clone()],
        serial: Some(serial),
        ..LeafSpec::client(cn)
    };
    let good = ca.issue(d, "good", &spec("good", 1001));
    let revoked = ca.issue(d, "revoked", &spec("revoked", 666));
    let (backend, gw) = start_gateway(
        d,
        &server,
        &ca_file,
        "[listener.revocation]\norder = \"crl-only\"\n",
    );
    let port = gw.port();

    const N: usize = 200;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let good_cfg = client_config(&server_ca, &good);
    let revoked_cfg = client_config(&server_ca, &revoked);
    let (ok, refused) = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..N {
            let cfg = if i % 10 == 0 {
                revoked_cfg.clone()
            } else {
                good_cfg.clone()
            };
            tasks.push(tokio::spawn(async move { get(cfg, port).await }));
        }
        let mut ok = 0;
        let mut refused = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            let got_200 = t.await.unwrap_or(false);
            match (i % 10 == 0, got_200) {
                (false, true) => ok += 1,
                (true, false) => refused += 1,
                (revoked, got) => panic!("handshake {i}: revoked={revoked} got_200={got}"),
            }
        }
        (ok, refused)
    });
    assert_eq!((ok, refused), (N - N / 10, N / 10));
    assert_eq!(
        crl_srv.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "CRL fetched more than once"
    );
    assert_eq!(
        backend.hits(),
        N - N / 10,
        "a revoked client reached the backend"
    );

    // Warm cache now: curl with the revoked certificate is refused in the handshake itself.
    let out = gateway_tests::clients::curl(
        port,
        "/",
        &server_ca_file,
        Some((&revoked.cert, &revoked.key)),
        &[],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("revoked"),
        "expected a certificate_revoked alert: {out:?}"
    );
    let out = gateway_tests::clients::curl(
        port,
        "/",
        &server_ca_file,
        Some((&good.cert, &good.key)),
        &[],
    );
    assert!(out.ok_200(), "{out:?}");
}

/// One HTTP/1.1 GET over a fresh mutual-TLS connection; true on a 200.
async fn get(cfg: Arc<rustls::ClientConfig>, port: u16) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let Ok(name) = ServerName::try_from("localhost") else {
        return false;
    };
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return false;
    };
    if tls
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200")
}

/// A long-lived keep-alive connection (h2 and tcp:// ones live for hours) is not trusted
/// forever: its certificate status is checked again every `refresh_interval_secs`, and a
/// revocation closes it.
#[test]
fn long_lived_connection_is_closed_when_its_certificate_is_revoked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = TestCa::new("Recheck Client CA");
    let ca_file = ca.write_cert(dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let (crl_srv, crl_url) = CrlServer::start(crl(&ca, &[]));
    let serial = 0x10_4e_u64;
    let spec = LeafSpec {
        crl_urls: vec![crl_url],
        serial: Some(serial),
        ..LeafSpec::client("long lived")
    };
    let leaf = ca.issue(dir, "leaf", &spec);
    let (backend, gw) = start_gateway(
        dir,
        &server,
        ca_file.as_path(),
        "[listener.revocation]\norder = \"crl-only\"\nrefresh_interval_secs = 1\n",
    );
    let cfg = client_config(&server_ca, &leaf);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port()))
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .expect("handshake");
        let ask = b"GET /app HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut buf = vec![0u8; 16384];
        tls.write_all(ask).await.expect("request");
        let n = tls.read(&mut buf).await.expect("response");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        let hits = backend.hits();

        crl_srv.set(crl(&ca, &[serial]));
        // The refresh picks the CRL up within ~1 s; the connection's re-check within ~1 s more.
        let closed = tokio::time::timeout(Duration::from_secs(6), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the connection of a revoked certificate stayed open"
        );
        let _ = tls.write_all(ask).await;
        assert_eq!(
            backend.hits(),
            hits,
            "a request of the revoked certificate was served"
        );
    });
}
