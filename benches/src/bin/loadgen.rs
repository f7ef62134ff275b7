//! `loadgen`: a bounded mutual-TLS load generator for the gateway and nginx on this machine,
//! plus the plain HTTP backend both proxy to.
//!
//! ```text
//! loadgen --addr 127.0.0.1:8443 --ca ca.pem --cert client.pem --key client.key \
//!         [--mode full|resumed|keepalive|bulk|idle-hold] [--connections 32] [--seconds 10] \
//!         [--requests-per-conn N] [--body-size BYTES] [--direction down|up] \
//!         [--hold N] [--server-pid PID[,PID..]] [--json FILE] [--max-requests N] \
//!         [--threads 1] [--path /] [--label NAME] [--plain]
//! loadgen backend --listen 127.0.0.1:9000
//! loadgen floor --local 127.0.0.1:18453 --proxy 127.0.0.1:18454 --backend 127.0.0.1:9000
//! loadgen crypto [--rounds 15] [--batch 200]
//! ```
//!
//! Modes:
//! - `full` (alias `handshake`): a new TCP connection and a full TLS handshake per request
//!   (`Connection: close`, resumption off).
//! - `resumed` (alias `resume`): as `full`, resuming the TLS session (tickets).
//! - `keepalive`: requests on persistent connections (`--requests-per-conn`, 0 = unlimited).
//! - `bulk`: one `--body-size` body per request on persistent connections, `--direction down`
//!   (GET `/bytes/N`, the backend sends N bytes) or `up` (POST N bytes to `/sink`).
//! - `idle-hold`: opens `--hold` connections (`--connections` at a time), sends one request on
//!   each (so the server's HTTP layer is set up and idle), holds them all for `--seconds`, and
//!   reports the server's RSS growth per connection.
//!
//! `--server-pid` names the server's process(es); their descendants are included (nginx
//! workers). loadgen reads utime+stime from `/proc/PID/stat` and `VmRSS` from
//! `/proc/PID/status` before and after the run and reports server CPU per operation and RSS
//! per held connection. Output: a human table on stderr and one JSON object on stdout (and in
//! `--json FILE` if given).
//!
//! `--plain` speaks HTTP/1.1 over TCP without TLS (`--ca` not needed): the modes above
//! against `loadgen floor` measure what a server costs on this machine without TLS.
//!
//! `loadgen floor` is that server, the floor under any terminator: on `--local` it answers
//! as the backend does (plain HTTP, hyper, one thread); on `--proxy` it relays each
//! connection to `--backend` byte for byte (no TLS, no HTTP parsing).
//!
//! `loadgen crypto` times the public-key operations of a TLS 1.3 handshake with the
//! gateway's provider (see `gateway_benches::floor`) and prints them as JSON.
//!
//! `loadgen backend` serves plain HTTP/1.1 for the proxy benchmarks: `GET /bytes/N` answers N
//! bytes, `POST /sink` reads the body and answers its length, anything else answers `ok`.
//!
//! Only loopback or namespace addresses are meant as targets; runs are bounded in time and
//! count.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Resumed,
    Keepalive,
    Bulk,
    IdleHold,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resumed => "resumed",
            Mode::Keepalive => "keepalive",
            Mode::Bulk => "bulk",
            Mode::IdleHold => "idle-hold",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Down,
    Up,
}

struct Args {
    addr: SocketAddr,
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    mode: Mode,
    connections: usize,
    seconds: u64,
    max_requests: u64,
    requests_per_conn: u64,
    body_size: u64,
    direction: Direction,
    hold: usize,
    server_pids: Vec<u32>,
    json: Option<PathBuf>,
    threads: usize,
    path: String,
    server_name: String,
    label: String,
    plain: bool,
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix("GiB") {
        (n, 1 << 30)
    } else {
        (s, 1)
    };
    let n: u64 = num.trim().parse().with_context(|| format!("size {s:?}"))?;
    n.checked_mul(mul).context("size overflows")
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        addr: "127.0.0.1:8443".parse()?,
        ca: PathBuf::new(),
        cert: None,
        key: None,
        mode: Mode::Full,
        connections: 32,
        seconds: 10,
        max_requests: u64::MAX,
        requests_per_conn: 0,
        body_size: 1 << 20,
        direction: Direction::Down,
        hold: 1000,
        server_pids: Vec::new(),
        json: None,
        threads: 1,
        path: "/".into(),
        server_name: "localhost".into(),
        label: String::new(),
        plain: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().context("--addr")?,
            "--ca" => a.ca = val()?.into(),
            "--cert" => a.cert = Some(val()?.into()),
            "--key" => a.key = Some(val()?.into()),
            "--mode" => {
                a.mode = match val()?.as_str() {
                    "full" | "handshake" => Mode::Full,
                    "resumed" | "resume" => Mode::Resumed,
                    "keepalive" => Mode::Keepalive,
                    "bulk" => Mode::Bulk,
                    "idle-hold" => Mode::IdleHold,
                    other => {
                        bail!("unknown mode {other:?} (full, resumed, keepalive, bulk, idle-hold)")
                    }
                }
            }
            "--connections" => a.connections = val()?.parse().context("--connections")?,
            "--seconds" => a.seconds = val()?.parse().context("--seconds")?,
            "--max-requests" => a.max_requests = val()?.parse().context("--max-requests")?,
            "--requests-per-conn" => {
                a.requests_per_conn = val()?.parse().context("--requests-per-conn")?
            }
            "--body-size" => a.body_size = parse_size(&val()?)?,
            "--direction" => {
                a.direction = match val()?.as_str() {
                    "down" => Direction::Down,
                    "up" => Direction::Up,
                    other => bail!("unknown direction {other:?} (down, up)"),
                }
            }
            "--hold" => a.hold = val()?.parse().context("--hold")?,
            "--server-pid" => {
                for p in val()?.split(',') {
                    a.server_pids
                        .push(p.trim().parse().context("--server-pid")?);
                }
            }
            "--json" => a.json = Some(val()?.into()),
            "--threads" => a.threads = val()?.parse().context("--threads")?,
            "--path" => a.path = val()?,
            "--server-name" => a.server_name = val()?,
            "--label" => a.label = val()?,
            "--plain" => a.plain = true,
            "-h" | "--help" => {
                println!("see the module documentation of benches/src/bin/loadgen.rs");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other:?}"),
        }
    }
    if a.ca.as_os_str().is_empty() && !a.plain {
        bail!("--ca is required (or --plain)");
    }
    if a.seconds == 0 || a.seconds > 600 {
        bail!("--seconds must be 1..=600 (runs are bounded)");
    }
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if a.mode == Mode::IdleHold && (a.hold == 0 || a.hold > 100_000) {
        bail!("--hold must be 1..=100000");
    }
    Ok(a)
}

fn client_config(a: &Args) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(gateway::tls::policy::base_provider(
        gateway::tls::policy::DEFAULT_PROVIDER,
    )?);
    let mut roots = rustls::RootCertStore::empty();
    if !a.plain {
        for c in CertificateDer::pem_file_iter(&a.ca).context("--ca")? {
            roots.add(c.context("--ca")?)?;
        }
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut cfg = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(c)
                .context("--cert")?
                .collect::<Result<_, _>>()
                .context("--cert")?;
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(k).context("--key")?)?
        }
        _ => b.with_no_client_auth(),
    };
    if a.mode == Mode::Full {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A request or response body of `left` bytes, sent in chunks of one shared buffer.
struct Repeat {
    left: u64,
    chunk: Bytes,
}

impl Repeat {
    fn new(len: u64) -> Self {
        static BUF: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        Repeat {
            left: len,
            chunk: Bytes::from_static(&BUF),
        }
    }
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Repeat>;

struct Shared {
    stop: AtomicBool,
    issued: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(format!("{e:#}"));
        }
    }
}

async fn one_connection(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
    plain: bool,
) -> Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if plain {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(send);
    }
    let tls = connector.connect(name.clone(), tcp).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Sends one request; returns the number of body bytes moved (either way).
async fn request(a: &Args, send: &mut Sender, close: bool) -> Result<u64> {
    send.ready().await?;
    let (method, path, body) = match (a.mode, a.direction) {
        (Mode::Bulk, Direction::Down) => ("GET", format!("/bytes/{}", a.body_size), 0),
        (Mode::Bulk, Direction::Up) => ("POST", "/sink".to_string(), a.body_size),
        _ => ("GET", a.path.clone(), 0),
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &a.server_name);
    if close {
        req = req.header("connection", "close");
    }
    if body > 0 {
        req = req.header("content-length", body);
    }
    let resp = send.send_request(req.body(Repeat::new(body))?).await?;
    let status = resp.status();
    let mut got = 0u64;
    let mut b = resp.into_body();
    while let Some(f) = b.frame().await {
        if let Some(d) = f?.data_ref() {
            got += d.len() as u64;
        }
    }
    if !status.is_success() {
        bail!("status {status}");
    }
    if a.mode == Mode::Bulk && a.direction == Direction::Down && got != a.body_size {
        bail!("short body: {got} of {} bytes", a.body_size);
    }
    Ok(got + body)
}

async fn client_task(a: Arc<Args>, connector: TlsConnector, shared: Arc<Shared>) -> Vec<u64> {
    let name = match ServerName::try_from(a.server_name.clone()) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut lat = Vec::new();
    let mut keep: Option<(Sender, u64)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.issued.fetch_add(1, Ordering::Relaxed) >= a.max_requests {
            break;
        }
        let t = Instant::now();
        let res = async {
            match a.mode {
                Mode::Keepalive | Mode::Bulk => {
                    let fresh = match &keep {
                        None => true,
                        Some((s, n)) => {
                            s.is_closed() || (a.requests_per_conn > 0 && *n >= a.requests_per_conn)
                        }
                    };
                    if fresh {
                        keep = Some((one_connection(&connector, a.addr, &name, a.plain).await?, 0));
                    }
                    let (s, n) = keep.as_mut().context("connection")?;
                    *n += 1;
                    request(&a, s, false).await
                }
                Mode::Full | Mode::Resumed | Mode::IdleHold => {
                    let mut s = one_connection(&connector, a.addr, &name, a.plain).await?;
                    request(&a, &mut s, true).await
                }
            }
        }
        .await;
        match res {
            Ok(n) => {
                lat.push(t.elapsed().as_micros() as u64);
                shared.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                shared.error(&e);
                keep = None;
            }
        }
    }
    lat
}

/// CPU time (utime + stime, in clock ticks) and RSS (KiB) of a process tree.
#[derive(Debug, Default, Clone, Copy)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
}

fn descendants(pid: u32, out: &mut Vec<u32>) {
    out.push(pid);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    descendants(c, out);
                }
            }
        }
    }
}

fn sample(pids: &[u32]) -> Result<ProcSample> {
    let mut all = Vec::new();
    for p in pids {
        descendants(*p, &mut all);
    }
    let mut s = ProcSample::default();
    for pid in all {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("/proc/PID/stat format")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f.get(11).context("utime")?.parse()?;
        let stime: u64 = f.get(12).context("stime")?.parse()?;
        s.cpu_ticks += utime + stime;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        if let Some(l) = status.lines().find(|l| l.starts_with("VmRSS:")) {
            s.rss_kib += l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(s)
}

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second
/// for user space whatever the kernel's own HZ.
fn clock_ticks() -> u64 {
    100
}

/// Opens `hold` connections, one request each, holds them for `seconds`.
async fn idle_hold(
    a: Arc<Args>,
    connector: TlsConnector,
    shared: Arc<Shared>,
) -> Result<(Vec<u64>, Vec<Sender>, ProcSample, ProcSample)> {
    let name = ServerName::try_from(a.server_name.clone())?;
    let before = if a.server_pids.is_empty() {
        ProcSample::default()
    } else {
        sample(&a.server_pids)?
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(a.connections));
    let mut tasks = Vec::with_capacity(a.hold);
    for _ in 0..a.hold {
        let permit = sem.clone().acquire_owned().await?;
        let (a, connector, name, shared) =
            (a.clone(), connector.clone(), name.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let res = async {
                let mut s = one_connection(&connector, a.addr, &name, a.plain).await?;
                request(&a, &mut s, false).await?;
                Ok::<_, anyhow::Error>(s)
            }
            .await;
            match res {
                Ok(s) => Some((t.elapsed().as_micros() as u64, s)),
                Err(e) => {
                    shared.error(&e);
                    None
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let mut held = Vec::new();
    for t in tasks {
        if let Ok(Some((l, s))) = t.await {
            lat.push(l);
            held.push(s);
        }
    }
    // Let the server settle (buffers released after the last request), then sample.
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let after = if a.server_pids.is_empty() {
        ProcSample::default()
    } else {
        sample(&a.server_pids)?
    };
    Ok((lat, held, before, after))
}

async fn serve_backend(listen: SocketAddr) -> Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("loadgen backend listening on {}", l.local_addr()?);
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let resp = if let Some(n) = path.strip_prefix("/bytes/") {
                        let n: u64 = n.parse().unwrap_or(0);
                        hyper::Response::new(Repeat::new(n).boxed())
                    } else if path == "/sink" {
                        let mut body = req.into_body();
                        let mut got = 0u64;
                        while let Some(Ok(f)) = body.frame().await {
                            if let Some(d) = f.data_ref() {
                                got += d.len() as u64;
                            }
                        }
                        hyper::Response::new(
                            http_body_util::Full::new(Bytes::from(format!("{got}\n"))).boxed(),
                        )
                    } else {
                        hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"ok\n")).boxed(),
                        )
                    };
                    Ok::<_, Infallible>(resp)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

/// Relays each connection on `listen` to `backend`, byte for byte (the floor's proxy).
async fn relay(listen: SocketAddr, backend: SocketAddr) -> Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("loadgen floor relaying {} to {backend}", l.local_addr()?);
    loop {
        let (mut c, _) = l.accept().await?;
        let _ = c.set_nodelay(true);
        tokio::spawn(async move {
            if let Ok(mut b) = tokio::net::TcpStream::connect(backend).await {
                let _ = b.set_nodelay(true);
                // The gateway's own read size (64 KiB), so bulk runs compare like for like.
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut c, &mut b, 64 << 10, 64 << 10)
                        .await;
            }
        });
    }
}

/// `loadgen floor --local A --proxy B --backend C`.
fn floor_main(mut argv: impl Iterator<Item = String>) -> Result<()> {
    let (mut local, mut proxy, mut backend): (Option<SocketAddr>, _, _) = (None, None, None);
    while let Some(f) = argv.next() {
        let mut val = || -> Result<SocketAddr> {
            argv.next()
                .with_context(|| format!("{f} needs a value"))?
                .parse()
                .with_context(|| f.clone())
        };
        match f.as_str() {
            "--local" => local = Some(val()?),
            "--proxy" => proxy = Some(val()?),
            "--backend" => backend = Some(val()?),
            other => bail!("unknown floor flag {other:?}"),
        }
    }
    let (local, proxy, backend) = (
        local.context("--local is required")?,
        proxy.context("--proxy is required")?,
        backend.context("--backend is required")?,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::try_join!(serve_backend(local), relay(proxy, backend))?;
        Ok(())
    })
}

/// `loadgen crypto [--rounds N] [--batch N]`.
fn crypto_main(mut argv: impl Iterator<Item = String>) -> Result<()> {
    let (mut rounds, mut batch) = (15usize, 200usize);
    while let Some(f) = argv.next() {
        let v: usize = argv
            .next()
            .with_context(|| format!("{f} needs a value"))?
            .parse()
            .with_context(|| f.clone())?;
        match f.as_str() {
            "--rounds" => rounds = v.clamp(1, 1000),
            "--batch" => batch = v.clamp(1, 100_000),
            other => bail!("unknown crypto flag {other:?}"),
        }
    }
    let provider = gateway::tls::policy::base_provider(gateway::tls::policy::DEFAULT_PROVIDER)?;
    let c = gateway_benches::floor::crypto_costs(&provider, rounds, batch)?;
    eprintln!(
        "X25519 {:.1} us, ECDSA P-256 sign {:.1} us, verify {:.1} us: full handshake {:.1} us, resumed {:.1} us of public-key work",
        c.x25519_us,
        c.p256_sign_us,
        c.p256_verify_us,
        c.full_us(),
        c.resumed_us()
    );
    println!(
        "{}",
        serde_json::json!({
            "x25519_us": c.x25519_us,
            "p256_sign_us": c.p256_sign_us,
            "p256_verify_us": c.p256_verify_us,
            "full_us": c.full_us(),
            "resumed_us": c.resumed_us(),
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1).peekable();
    match argv.peek().map(String::as_str) {
        Some("floor") => {
            argv.next();
            return floor_main(argv);
        }
        Some("crypto") => {
            argv.next();
            return crypto_main(argv);
        }
        _ => {}
    }
    if argv.peek().map(String::as_str) == Some("backend") {
        argv.next();
        let mut listen: SocketAddr = "127.0.0.1:9000".parse()?;
        while let Some(f) = argv.next() {
            match f.as_str() {
                "--listen" => listen = argv.next().context("--listen needs a value")?.parse()?,
                other => bail!("unknown backend flag {other:?}"),
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(serve_backend(listen));
    }
    let a = Arc::new(parse_args(argv)?);
    let cfg = client_config(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        last_error: std::sync::Mutex::new(None),
    });
    let connector = TlsConnector::from(cfg);
    let started = Instant::now();
    let mut held_conns = 0usize;
    let (lat, before, after) = if a.mode == Mode::IdleHold {
        let (lat, held, before, after) =
            rt.block_on(idle_hold(a.clone(), connector, shared.clone()))?;
        held_conns = held.len();
        drop(held);
        (lat, before, after)
    } else {
        let before = if a.server_pids.is_empty() {
            ProcSample::default()
        } else {
            sample(&a.server_pids)?
        };
        let lat: Vec<u64> = rt.block_on(async {
            let tasks: Vec<_> = (0..a.connections)
                .map(|_| tokio::spawn(client_task(a.clone(), connector.clone(), shared.clone())))
                .collect();
            let s2 = shared.clone();
            let secs = a.seconds;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                s2.stop.store(true, Ordering::Relaxed);
            });
            let mut all = Vec::new();
            for t in tasks {
                if let Ok(v) = t.await {
                    all.extend(v);
                }
            }
            all
        });
        let after = if a.server_pids.is_empty() {
            ProcSample::default()
        } else {
            sample(&a.server_pids)?
        };
        (lat, before, after)
    };
    let elapsed = started.elapsed().as_secs_f64();
    rt.shutdown_timeout(Duration::from_secs(1));
    report(&a, &shared, &lat, elapsed, before, after, held_conns)
}

fn report(
    a: &Args,
    shared: &Shared,
    lat: &[u64],
    elapsed: f64,
    before: ProcSample,
    after: ProcSample,
    held: usize,
) -> Result<()> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for v in lat {
        h.saturating_record(*v);
    }
    let ok = lat.len() as u64;
    let errors = shared.errors.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let rate = ok as f64 / elapsed;
    let have_pid = !a.server_pids.is_empty();
    let cpu_us =
        after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 1e6 / clock_ticks() as f64;
    let cpu_per_op = (have_pid && ok > 0).then(|| cpu_us / ok as f64);
    let cpu_per_mib = (have_pid && bytes > 0 && a.mode == Mode::Bulk)
        .then(|| cpu_us / (bytes as f64 / (1 << 20) as f64));
    let rss_delta = after.rss_kib as i64 - before.rss_kib as i64;
    let rss_per_conn =
        (have_pid && a.mode == Mode::IdleHold && held > 0).then(|| rss_delta as f64 / held as f64);
    let mode = a.mode.name();
    let opt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    eprintln!(
        "| label | mode | ok | errors | ops/s | MiB/s | p50 us | p99 us | p999 us | server CPU us/op | server CPU us/MiB | server RSS KiB | RSS KiB/conn |"
    );
    eprintln!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    eprintln!(
        "| {} | {mode} | {ok} | {errors} | {rate:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
        if a.label.is_empty() { "-" } else { &a.label },
        bytes as f64 / (1 << 20) as f64 / elapsed,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        opt(cpu_per_op, 1),
        opt(cpu_per_mib, 1),
        if have_pid {
            after.rss_kib.to_string()
        } else {
            "-".into()
        },
        opt(rss_per_conn, 2),
    );
    if let Ok(Some(e)) = shared.last_error.lock().map(|l| l.clone()) {
        eprintln!("last error: {e}");
    }
    let json = serde_json::json!({
        "label": a.label, "mode": mode, "connections": a.connections, "ok": ok,
        "errors": errors, "seconds": elapsed, "rate": rate, "bytes": bytes,
        "body_size": (a.mode == Mode::Bulk).then_some(a.body_size),
        "direction": (a.mode == Mode::Bulk).then_some(match a.direction { Direction::Down => "down", Direction::Up => "up" }),
        "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999), "max_us": h.max(),
        "server_cpu_us": have_pid.then_some(cpu_us),
        "server_cpu_us_per_op": cpu_per_op,
        "server_cpu_us_per_mib": cpu_per_mib,
        "server_rss_before_kib": have_pid.then_some(before.rss_kib),
        "server_rss_after_kib": have_pid.then_some(after.rss_kib),
        "held": (a.mode == Mode::IdleHold).then_some(held),
        "server_rss_kib_per_conn": rss_per_conn,
    });
    println!("{json}");
    if let Some(p) = &a.json {
        std::fs::write(p, format!("{json}\n")).with_context(|| format!("write {}", p.display()))?;
    }
    if ok == 0 {
        bail!("no request succeeded ({errors} errors)");
    }
    Ok(())
}
