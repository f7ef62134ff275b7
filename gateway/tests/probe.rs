//! `gateway probe` against a real `openssl s_server` on loopback.

/// The backend/client test PKI and TLS peers, from the test-support crate's sources
/// (tests/src).
#[path = "../../tests/src/tls_peers.rs"]
mod access_support;
/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use access_support::{Ca, Leaf};
use gateway::probe::{run_with, ProbeArgs};
use gateway::status::{
    BoxFuture, CertReport, CertStatus, ChainStatus, Source, StatusCheck, StatusFactory,
};
use rustls::pki_types::{CertificateDer, UnixTime};

const OPENSSL: &str = "/usr/bin/openssl";

/// An `openssl s_server` killed on drop.
struct SServer {
    child: Child,
    port: u16,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn s_server(dir: &Path, leaf: &Leaf, name: &str, client_ca: Option<&Path>) -> SServer {
    let (cert, key) = leaf.write(dir, name);
    let port = free_port();
    let mut cmd = Command::new(OPENSSL);
    cmd.arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-www")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(ca) = client_ca {
        cmd.arg("-verify").arg("1").arg("-CAfile").arg(ca);
    }
    let child = cmd
        .spawn()
        .expect("openssl s_server starts (is /usr/bin/openssl installed?)");
    let server = SServer { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("openssl s_server did not listen on {port}");
}

fn args(port: u16, ca: &Path) -> ProbeArgs {
    ProbeArgs {
        url: format!("https://localhost:{port}"),
        ca: vec![ca.to_path_buf()],
        cert: None,
        key: None,
        servername: None,
        timeout: 5,
        no_revocation: false,
        crypto_provider: gateway::tls::policy::DEFAULT_PROVIDER.into(),
    }
}

#[derive(Debug)]
struct FixedStatus(CertStatus);

const DETAIL: &str = "thisUpdate now";

impl StatusCheck for FixedStatus {
    fn in_handshake(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> CertStatus {
        self.0.clone()
    }

    fn check_chain<'a>(
        &'a self,
        presented: &'a [CertificateDer<'static>],
    ) -> BoxFuture<'a, ChainStatus> {
        let certs = presented
            .iter()
            .map(|_| CertReport {
                subject: "CN=localhost".into(),
                issuer: "CN=test".into(),
                serial: "01".into(),
                status: self.0.clone(),
                detail: DETAIL.into(),
            })
            .collect();
        Box::pin(async move { ChainStatus { certs } })
    }
}

async fn probe(a: &ProbeArgs, status: Option<Arc<dyn StatusCheck>>) -> (bool, String) {
    let mut out = Vec::new();
    let factory = status.map(|s| {
        move |_: &[CertificateDer<'static>]| -> Result<Arc<dyn StatusCheck>, String> {
            Ok(s.clone())
        }
    });
    let factory = factory.as_ref().map(|f| f as &StatusFactory);
    let ok = run_with(a, factory, &mut out).await.expect("probe runs");
    let text = String::from_utf8(out).expect("utf8");
    eprintln!("{text}");
    (ok, text)
}

struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
    client_ca_path: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("Probe Test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let client_ca = Ca::new("Client Issuing CA");
    let client_ca_path = client_ca.write(dir.path(), "client-ca");
    Setup {
        dir,
        ca,
        ca_path,
        client_ca_path,
    }
}

#[tokio::test]
async fn good_server_passes_and_lists_client_ca_names() {
    let s = setup();
    let srv = s_server(
        s.dir.path(),
        &s.ca.server(false),
        "good",
        Some(&s.client_ca_path),
    )
    .await;
    let mut a = args(srv.port, &s.ca_path);

    // Fail closed: without a revocation status the verdict is FAIL.
    let (ok, text) = probe(&a, None).await;
    assert!(!ok, "{text}");
    assert!(text.contains("revocation:   UNKNOWN"), "{text}");

    let good: Arc<dyn StatusCheck> = Arc::new(FixedStatus(CertStatus::Good {
        source: Some(Source::Ocsp),
    }));
    let (ok, text) = probe(&a, Some(good)).await;
    assert!(ok, "{text}");
    assert!(text.contains("protocol:     TLSv1.3"), "{text}");
    assert!(text.contains("cipher suite: TLS13_AES_"), "{text}");
    assert!(text.contains("key exchange: "), "{text}");
    assert!(text.contains("subject: CN=localhost"), "{text}");
    assert!(text.contains("revocation [0]: good via OCSP"), "{text}");
    assert!(
        text.contains("CN=Client Issuing CA"),
        "CA names from the CertificateRequest: {text}"
    );
    assert!(text.contains("verdict: PASS"), "{text}");

    // The explicit relaxation passes with a warning.
    a.no_revocation = true;
    let (ok, text) = probe(&a, None).await;
    assert!(
        ok && text.contains("WARNING: revocation status not checked"),
        "{text}"
    );
}

#[tokio::test]
async fn revoked_server_fails() {
    let s = setup();
    let srv = s_server(s.dir.path(), &s.ca.server(false), "revoked", None).await;
    let revoked: Arc<dyn StatusCheck> = Arc::new(FixedStatus(CertStatus::Revoked {
        source: Source::Ocsp,
        time: None,
        code: Some(1),
    }));
    let (ok, text) = probe(&args(srv.port, &s.ca_path), Some(revoked)).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("REVOKED (revoked (according to OCSP, reason code 1))")
            && text.contains("verdict: FAIL"),
        "{text}"
    );
    assert!(
        text.contains("server did not ask for a client certificate"),
        "{text}"
    );
}

#[tokio::test]
async fn expired_server_fails() {
    let s = setup();
    let srv = s_server(s.dir.path(), &s.ca.server(true), "expired", None).await;
    let mut a = args(srv.port, &s.ca_path);
    a.no_revocation = true;
    let (ok, text) = probe(&a, None).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("(EXPIRED)"),
        "chain printed even when refused: {text}"
    );
    assert!(
        text.contains("REJECTED") && text.contains("verdict: FAIL"),
        "{text}"
    );
}

#[tokio::test]
async fn untrusted_server_fails() {
    let s = setup();
    let other = Ca::new("Unknown CA");
    let srv = s_server(s.dir.path(), &other.server(false), "untrusted", None).await;
    let mut a = args(srv.port, &s.ca_path);
    a.no_revocation = true;
    let (ok, text) = probe(&a, None).await;
    assert!(!ok, "{text}");
    assert!(text.contains("CN=Unknown CA"), "{text}");
    assert!(text.contains("verdict: FAIL"), "{text}");
}

#[tokio::test]
async fn nothing_listening_fails() {
    let s = setup();
    let mut a = args(free_port(), &s.ca_path);
    a.no_revocation = true;
    let (ok, text) = probe(&a, None).await;
    assert!(!ok && text.contains("cannot connect"), "{text}");
}
