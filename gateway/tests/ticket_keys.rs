//! Fleet-shared session tickets, judged across real `gateway` processes: a client resumes its
//! session on another process that reads the same `[global] ticket_keys` file, still resumes
//! after a rotation that keeps the old key as a previous key, and does a full handshake once
//! the key of its ticket has been rotated out. TLS 1.3 and TLS 1.2 (RFC 5077 tickets).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A gateway process, killed on drop.
struct Gw {
    child: Child,
    port: u16,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn start(dir: &Path, tag: &str, ticket_keys: Option<&Path>) -> Gw {
    let port = free_port();
    let p = |f: &str| format!("{:?}", dir.join(f).display().to_string());
    let keys = ticket_keys
        .map(|k| format!("ticket_keys = {:?}\n", k.display().to_string()))
        .unwrap_or_default();
    let text = format!(
        "[global]\nworkers = 1\nmetrics_interval_secs = 0\nshutdown_grace_secs = 1\nallow_root = true\n{keys}\n\
         [[listener]]\nname = \"edge\"\nbind = \"127.0.0.1:{port}\"\nbackend = \"builtin:identity\"\n\
         server_cert = {}\nserver_key = {}\ntrusted_cas = [{}]\n\
         [listener.revocation]\norder = \"crl-only\"\ncrl_files = [{}]\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem"),
        p("ca.crl.pem"),
    );
    let cfg = dir.join(format!("gateway-{tag}.toml"));
    std::fs::write(&cfg, text).expect("write config");
    let child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway");
    let gw = Gw { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gateway {tag} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

fn rotate(file: &Path, keep: usize) {
    let out = Command::new(BIN)
        .args(["ticket-keys", "rotate"])
        .arg(file)
        .args(["--keep", &keep.to_string()])
        .output()
        .expect("run ticket-keys rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn client(
    dir: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("client.pem"))
        .expect("client cert")
        .map(|c| c.expect("pem"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).expect("client key");
    let provider = Arc::new(
        gateway::tls::policy::base_provider(gateway::tls::policy::DEFAULT_PROVIDER)
            .expect("provider"),
    );
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth"),
    )
}

/// One HTTPS request; returns whether the handshake resumed a session.
fn request(cfg: &Arc<rustls::ClientConfig>, port: u16) -> bool {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client conn");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("handshake");
    }
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "answer: {text}");
    resumed
}

fn dev_pki(dir: &Path) -> PathBuf {
    let st = Command::new(BIN)
        .arg("dev-pki")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("gateway dev-pki");
    assert!(st.success());
    dir.join("tickets.keys")
}

fn shared_tickets_across_processes(version: &'static rustls::SupportedProtocolVersion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let keys = dev_pki(dir);
    rotate(&keys, 2);
    let cfg = client(dir, version);

    let a = start(dir, "a", Some(&keys));
    let b = start(dir, "b", Some(&keys));
    assert!(!request(&cfg, a.port), "first contact is a full handshake");
    assert!(
        request(&cfg, b.port),
        "a ticket from process A resumes on process B (same key file)"
    );
    drop(a);

    // Rotation with overlap: the old key is still a previous key, tickets still resume.
    rotate(&keys, 1);
    let c = start(dir, "c", Some(&keys));
    assert!(
        request(&cfg, c.port),
        "old key kept as previous key: resumes"
    );

    // The old keys rotated out: a full handshake, and the client still gets in.
    rotate(&keys, 0);
    let d = start(dir, "d", Some(&keys));
    assert!(
        !request(&cfg, d.port),
        "ticket whose key was rotated out must not resume"
    );
    assert!(request(&cfg, d.port), "new tickets from the new key resume");

    // Without the file, a process has its own random key: no resumption there.
    let lone = start(dir, "lone", None);
    assert!(
        !request(&cfg, lone.port),
        "a process without the file must not resume"
    );
    drop(lone);
    drop((b, c, d));
}

#[test]
fn tls13_session_resumes_on_another_process_until_its_key_is_rotated_out() {
    shared_tickets_across_processes(&rustls::version::TLS13);
}

#[test]
fn tls12_session_ticket_resumes_on_another_process_until_its_key_is_rotated_out() {
    shared_tickets_across_processes(&rustls::version::TLS12);
}

#[test]
fn a_world_readable_key_file_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let keys = dev_pki(dir);
    rotate(&keys, 2);
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = dir.join("g.toml");
    let p = |f: &str| format!("{:?}", dir.join(f).display().to_string());
    std::fs::write(
        &cfg,
        format!(
            "[global]\nticket_keys = {}\n[[listener]]\nbind = \"127.0.0.1:0\"\nbackend = \"builtin:identity\"\n\
             server_cert = {}\nserver_key = {}\ntrusted_cas = [{}]\nrevocation = {{ enabled = false }}\n",
            p("tickets.keys"),
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("global.ticket_keys") && err.contains("chmod 600"),
        "{err}"
    );
}
