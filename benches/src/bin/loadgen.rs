//! `loadgen`: a bounded mutual-TLS load generator for the gateway and its peers (nginx,
//! HAProxy, Caddy) on this machine.
//!
//! ```text
//! loadgen --addr 127.0.0.1:8443 --ca ca.pem --cert client.pem --key client.key \
//!         [--mode handshake|keepalive|resume] [--connections 32] [--seconds 10] \
//!         [--max-requests N] [--threads 1] [--path /]
//! ```
//! `handshake`: a new TCP + full TLS handshake per request (Connection: close);
//! `resume`: as handshake but resuming TLS sessions; `keepalive`: requests on long-lived
//! connections. Prints a human summary and one JSON line (rate, latency percentiles, errors).
//! Only loopback or namespace addresses are meant as targets; runs are bounded in time and count.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Handshake,
    Resume,
    Keepalive,
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
    threads: usize,
    path: String,
    server_name: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        addr: "127.0.0.1:8443".parse()?,
        ca: PathBuf::new(),
        cert: None,
        key: None,
        mode: Mode::Handshake,
        connections: 32,
        seconds: 10,
        max_requests: u64::MAX,
        threads: 1,
        path: "/".into(),
        server_name: "localhost".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?.parse().context("--addr")?,
            "--ca" => a.ca = val()?.into(),
            "--cert" => a.cert = Some(val()?.into()),
            "--key" => a.key = Some(val()?.into()),
            "--mode" => {
                a.mode = match val()?.as_str() {
                    "handshake" => Mode::Handshake,
                    "resume" => Mode::Resume,
                    "keepalive" => Mode::Keepalive,
                    other => bail!("unknown mode {other:?}"),
                }
            }
            "--connections" => a.connections = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--max-requests" => a.max_requests = val()?.parse()?,
            "--threads" => a.threads = val()?.parse()?,
            "--path" => a.path = val()?,
            "--server-name" => a.server_name = val()?,
            "-h" | "--help" => {
                println!("see the module documentation of benches/src/bin/loadgen.rs");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other:?}"),
        }
    }
    if a.ca.as_os_str().is_empty() {
        bail!("--ca is required");
    }
    if a.seconds == 0 || a.seconds > 600 {
        bail!("--seconds must be 1..=600 (runs are bounded)");
    }
    Ok(a)
}

fn client_config(a: &Args) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(gateway::tls::policy::base_provider(
        gateway::tls::policy::DEFAULT_PROVIDER,
    )?);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&a.ca).context("--ca")? {
        roots.add(c.context("--ca")?)?;
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
    if a.mode == Mode::Handshake {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

struct Shared {
    stop: AtomicBool,
    issued: AtomicU64,
    errors: AtomicU64,
}

async fn one_connection(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name.clone(), tcp).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn request(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
    host: &str,
    close: bool,
) -> Result<()> {
    let mut req = hyper::Request::get(path).header("host", host);
    if close {
        req = req.header("connection", "close");
    }
    let resp = send.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

async fn client_task(a: Arc<Args>, connector: TlsConnector, shared: Arc<Shared>) -> Vec<u64> {
    let name = match ServerName::try_from(a.server_name.clone()) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut lat = Vec::new();
    let mut keep: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.issued.fetch_add(1, Ordering::Relaxed) >= a.max_requests {
            break;
        }
        let t = Instant::now();
        let res = async {
            match a.mode {
                Mode::Keepalive => {
                    if keep.as_ref().is_none_or(|s| s.is_closed()) {
                        keep = Some(one_connection(&connector, a.addr, &name).await?);
                    }
                    let s = keep.as_mut().context("connection")?;
                    s.ready().await?;
                    request(s, &a.path, &a.server_name, false).await
                }
                Mode::Handshake | Mode::Resume => {
                    let mut s = one_connection(&connector, a.addr, &name).await?;
                    request(&mut s, &a.path, &a.server_name, true).await
                }
            }
        }
        .await;
        match res {
            Ok(()) => lat.push(t.elapsed().as_micros() as u64),
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                keep = None;
            }
        }
    }
    lat
}

fn main() -> Result<()> {
    let a = Arc::new(parse_args()?);
    let cfg = client_config(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let started = Instant::now();
    let lat: Vec<u64> = rt.block_on(async {
        let connector = TlsConnector::from(cfg);
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
    let elapsed = started.elapsed().as_secs_f64();
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for v in &lat {
        h.saturating_record(*v);
    }
    let ok = lat.len() as u64;
    let errors = shared.errors.load(Ordering::Relaxed);
    let rate = ok as f64 / elapsed;
    let mode = format!("{:?}", a.mode).to_lowercase();
    eprintln!(
        "{mode}: {ok} ok, {errors} errors in {elapsed:.2} s = {rate:.0} req/s; latency us p50 {} p90 {} p99 {} max {}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max()
    );
    println!(
        "{}",
        serde_json::json!({
            "mode": mode, "connections": a.connections, "ok": ok, "errors": errors,
            "seconds": elapsed, "rate": rate,
            "p50_us": h.value_at_quantile(0.5), "p90_us": h.value_at_quantile(0.9),
            "p99_us": h.value_at_quantile(0.99), "max_us": h.max(),
        })
    );
    if ok == 0 {
        bail!("no request succeeded ({errors} errors)");
    }
    Ok(())
}
