//! The `gateway` binary: `check-config` errors name the problem, and the newcomer path
//! (`gateway serve` with no config, then the printed curl command) works.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The one skip policy, shared with the `gateway-tests` crate (each test file uses part of it).
#[allow(dead_code)]
#[path = "../../tests/src/skip.rs"]
mod skip;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run gateway");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A dev PKI made by the binary itself, plus a config using it.
fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = Command::new(BIN)
        .arg("dev-pki")
        .arg(dir.path())
        .status()
        .expect("dev-pki");
    assert!(st.success());
    let base = r#"
[[listener]]
bind = "127.0.0.1:0"
backend = "builtin:identity"
server_cert = "server.pem"
server_key = "server.key"
trusted_cas = ["ca.pem"]
"#
    .to_string();
    (dir, base)
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("gw.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn check_config_accepts_good_and_names_each_problem() {
    let (dir, base) = setup();
    let d = dir.path();
    let (ok, out) = check_config(&write(d, &base));
    assert!(ok, "{out}");

    let (ok, out) = check_config(&d.join("missing.toml"));
    assert!(!ok && out.contains("missing.toml"), "{out}");

    let (ok, out) = check_config(&write(d, &format!("{base}\nfrobnicate = true\n")));
    assert!(!ok && out.contains("frobnicate"), "unknown key: {out}");

    let (ok, out) = check_config(&write(
        d,
        &format!("{base}\n[listener.tls]\ncipher_suites = [\"TLS_RSA_WITH_3DES_EDE_CBC_SHA\"]\n"),
    ));
    assert!(
        !ok && out.contains("listener[0].tls.cipher_suites") && out.contains("3DES"),
        "unknown suite: {out}"
    );

    // Key that does not belong to the certificate.
    let (ok, out) = check_config(&write(d, &base.replace("server.key", "client.key")));
    assert!(
        !ok && out.contains("listener[0].server_key"),
        "key mismatch: {out}"
    );

    let (ok, out) = check_config(&write(d, &base.replace("server.pem", "nope.pem")));
    assert!(
        !ok && out.contains("listener[0].server_cert") && out.contains("nope.pem"),
        "{out}"
    );

    // An expired server certificate, made with openssl from the dev CA.
    if Command::new("openssl").arg("version").output().is_ok() {
        let st = Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "old.key",
                "-out",
                "old.pem",
                "-subj",
                "/CN=localhost",
                "-not_before",
                "20200101000000Z",
                "-not_after",
                "20210101000000Z",
            ])
            .output()
            .expect("openssl");
        if st.status.success() {
            let cfg = base
                .replace("server.pem", "old.pem")
                .replace("server.key", "old.key");
            let (ok, out) = check_config(&write(d, &cfg));
            assert!(!ok && out.contains("expired"), "expired server cert: {out}");
        }
    }
}

#[test]
fn newcomer_path_embedded_default_and_printed_curl_command() {
    if !skip::require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A free port for the embedded default.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut curl_cmd = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.trim_start().starts_with("curl ") {
            curl_cmd = Some(line.trim().to_string());
        }
        if line.contains("listening") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let curl_cmd = curl_cmd.expect("gateway printed a curl command");
    let out = Command::new("sh")
        .args(["-c", &format!("{curl_cmd} -sS --max-time 10")])
        .output()
        .expect("run printed curl");
    let body = String::from_utf8_lossy(&out.stdout);
    // SIGTERM: graceful shutdown.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("identity JSON");
    assert_eq!(
        json["identity"]["x-client-cert-subject"],
        // As `openssl x509 -nameopt RFC2253` prints it (rcgen encodes CN first).
        "OU=Development,O=S.E.E. Gateway (development),C=NZ,CN=Dev User"
    );
    assert_eq!(json["identity"]["x-client-auth-method"], "certificate");
    assert!(status.success(), "gateway exit after SIGTERM: {status:?}");
    assert!(dir.path().join("client.p12").is_file());
}
