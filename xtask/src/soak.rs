//! `cargo xtask soak MINUTES`: mixed traffic against a release gateway, watching its memory
//! and file descriptors.
//!
//! The gateway (release build, a dev PKI, revocation from the dev CA's CRL, a body-draining
//! HTTP backend run here) gets, all at once for the whole run:
//!
//! * full handshakes, resumed handshakes and keep-alive requests (`loadgen`, 2 connections
//!   each);
//! * bad certificates: curl with a client certificate of another CA, and with none;
//! * slowloris: raw TCP connections that dribble a ClientHello one byte a second, and TLS
//!   connections (openssl s_client) that dribble a request head;
//! * big bodies: 8 MiB POSTs with curl.
//!
//! Every 5 s it samples the gateway's RSS (`VmRSS`) and open descriptors
//! (`/proc/PID/fd`) and prints them. After the run it stops the load, waits for the
//! connections to drain, samples again and checks the bounds in [`Bounds`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;

/// What the soak accepts.
///
/// * RSS: the last quarter's highest sample may exceed the RSS at the end of the warm-up
///   (the first quarter) by at most `rss_growth_mib` MiB. Warm-up fills what a steady load
///   legitimately holds: per-worker pools and buffers, the revocation cache, the allocator's
///   arenas, TLS session state; after it, a process without leaks stays flat under the
///   same load. 32 MiB is four times the noise seen in quiet runs (see docs/SOAK.md) and
///   catches a leak of ~300 bytes per connection over a 2-minute run at the loopback rates
///   of a 2-core CI machine (~100,000 connections).
/// * Descriptors: after the load stops and the gateway's deadlines have passed (12 s: the
///   10 s handshake deadline of the slowloris connections plus margin), no client
///   connection may be open, the backend connection pool may keep at most
///   `max_pooled_upstream` idle keep-alive connections (they close after the pool's idle
///   timeout, 90 s), and every other descriptor count must be back to the idle count before
///   the load plus `fd_slack` (lazily opened files).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Allowed RSS growth after warm-up, MiB.
    pub rss_growth_mib: u64,
    /// Allowed descriptors (other than backend connections) above the idle count after the
    /// drain.
    pub fd_slack: usize,
    /// Idle keep-alive connections to the backend allowed after the drain.
    pub max_pooled_upstream: usize,
}

/// The bounds `cargo xtask test` enforces.
pub const CI_BOUNDS: Bounds = Bounds {
    rss_growth_mib: 32,
    fd_slack: 4,
    max_pooled_upstream: 32,
};

/// One sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: u64,
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32, start: Instant) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("gateway process {pid} gone"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("reading /proc/{pid}/fd"))?
        .count();
    Ok(Sample {
        secs: start.elapsed().as_secs(),
        rss_kib,
        fds,
    })
}

/// The gateway's descriptors after the drain, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct FdKinds {
    /// Connections accepted on the gateway's port, still open.
    clients: usize,
    /// Connections to the backend (the keep-alive pool).
    upstream: usize,
    /// Everything else (listening sockets, files, eventfds, ...).
    other: usize,
}

/// Socket inode -> (local port, remote port, TCP state) from `/proc/PID/net/tcp{,6}`.
fn tcp_sockets(pid: u32) -> std::collections::HashMap<u64, (u16, u16, u8)> {
    let mut out = std::collections::HashMap::new();
    for f in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() < 10 {
                continue;
            }
            let port = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0)
            };
            let state = u8::from_str_radix(w[3], 16).unwrap_or(0);
            if let Ok(inode) = w[9].parse() {
                out.insert(inode, (port(w[1]), port(w[2]), state));
            }
        }
    }
    out
}

fn fd_kinds(pid: u32, gw_port: u16, backend_port: u16) -> Result<FdKinds> {
    let socks = tcp_sockets(pid);
    let mut k = FdKinds::default();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        let t = target.to_string_lossy();
        let inode = t
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|i| i.parse::<u64>().ok());
        match inode.and_then(|i| socks.get(&i)) {
            // 0x0A: LISTEN.
            Some((l, _, st)) if *l == gw_port && *st != 0x0A => k.clients += 1,
            Some((_, r, _)) if *r == backend_port => k.upstream += 1,
            _ => k.other += 1,
        }
    }
    Ok(k)
}

/// An HTTP/1.1 backend that reads (and discards) each request's body and answers 200, with
/// keep-alive. Enough for the gateway's forwarding path; runs until the process ends.
fn sink_backend() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_sink(s);
            });
        }
    });
    Ok(port)
}

fn serve_sink(s: TcpStream) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    loop {
        let mut len = 0usize;
        let mut chunked = false;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                std::io::copy(&mut (&mut r).take(n as u64 + 2), &mut std::io::sink())?;
                if n == 0 {
                    break;
                }
            }
        } else {
            std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())?;
        }
        w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n",
        )?;
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command in a loop until `stop`; counts successes and failures.
fn repeat(
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    pause: Duration,
    make: impl Fn() -> Command + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let good = make()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(pause);
        }
    })
}

/// Counters of the traffic the soak drives itself.
#[derive(Default)]
struct Tally {
    big_ok: Arc<AtomicU64>,
    big_failed: Arc<AtomicU64>,
    bad_refused: Arc<AtomicU64>,
    bad_served: Arc<AtomicU64>,
    slow_closed: Arc<AtomicU64>,
}

/// Runs the soak for `minutes` and checks `bounds`.
///
/// # Errors
/// A build or start-up failure, or growth beyond the bounds.
pub fn soak(root: &Path, minutes: f64, bounds: Bounds) -> Result<()> {
    let secs = (minutes * 60.0).round().max(20.0) as u64;
    let (bin, loadgen) = crate::build_gateway_and(root, "loadgen")?;
    let dir = root.join("target/soak");
    let _ = std::fs::remove_dir_all(&dir);
    let pki = dir.join("pki");
    let other = dir.join("other-pki");
    for d in [&pki, &other] {
        run(Command::new(&bin)
            .arg("dev-pki")
            .arg(d)
            .stdout(Stdio::null()))?;
    }
    // The gateway drops to `nobody` when run as root: it re-reads the CRL after that.
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [&dir, &pki] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let backend = sink_backend()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let user = if is_root() { "user = \"nobody\"\n" } else { "" };
    let p = |f: &str| format!("{:?}", pki.join(f).display().to_string());
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nworkers = 2\nmetrics_interval_secs = 0\nshutdown_grace_secs = 2\n{user}\n\
             [[listener]]\nname = \"soak\"\nbind = \"127.0.0.1:{port}\"\n\
             backend = \"http://127.0.0.1:{backend}\"\nserver_cert = {}\nserver_key = {}\n\
             trusted_cas = [{}]\n[listener.revocation]\norder = \"crl-only\"\ncrl_files = [{}]\n",
            p("server.pem"),
            p("server.key"),
            p("ca.pem"),
            p("ca.crl.pem"),
        ),
    )?;
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![b'x'; 8 << 20])?;

    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new(&bin)
            .args(["serve", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the gateway")?,
    );
    let pid = procs.0[0].id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the gateway did not listen; see {}",
                dir.join("gateway.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let idle = sample(pid, start)?;
    let idle_kinds = fd_kinds(pid, port, backend)?;
    println!(
        "soak: gateway pid {pid} on 127.0.0.1:{port} for {secs} s; idle RSS {} MiB, {} fds",
        idle.rss_kib / 1024,
        idle.fds
    );

    let stop = Arc::new(AtomicBool::new(false));
    let t = Tally::default();
    let mut threads = Vec::new();
    // Full, resumed, keep-alive: loadgen for the whole run.
    let mut loadgens = Vec::new();
    for mode in ["handshake", "resume", "keepalive"] {
        let c = Command::new(&loadgen)
            .args(["--addr", &format!("127.0.0.1:{port}"), "--mode", mode])
            .args(["--connections", "2", "--seconds", &secs.to_string()])
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join("client.pem"))
            .arg("--key")
            .arg(pki.join("client.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting loadgen")?;
        loadgens.push((mode, c));
    }
    let url = format!("https://localhost:{port}/");
    // Bad certificates: another CA's client certificate, and none (SENSITIVE).
    for with_cert in [true, false] {
        let (pki, other, url) = (pki.clone(), other.clone(), url.clone());
        threads.push(repeat(
            stop.clone(),
            t.bad_served.clone(),
            t.bad_refused.clone(),
            Duration::from_millis(200),
            move || {
                let mut c = Command::new("curl");
                c.args(["-sS", "-o", "/dev/null", "--max-time", "5", "--cacert"])
                    .arg(pki.join("ca.pem"));
                if with_cert {
                    c.arg("--cert")
                        .arg(other.join("client.pem"))
                        .arg("--key")
                        .arg(other.join("client.key"));
                }
                c.arg(&url);
                c
            },
        ));
    }
    // Big bodies: 8 MiB POSTs.
    {
        let (pki, big, url) = (pki.clone(), big.clone(), url.clone());
        threads.push(repeat(
            stop.clone(),
            t.big_ok.clone(),
            t.big_failed.clone(),
            Duration::from_millis(100),
            move || {
                let mut c = Command::new("curl");
                c.args([
                    "-sS",
                    "-f",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "30",
                    "--cacert",
                ])
                .arg(pki.join("ca.pem"))
                .arg("--cert")
                .arg(pki.join("client.pem"))
                .arg("--key")
                .arg(pki.join("client.key"))
                .arg("--data-binary")
                .arg(format!("@{}", big.display()))
                .arg(&url);
                c
            },
        ));
    }
    // Slowloris before TLS: a ClientHello header, one byte a second, 8 at a time.
    for _ in 0..8 {
        let (stop, closed) = (stop.clone(), t.slow_closed.clone());
        threads.push(std::thread::spawn(move || {
            let hello: &[u8] = &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
                let mut buf = [0u8; 64];
                for b in hello.iter().cycle() {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    // A read that returns (0 bytes or an alert) means the gateway closed.
                    match s.read(&mut buf) {
                        Ok(_) => break,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Slowloris after TLS: openssl s_client dribbling a request head, 4 at a time.
    for _ in 0..4 {
        let (stop, closed, pki) = (stop.clone(), t.slow_closed.clone(), pki.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let child = Command::new("openssl")
                    .args([
                        "s_client",
                        "-quiet",
                        "-connect",
                        &format!("127.0.0.1:{port}"),
                    ])
                    .args(["-servername", "localhost", "-CAfile"])
                    .arg(pki.join("ca.pem"))
                    .arg("-cert")
                    .arg(pki.join("client.pem"))
                    .arg("-key")
                    .arg(pki.join("client.key"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                };
                if let Some(mut stdin) = child.stdin.take() {
                    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                    for b in head.iter().chain(std::iter::repeat(&b'a')) {
                        if stop.load(Ordering::Relaxed)
                            || stdin.write_all(&[*b]).and_then(|()| stdin.flush()).is_err()
                            || child.try_wait().ok().flatten().is_some()
                        {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let mut samples = vec![idle];
    println!("{:>6} {:>9} {:>5}", "secs", "RSS MiB", "fds");
    while start.elapsed().as_secs() < secs {
        std::thread::sleep(Duration::from_secs(5));
        let s = sample(pid, start)?;
        println!(
            "{:>6} {:>9.1} {:>5}",
            s.secs,
            s.rss_kib as f64 / 1024.0,
            s.fds
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let mut summaries = Vec::new();
    for (mode, c) in loadgens {
        let out = c.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        summaries.push(format!("{mode}: {}", text.lines().last().unwrap_or("")));
    }
    for th in threads {
        let _ = th.join();
    }
    std::thread::sleep(Duration::from_secs(12));
    let drained = sample(pid, start)?;
    let drained_kinds = fd_kinds(pid, port, backend)?;
    println!(
        "{:>6} {:>9.1} {:>5}  (load stopped, drained)",
        drained.secs,
        drained.rss_kib as f64 / 1024.0,
        drained.fds
    );
    for s in &summaries {
        println!("soak: {s}");
    }
    let n = |a: &Arc<AtomicU64>| a.load(Ordering::Relaxed);
    println!(
        "soak: 8 MiB POSTs {} ok / {} failed; bad-certificate attempts {} refused / {} served; slowloris connections cycled {}",
        n(&t.big_ok),
        n(&t.big_failed),
        n(&t.bad_refused),
        n(&t.bad_served),
        n(&t.slow_closed)
    );

    // Bounds.
    let q = samples.len() / 4;
    let warm = samples[q.max(1)].rss_kib;
    let late = samples[samples.len() - q.max(1)..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let growth_mib = late.saturating_sub(warm) as f64 / 1024.0;
    println!(
        "soak: RSS after warm-up {:.1} MiB, highest in the last quarter {:.1} MiB: growth {growth_mib:.1} MiB (bound {} MiB)",
        warm as f64 / 1024.0,
        late as f64 / 1024.0,
        bounds.rss_growth_mib,
    );
    println!(
        "soak: descriptors idle {} ({idle_kinds:?}) -> drained {} ({drained_kinds:?}); bounds: 0 clients, <= {} pooled backend connections, other <= idle + {}",
        idle.fds,
        drained.fds,
        bounds.max_pooled_upstream,
        bounds.fd_slack
    );
    let mut errors = Vec::new();
    if growth_mib > bounds.rss_growth_mib as f64 {
        errors.push(format!("RSS grew {growth_mib:.1} MiB after warm-up"));
    }
    if drained_kinds.clients > 0 {
        errors.push(format!(
            "{} client connections still open after the drain",
            drained_kinds.clients
        ));
    }
    if drained_kinds.upstream > bounds.max_pooled_upstream {
        errors.push(format!(
            "{} backend connections after the drain",
            drained_kinds.upstream
        ));
    }
    if drained_kinds.other > idle_kinds.other + bounds.fd_slack {
        errors.push(format!(
            "{} other descriptors after the drain, {} idle",
            drained_kinds.other, idle_kinds.other
        ));
    }
    if n(&t.bad_served) > 0 {
        errors.push(format!(
            "{} bad-certificate requests were served",
            n(&t.bad_served)
        ));
    }
    if n(&t.big_ok) == 0 {
        errors.push("no 8 MiB POST succeeded".into());
    }
    if summaries.iter().any(|s| s.contains(" 0 ok")) {
        errors.push("a loadgen mode got no request through".into());
    }
    if !errors.is_empty() {
        bail!("soak failed: {}", errors.join("; "));
    }
    println!("soak: OK");
    Ok(())
}

/// Parses `MINUTES` (fractions allowed).
pub fn minutes(arg: Option<&String>) -> Result<f64> {
    match arg {
        None => Ok(2.0),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|m| *m > 0.0)
            .with_context(|| format!("MINUTES must be a positive number, not {s:?}")),
    }
}
