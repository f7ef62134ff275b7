//! Reload, judged from outside the `gateway` process: SIGHUP reloads instead of killing the
//! process (it used to exit with status 129); `gateway reload` reports a refused configuration
//! with a non-zero exit and the error, while the previous configuration keeps serving; a
//! valid one is applied; `gateway reload --pid-file --config` refuses to signal an invalid
//! configuration; SIGTERM still stops the process cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

struct Gw(Child);

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn config_text(dir: &Path, port: u16, admin: u16, server_cert: &str) -> String {
    let p = |f: &str| format!("{:?}", dir.join(f).display().to_string());
    format!(
        "[global]\nworkers = 1\nmetrics_interval_secs = 0\nshutdown_grace_secs = 1\nallow_root = true\n\n\
         [admin]\nbind = \"127.0.0.1:{admin}\"\n\n\
         [[listener]]\nname = \"edge\"\nbind = \"127.0.0.1:{port}\"\nbackend = \"builtin:identity\"\n\
         server_cert = {}\nserver_key = {}\ntrusted_cas = [{}]\nrevocation = {{ enabled = false }}\n",
        p(server_cert),
        p("server.key"),
        p("ca.pem"),
    )
}

fn http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

fn metric(admin: &str, line_prefix: &str) -> Option<f64> {
    let (_, body) = http(admin, "GET", "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// One HTTPS request with the development client certificate: whether it got a 200.
fn request_ok(dir: &Path, port: u16) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("pem")).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("client.pem"))
        .expect("client")
        .map(|c| c.expect("pem"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).expect("key");
    let provider = Arc::new(
        gateway::tls::policy::base_provider(gateway::tls::policy::DEFAULT_PROVIDER)
            .expect("provider"),
    );
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth"),
    );
    let mut conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap())
        .expect("conn");
    let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    if tls
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run gateway")
}

#[test]
fn sighup_reloads_and_gateway_reload_reports_refusals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    assert!(Command::new(BIN)
        .arg("dev-pki")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("dev-pki")
        .success());
    let (port, admin_port) = (free_port(), free_port());
    let admin = format!("127.0.0.1:{admin_port}");
    let cfg = dir.join("gateway.toml");
    let pid_file = dir.join("gateway.pid");
    std::fs::write(&cfg, config_text(dir, port, admin_port, "server.pem")).expect("config");
    let mut gw = Gw(Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&cfg)
        .arg("--pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() || http(&admin, "GET", "/healthz").is_none() {
        assert!(Instant::now() < deadline, "gateway did not start");
        assert!(gw.0.try_wait().expect("wait").is_none(), "gateway exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(request_ok(dir, port));

    // SIGHUP: a reload, not death.
    let pid = gw.0.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&admin, "gateway_reloads_total{outcome=\"ok\"} ") != Some(1.0) {
        assert!(
            gw.0.try_wait().expect("wait").is_none(),
            "SIGHUP killed the gateway"
        );
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(request_ok(dir, port));

    // A broken configuration: refused, reported, and the old one keeps serving.
    std::fs::write(&cfg, config_text(dir, port, admin_port, "missing.pem")).expect("config");
    let out = gateway(&["reload", "--admin", &admin]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("listener[0].server_cert") && err.contains("previous"),
        "{err}"
    );
    assert_eq!(
        metric(&admin, "gateway_config_last_reload_failed "),
        Some(1.0)
    );
    assert!(
        request_ok(dir, port),
        "the previous configuration serves on"
    );
    let out = Command::new(BIN)
        .args(["reload", "--pid-file"])
        .arg(&pid_file)
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("reload");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signalled"));

    // Fixed: applied.
    std::fs::write(&cfg, config_text(dir, port, admin_port, "server.pem")).expect("config");
    let out = gateway(&["reload", "--admin", &admin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    assert_eq!(
        metric(&admin, "gateway_reloads_total{outcome=\"ok\"} "),
        Some(2.0)
    );
    assert_eq!(
        metric(&admin, "gateway_reloads_total{outcome=\"failed\"} "),
        Some(1.0)
    );
    let out = Command::new(BIN)
        .args(["reload", "--pid-file"])
        .arg(&pid_file)
        .output()
        .expect("reload");
    assert!(out.status.success());

    // SIGTERM still stops it, cleanly, and the PID file goes.
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = gw.0.try_wait().expect("wait") {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop the gateway"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_file.exists());
}
