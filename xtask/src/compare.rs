//! `cargo xtask compare`: the gateway side by side with nginx, HAProxy and Caddy (Debian
//! packages) on loopback, each terminating mutual TLS with the same certificates and the same
//! AES-GCM policy and answering locally, measured with the same `loadgen` runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;

struct Peer {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listening on 127.0.0.1:{port}")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The gateway with its defaults (`groups = None`: X25519MLKEM768 first) or with the given
/// groups (X25519 only: what the OpenSSL 3.0 and Go peers negotiate).
fn start_gateway(
    bin: &Path,
    pki: &Path,
    port: u16,
    name: &'static str,
    groups: Option<&str>,
) -> Result<Peer> {
    let cfg = pki.join(format!("compare-{name}.toml"));
    let tls = groups
        .map(|g| format!("[listener.tls]\ngroups = [{g}]\n"))
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "[global]\nmetrics_interval_secs = 0\nallow_root = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\nbackend = \"builtin:identity\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\ntrusted_cas = [\"ca.pem\"]\n{tls}[listener.revocation]\norder = \"crl-only\"\ncrl_files = [\"ca.crl.pem\"]\n"
        ),
    )?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(port)?;
    Ok(Peer { name, port, child })
}

const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";

fn start_nginx(pki: &Path, port: u16) -> Result<Peer> {
    let d = pki.display();
    let conf = pki.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nevents {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n server {{\n  listen 127.0.0.1:{port} ssl reuseport;\n  http2 on;\n\
               ssl_certificate {d}/server.pem;\n  ssl_certificate_key {d}/server.key;\n\
               ssl_client_certificate {d}/ca.pem;\n  ssl_verify_client on;\n\
               ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_ciphers {CIPHERS};\n  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;\n\
               location / {{ return 200 \"$ssl_client_s_dn\\n\"; }}\n }}\n}}\n"
        ),
    )?;
    // nginx 1.22 has no `http2 on;`: fall back to `listen ... ssl http2`.
    let text = std::fs::read_to_string(&conf)?;
    let ok = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()?
        .status
        .success();
    if !ok {
        std::fs::write(
            &conf,
            text.replace(" ssl reuseport;\n  http2 on;", " ssl http2 reuseport;"),
        )?;
    }
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(port)?;
    Ok(Peer {
        name: "nginx",
        port,
        child,
    })
}

fn start_haproxy(pki: &Path, port: u16) -> Result<Peer> {
    let d = pki.display();
    let bundle = pki.join("server-bundle.pem");
    std::fs::write(
        &bundle,
        format!(
            "{}{}",
            std::fs::read_to_string(pki.join("server.pem"))?,
            std::fs::read_to_string(pki.join("server.key"))?
        ),
    )?;
    let conf = pki.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n nbthread 2\n ssl-default-bind-ciphers {CIPHERS}\n ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384\n ssl-default-bind-options ssl-min-ver TLSv1.2\n\
             defaults\n mode http\n timeout connect 5s\n timeout client 30s\n timeout server 30s\n\
             frontend fe\n bind 127.0.0.1:{port} ssl crt {b} ca-file {d}/ca.pem verify required alpn h2,http/1.1\n http-request return status 200 content-type text/plain lf-string \"%[ssl_c_s_dn]\\n\"\n",
            b = bundle.display()
        ),
    )?;
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(port)?;
    Ok(Peer {
        name: "haproxy",
        port,
        child,
    })
}

fn start_caddy(pki: &Path, port: u16) -> Result<Peer> {
    let d = pki.display();
    let conf = pki.join("Caddyfile");
    std::fs::write(
        &conf,
        format!(
            "{{\n admin off\n auto_https off\n}}\nhttps://localhost:{port} {{\n bind 127.0.0.1\n tls {d}/server.pem {d}/server.key {{\n  protocols tls1.2 tls1.3\n  ciphers TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n  client_auth {{\n   mode require_and_verify\n   trusted_ca_cert_file {d}/ca.pem\n  }}\n }}\n respond \"{{tls_client_subject}}\" 200\n}}\n"
        ),
    )?;
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", pki)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(port)?;
    Ok(Peer {
        name: "caddy",
        port,
        child,
    })
}

fn loadgen(
    bin: &Path,
    pki: &Path,
    port: u16,
    mode: &str,
    seconds: u64,
) -> Result<serde_json_lite::Line> {
    let out = Command::new(bin)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--mode",
            mode,
            "--connections",
            "32",
            "--seconds",
            &seconds.to_string(),
        ])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("client.pem"))
        .arg("--key")
        .arg(pki.join("client.key"))
        .output()
        .context("run loadgen")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json_lite::Line(text.trim().to_string()))
}

/// A JSON line from loadgen, printed as is (xtask stays dependency-light).
mod serde_json_lite {
    pub struct Line(pub String);
    impl Line {
        pub fn field(&self, key: &str) -> String {
            let pat = format!("\"{key}\":");
            self.0
                .split(&pat)
                .nth(1)
                .map(|r| {
                    r.split([',', '}'])
                        .next()
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string()
                })
                .unwrap_or_default()
        }
    }
}

/// Runs the comparison. `seconds` per run.
///
/// # Errors
/// If a build, a peer or a run fails.
pub fn compare(seconds: u64) -> Result<()> {
    crate::peers::ensure_extra(&[("haproxy", "haproxy"), ("caddy", "caddy")])?;
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--release",
            "-p",
            "gateway",
            "-p",
            "gateway-benches",
            "--bin",
            "gateway",
            "--bin",
            "loadgen",
        ]),
    )?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let gw = root.join("target/release/gateway");
    let lg = root.join("target/release/loadgen");
    let pki = root.join("target/compare");
    run(Command::new(&gw).arg("dev-pki").arg(&pki))?;
    let pki = pki.canonicalize()?;
    let mut rows = Vec::new();
    type Starter = fn(&Path, u16) -> Result<Peer>;
    let peers: Vec<(&str, Starter)> = vec![
        ("nginx", start_nginx),
        ("haproxy", start_haproxy),
        ("caddy", start_caddy),
    ];
    let run_one = |p: Peer, rows: &mut Vec<String>| -> Result<()> {
        for mode in ["handshake", "resume", "keepalive"] {
            let l = loadgen(&lg, &pki, p.port, mode, seconds)?;
            rows.push(format!(
                "| {} | {mode} | {:.0} | {} | {} | {} |",
                p.name,
                l.field("rate").parse::<f64>().unwrap_or(0.0),
                l.field("p50_us"),
                l.field("p99_us"),
                l.field("errors")
            ));
        }
        Ok(())
    };
    run_one(start_gateway(&gw, &pki, 18443, "gateway", None)?, &mut rows)?;
    run_one(
        start_gateway(
            &gw,
            &pki,
            18443,
            "gateway-x25519",
            Some("\"X25519\", \"secp256r1\""),
        )?,
        &mut rows,
    )?;
    for (i, (name, start)) in peers.into_iter().enumerate() {
        if !have(name) {
            rows.push(format!("| {name} | (not installed) | | | | |"));
            continue;
        }
        match start(&pki, 18444 + i as u16) {
            Ok(p) => run_one(p, &mut rows)?,
            Err(e) => rows.push(format!("| {name} | failed to start: {e} | | | | |")),
        }
    }
    println!("| server | mode | req/s | p50 us | p99 us | errors |\n| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
