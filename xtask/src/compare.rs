//! `cargo xtask compare`: the gateway and nginx (Debian) side by side on loopback, measured
//! with the same `loadgen` runs.
//!
//! Both servers run one worker pinned to CPU 0 (`taskset -c 0`); loadgen and the plain HTTP
//! backend (`loadgen backend`) run on CPU 1. Both terminate TLS 1.3 mutual TLS with the same
//! ECDSA P-256 development PKI, AES-128-GCM first, and check client certificates against the
//! dev CA's CRL (the gateway: `crl-only` with the CRL file, warm cache; nginx: `ssl_crl`).
//! Each server has two listeners: one answering locally with the client's subject (handshake
//! modes, idle connections) and one proxying to the backend with the subject as a header and
//! streamed bodies (keep-alive and bulk modes). Rounds are interleaved (gateway, nginx, then
//! nginx, gateway, ...) and the table reports medians over rounds and gateway/nginx ratios of
//! server CPU per operation and RSS per idle connection.
//!
//! The floor (on unless `--no-floor`): a third server, `loadgen floor`, pinned the same way,
//! runs every workload without TLS (`loadgen --plain`): plain HTTP answered by hyper on one
//! thread for the handshake workloads, a byte-for-byte TCP relay to the same backend for the
//! proxied ones. Its CPU per operation is what loopback TCP (and, locally, minimal HTTP)
//! costs this machine before any TLS. With the handshake's public-key operations timed by
//! `loadgen crypto` on the server's CPU, it bounds from below what any terminator can spend:
//! floor + X25519 for a resumed handshake, floor + X25519 + ECDSA sign + verify for a full one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;

/// A started server (killed on drop).
struct Server {
    name: &'static str,
    child: Child,
    /// Port answering locally.
    local: u16,
    /// Port proxying to the backend.
    proxy: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master stops its workers (a SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `child` as the server `name`, once both its ports accept connections (killed on
    /// drop if they never do).
    fn started(name: &'static str, child: Child, local: u16, proxy: u16) -> Result<Server> {
        let s = Server {
            name,
            child,
            local,
            proxy,
        };
        wait_port(local)?;
        wait_port(proxy)?;
        Ok(s)
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

const BACKEND_PORT: u16 = 18480;
/// The floor server's ports (local answers, relay to the backend).
const FLOOR_PORTS: (u16, u16) = (18463, 18464);
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";

fn pinned(cpu: &str, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", cpu]).arg(program);
    c
}

fn start_gateway(bin: &Path, pki: &Path) -> Result<Server> {
    let (local, proxy) = (18443, 18444);
    let cfg = pki.join("compare-gateway.toml");
    let listener = |port: u16, backend: &str| {
        format!(
            "[[listener]]\nbind = \"127.0.0.1:{port}\"\nbackend = \"{backend}\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\ntrusted_cas = [\"ca.pem\"]\n[listener.tls]\ngroups = [\"X25519\", \"secp256r1\"]\n[listener.revocation]\norder = \"crl-only\"\ncrl_files = [\"ca.crl.pem\"]\n[listener.limits]\nmax_connections_per_worker = 30000\n"
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[global]\nworkers = 1\nmetrics_interval_secs = 0\nallow_root = true\n{}{}",
            listener(local, "builtin:identity"),
            listener(proxy, &format!("http://127.0.0.1:{BACKEND_PORT}"))
        ),
    )?;
    let child = pinned(SERVER_CPU, bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Server::started("gateway", child, local, proxy)
}

fn start_nginx(pki: &Path) -> Result<Server> {
    let (local, proxy) = (18453, 18454);
    let d = pki.display();
    let conf = pki.join("nginx.conf");
    let tls = format!(
        "  ssl_certificate {d}/server.pem;\n  ssl_certificate_key {d}/server.key;\n\
           ssl_client_certificate {d}/ca.pem;\n  ssl_verify_client on;\n  ssl_crl {d}/ca.crl.pem;\n\
           ssl_protocols TLSv1.3;\n  ssl_ecdh_curve X25519:prime256v1;\n\
           ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;\n\
           ssl_session_cache shared:SSL:10m;\n  keepalive_requests 100000;\n"
    );
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
             worker_rlimit_nofile 30000;\nevents {{ worker_connections 25000; }}\n\
             http {{\n access_log off;\n\
              upstream backend {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 64; }}\n\
              server {{\n  listen 127.0.0.1:{local} ssl;\n{tls}\
                location / {{ return 200 \"$ssl_client_s_dn\\n\"; }}\n }}\n\
              server {{\n  listen 127.0.0.1:{proxy} ssl;\n{tls}\
                client_max_body_size 0;\n\
                location / {{\n   proxy_pass http://backend;\n   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n   proxy_set_header X-Client-Subject $ssl_client_s_dn;\n\
                   proxy_buffering off;\n   proxy_request_buffering off;\n  }}\n }}\n}}\n"
        ),
    )?;
    let nginx = if Path::new("/usr/sbin/nginx").exists() {
        PathBuf::from("/usr/sbin/nginx")
    } else {
        PathBuf::from("nginx")
    };
    let child = pinned(SERVER_CPU, &nginx)
        .arg("-c")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()?;
    Server::started("nginx", child, local, proxy)
}

fn start_floor(lg: &Path) -> Result<Server> {
    let (local, proxy) = FLOOR_PORTS;
    let child = pinned(SERVER_CPU, lg)
        .args([
            "floor",
            "--local",
            &format!("127.0.0.1:{local}"),
            "--proxy",
            &format!("127.0.0.1:{proxy}"),
            "--backend",
            &format!("127.0.0.1:{BACKEND_PORT}"),
        ])
        .stderr(Stdio::null())
        .spawn()?;
    Server::started("floor", child, local, proxy)
}

/// Median microseconds of the handshake's public-key operations (`loadgen crypto`, pinned
/// to the servers' CPU): (resumed, full).
fn crypto_floor(lg: &Path) -> Result<(f64, f64)> {
    let out = pinned(SERVER_CPU, lg)
        .arg("crypto")
        .stderr(Stdio::inherit())
        .output()
        .context("run loadgen crypto")?;
    if !out.status.success() {
        bail!("loadgen crypto failed");
    }
    let j = String::from_utf8_lossy(&out.stdout).to_string();
    Ok((field(&j, "resumed_us"), field(&j, "full_us")))
}

/// One measured workload.
struct Workload {
    name: &'static str,
    /// Proxied (through the backend) or answered locally.
    proxied: bool,
    args: &'static [&'static str],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "full",
        proxied: false,
        args: &["--mode", "full", "--connections", "16"],
    },
    Workload {
        name: "resumed",
        proxied: false,
        args: &["--mode", "resumed", "--connections", "16"],
    },
    Workload {
        name: "keepalive",
        proxied: true,
        args: &[
            "--mode",
            "keepalive",
            "--connections",
            "16",
            "--requests-per-conn",
            "100",
        ],
    },
    Workload {
        name: "bulk-1MiB-down",
        proxied: true,
        args: &[
            "--mode",
            "bulk",
            "--connections",
            "4",
            "--body-size",
            "1MiB",
        ],
    },
    Workload {
        name: "bulk-1MiB-up",
        proxied: true,
        args: &[
            "--mode",
            "bulk",
            "--connections",
            "4",
            "--body-size",
            "1MiB",
            "--direction",
            "up",
        ],
    },
    Workload {
        name: "bulk-100MiB-down",
        proxied: true,
        args: &[
            "--mode",
            "bulk",
            "--connections",
            "2",
            "--body-size",
            "100MiB",
        ],
    },
    Workload {
        name: "bulk-100MiB-up",
        proxied: true,
        args: &[
            "--mode",
            "bulk",
            "--connections",
            "2",
            "--body-size",
            "100MiB",
            "--direction",
            "up",
        ],
    },
];

/// The numbers kept from one loadgen run.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu_per_op: f64,
    cpu_per_mib: f64,
    rss_per_conn: f64,
    errors: f64,
}

fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    json.split(&pat)
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
        .unwrap_or(f64::NAN)
}

fn loadgen(
    lg: &Path,
    pki: &Path,
    server: &Server,
    port: u16,
    args: &[&str],
    secs: u64,
) -> Result<Sample> {
    let out = pinned(CLIENT_CPU, lg)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--seconds",
            &secs.to_string(),
        ])
        .args([
            "--server-pid",
            &server.child.id().to_string(),
            "--label",
            server.name,
        ])
        .args(args)
        .args(if server.name == "floor" {
            &["--plain"][..]
        } else {
            &[]
        })
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("client.pem"))
        .arg("--key")
        .arg(pki.join("client.key"))
        .stderr(Stdio::inherit())
        .output()
        .context("run loadgen")?;
    if !out.status.success() {
        bail!("loadgen {args:?} against {} failed", server.name);
    }
    let j = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(Sample {
        rate: field(&j, "rate"),
        p50: field(&j, "p50_us"),
        p99: field(&j, "p99_us"),
        cpu_per_op: field(&j, "server_cpu_us_per_op"),
        cpu_per_mib: field(&j, "server_cpu_us_per_mib"),
        rss_per_conn: field(&j, "server_rss_kib_per_conn"),
        errors: field(&j, "errors"),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Options of `cargo xtask compare`.
#[derive(Debug)]
pub struct Options {
    /// Seconds per loadgen run.
    pub seconds: u64,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Idle connections held per server and round (0: skip the idle measurement).
    pub idle: usize,
    /// Only these workloads (empty: all; `idle` names the idle-connection measurement).
    pub only: Vec<String>,
    /// Also measure the floor (no TLS) and the handshake's public-key operations.
    pub floor: bool,
}

impl Options {
    /// Parses `[SECS] [--rounds N] [--idle N] [--only a,b] [--no-floor]`.
    ///
    /// # Errors
    /// On an unknown flag or a bad number.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            seconds: 10,
            rounds: 3,
            idle: 10_000,
            only: Vec::new(),
            floor: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--rounds" => o.rounds = val()?.parse().context("--rounds")?,
                "--idle" => o.idle = val()?.parse().context("--idle")?,
                "--only" => o.only = val()?.split(',').map(str::to_string).collect(),
                "--no-floor" => o.floor = false,
                n => {
                    o.seconds = n
                        .parse()
                        .with_context(|| format!("unknown argument {n:?}"))?
                }
            }
        }
        if o.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        Ok(o)
    }
}

/// Runs the comparison.
///
/// # Errors
/// If a build, a server or a run fails.
pub fn compare(o: &Options) -> Result<()> {
    crate::peers::ensure_extra(&[("nginx", "nginx"), ("taskset", "util-linux")])?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (gw, lg) = crate::build_gateway_and(&root, "loadgen")?;
    let pki = root.join("target/compare");
    run(Command::new(&gw).arg("dev-pki").arg(&pki))?;
    let pki = pki.canonicalize()?;
    let _backend = Server {
        name: "backend",
        child: pinned(CLIENT_CPU, &lg)
            .args(["backend", "--listen", &format!("127.0.0.1:{BACKEND_PORT}")])
            .stderr(Stdio::null())
            .spawn()?,
        local: BACKEND_PORT,
        proxy: BACKEND_PORT,
    };
    wait_port(BACKEND_PORT)?;
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| o.only.is_empty() || o.only.iter().any(|n| n == w.name))
        .collect();
    // samples[workload][server] (server 0 = gateway, 1 = nginx, 2 = floor); idle at index
    // len.
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; workloads.len() + 1];
    // (resumed, full) public-key microseconds, one measurement per round.
    let mut crypto: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        let mut order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        if o.floor {
            order.push(2);
            let (r, f) = crypto_floor(&lg)?;
            crypto[0].push(r);
            crypto[1].push(f);
        }
        for s in order {
            let server = match s {
                0 => start_gateway(&gw, &pki)?,
                1 => start_nginx(&pki)?,
                _ => start_floor(&lg)?,
            };
            eprintln!(
                "xtask compare: round {} of {}, {}",
                round + 1,
                o.rounds,
                server.name
            );
            // Warm up: TLS state, the gateway's CRL cache, nginx's session cache.
            let _ = loadgen(
                &lg,
                &pki,
                &server,
                server.local,
                &["--mode", "full", "--max-requests", "50"],
                2,
            );
            if s < 2 && o.idle > 0 && (o.only.is_empty() || o.only.iter().any(|n| n == "idle")) {
                let sample = loadgen(
                    &lg,
                    &pki,
                    &server,
                    server.local,
                    &[
                        "--mode",
                        "idle-hold",
                        "--connections",
                        "64",
                        "--hold",
                        &o.idle.to_string(),
                    ],
                    3,
                )?;
                samples[workloads.len()][s].push(sample);
            }
            for (i, w) in workloads.iter().enumerate() {
                let port = if w.proxied {
                    server.proxy
                } else {
                    server.local
                };
                samples[i][s].push(loadgen(&lg, &pki, &server, port, w.args, o.seconds)?);
            }
        }
    }
    println!(
        "medians of {} interleaved rounds, {} s per run; server pinned to CPU {SERVER_CPU} (one worker), loadgen + backend on CPU {CLIENT_CPU}\n",
        o.rounds, o.seconds
    );
    println!("| workload | server | ops/s | p50 us | p99 us | server CPU us/op | server CPU us/MiB | errors | CPU ratio to nginx |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let med = |v: &Vec<Sample>, f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let servers: &[&str] = if o.floor {
        &["gateway", "nginx", "floor (no TLS)"]
    } else {
        &["gateway", "nginx"]
    };
    // Per workload: (name, nginx us/op, floor us/op).
    let mut floors = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let per_op: [f64; 3] = [0, 1, 2].map(|s| med(&samples[i][s], |x| x.cpu_per_op));
        for (s, name) in servers.iter().enumerate() {
            let v = &samples[i][s];
            println!(
                "| {} | {name} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {} |",
                w.name,
                med(v, |x| x.rate),
                med(v, |x| x.p50),
                med(v, |x| x.p99),
                per_op[s],
                med(v, |x| x.cpu_per_mib),
                med(v, |x| x.errors),
                if s == 1 {
                    String::new()
                } else {
                    format!("{:.2}", per_op[s] / per_op[1])
                }
            );
        }
        floors.push((w.name, per_op[1], per_op[2]));
    }
    if o.floor {
        let (resumed_pk, full_pk) = (median(crypto[0].clone()), median(crypto[1].clone()));
        println!(
            "\nthe least a server can spend here (floor without TLS, plus the handshake's public-key operations timed on CPU {SERVER_CPU}: resumed {resumed_pk:.1} us, full {full_pk:.1} us):"
        );
        for (name, nginx, floor) in floors {
            let pk = match name {
                "full" => full_pk,
                "resumed" => resumed_pk,
                _ => 0.0,
            };
            println!(
                "  {name}: {:.1} us/op = {:.2}x nginx",
                floor + pk,
                (floor + pk) / nginx
            );
        }
    }
    let idle = &samples[workloads.len()];
    if !idle[0].is_empty() {
        let r: [f64; 2] = [0, 1].map(|s| med(&idle[s], |x| x.rss_per_conn));
        println!(
            "\nidle keep-alive mTLS connections ({} held): server RSS per connection gateway {:.2} KiB, nginx {:.2} KiB, ratio {:.2}",
            o.idle,
            r[0],
            r[1],
            r[0] / r[1]
        );
    }
    Ok(())
}
