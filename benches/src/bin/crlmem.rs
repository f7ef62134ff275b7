//! `crlmem`: what a big CRL from a certificate's distribution point costs the gateway process,
//! in time to the first answer and in resident memory (`cargo xtask crl-memory`).
//!
//! ```text
//! crlmem --gateway target/release/gateway [--entries 1000000] [--runs 3] [--settle-secs 3]
//!        [--dir target/crl-memory]
//! ```
//!
//! Once: a PKI made with rcgen (an ECDSA P-256 CA with cRLSign, a server certificate, and two
//! client certificates whose CRL distribution point names a loopback HTTP server run here),
//! and a CRL signed by the CA with `--entries` revoked serials (5-octet serials in random
//! order, as a CA lists them by revocation time: about 24 bytes of DER per entry, 24 MB for
//! 1,000,000). One of the clients is listed in it.
//!
//! Per run: a fresh gateway process (`serve`, one worker, `order = "crl-only"`, fail closed,
//! the built-in identity backend). Once it listens and has settled, its `VmRSS`
//! (`/proc/PID/status`) is read; then one mutual-TLS request with the good client is timed
//! from the TCP connect to the response head (the gateway fetches, verifies and reads the
//! CRL while the handshake waits); `VmRSS` is read right after the answer and again after
//! `--settle-secs`, with `VmHWM` (the peak). Then the listed client must be refused and the
//! good one served again from the cache: a run whose CRL was not really used fails.
//!
//! Output: one line per run and the medians (time to first answer, RSS growth after settling,
//! peak growth), in MB (10^6 bytes) and MiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

struct Args {
    gateway: PathBuf,
    entries: usize,
    runs: usize,
    settle: Duration,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        gateway: PathBuf::from("target/release/gateway"),
        entries: 1_000_000,
        runs: 3,
        settle: Duration::from_secs(3),
        dir: PathBuf::from("target/crl-memory"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => a.gateway = PathBuf::from(val()?),
            "--entries" => a.entries = val()?.parse().context("--entries")?,
            "--runs" => a.runs = val()?.parse().context("--runs")?,
            "--settle-secs" => {
                a.settle = Duration::from_secs(val()?.parse().context("--settle-secs")?)
            }
            "--dir" => a.dir = PathBuf::from(val()?),
            other => bail!(
                "unknown argument {other:?} (see the doc comment of benches/src/bin/crlmem.rs)"
            ),
        }
    }
    if a.runs == 0 || a.entries == 0 {
        bail!("--runs and --entries must be positive");
    }
    Ok(a)
}

/// The i-th revoked serial: 5 octets, first octet 0x40..=0x7f (positive, minimal), distinct
/// for every i < 2^38, in an order that looks random.
fn revoked_serial(i: u64) -> [u8; 5] {
    let x = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & ((1 << 38) - 1)) | (1 << 38);
    let b = x.to_be_bytes();
    [b[3], b[4], b[5], b[6], b[7]]
}

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_pem: String,
    server_key: String,
    good: (CertificateDer<'static>, Vec<u8>),
    listed: (CertificateDer<'static>, Vec<u8>),
    crl: Vec<u8>,
}

fn pki(crl_url: &str, entries: usize) -> Result<Pki> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "CRL Memory CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = p.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&p, &ca_key);
    let leaf = |cn: &str, serial: &[u8], server: bool| -> Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let names = if server {
            vec!["localhost".to_string()]
        } else {
            vec![]
        };
        let mut lp = CertificateParams::new(names)?;
        lp.distinguished_name.push(DnType::CommonName, cn);
        lp.serial_number = Some(SerialNumber::from_slice(serial));
        lp.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if !server {
            lp.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![crl_url.to_string()],
            }];
        }
        Ok((lp.signed_by(&key, &issuer)?, key))
    };
    let (server, skey) = leaf("localhost", &[0x01, 0x01], true)?;
    // 3 octets: never among the 5-octet revoked serials.
    let (good, gkey) = leaf("good client", &[0x01, 0x02, 0x03], false)?;
    let listed_serial = revoked_serial(entries as u64 / 2);
    let (listed, lkey) = leaf("listed client", &listed_serial, false)?;
    let now = time::OffsetDateTime::now_utc();
    let t = Instant::now();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: (0..entries as u64)
            .map(|i| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&revoked_serial(i)),
                revocation_time: now - time::Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?
    .der()
    .to_vec();
    eprintln!(
        "crlmem: {entries}-entry CRL signed by the CA: {} bytes ({:.1} MB), made in {:.1} s",
        crl.len(),
        crl.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_pem: server.pem(),
        server_key: skey.serialize_pem(),
        good: (good.der().clone(), gkey.serialize_der()),
        listed: (listed.der().clone(), lkey.serialize_der()),
        crl,
    })
}

/// A minimal HTTP/1.1 server for the CRL (`Content-Length`, one request per connection),
/// counting requests.
fn serve_crl(listener: TcpListener, body: Arc<Vec<u8>>, count: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (body, count) = (body.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = answer(s, &body, &count);
            });
        }
    });
}

fn answer(s: TcpStream, body: &[u8], count: &AtomicUsize) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("gateway process {pid} gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// One mutual-TLS `GET /` with `client`; the HTTP status, or the error text when the
/// gateway refused the connection.
fn request(
    port: u16,
    ca: &CertificateDer<'static>,
    client: &(CertificateDer<'static>, Vec<u8>),
) -> Result<std::result::Result<u16, String>> {
    let provider = Arc::new(gateway::tls::policy::base_provider("aws-lc-rs")?);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![client.0.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client.1.clone())),
        )?;
    cfg.resumption = rustls::client::Resumption::disabled();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost")?)?;
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let sent = tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    let got = sent.and_then(|()| tls.read_exact(&mut head));
    if let Err(e) = got {
        return Ok(Err(e.to_string()));
    }
    let text = String::from_utf8_lossy(&head);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    // Drain the rest so the close is clean.
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    Ok(Ok(code))
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    first_answer: Duration,
    before_kib: u64,
    after_kib: u64,
    settled_kib: u64,
    hwm_kib: u64,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn one_run(a: &Args, pki: &Pki, n: usize, crl_requests: &AtomicUsize) -> Result<Run> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = &a.dir;
    let user = if is_root() { "user = \"nobody\"\n" } else { "" };
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nworkers = 1\nmetrics_interval_secs = 0\nshutdown_grace_secs = 1\n{user}\n\
             [[listener]]\nname = \"crlmem\"\nbind = \"127.0.0.1:{port}\"\n\
             backend = \"builtin:identity\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\n\
             trusted_cas = [\"ca.pem\"]\n[listener.tls]\nversions = [\"1.3\"]\n\
             [listener.revocation]\norder = \"crl-only\"\nfetch_timeout_ms = 10000\n",
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("gateway-{n}.log")))?;
    let gw = Gateway(
        Command::new(&a.gateway)
            .args(["serve", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", a.gateway.display()))?,
    );
    let pid = gw.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the gateway did not listen; see {}",
                dir.join(format!("gateway-{n}.log")).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let start-up allocations settle (worker threads, runtimes).
    std::thread::sleep(Duration::from_secs(1));
    let fetches = crl_requests.load(Ordering::SeqCst);
    let before_kib = proc_kib(pid, "VmRSS:")?;
    let t = Instant::now();
    let first = request(port, &pki.ca_der, &pki.good)?;
    let first_answer = t.elapsed();
    let after_kib = proc_kib(pid, "VmRSS:")?;
    match first {
        Ok(200) => {}
        other => bail!(
            "the good client was not served: {other:?} (see {})",
            dir.join(format!("gateway-{n}.log")).display()
        ),
    }
    if crl_requests.load(Ordering::SeqCst) == fetches {
        bail!("the gateway answered without fetching the CRL");
    }
    std::thread::sleep(a.settle);
    let settled_kib = proc_kib(pid, "VmRSS:")?;
    let hwm_kib = proc_kib(pid, "VmHWM:")?;
    // The CRL was really used: the listed client is refused, the good one served again.
    if let Ok(code @ 200..=299) = request(port, &pki.ca_der, &pki.listed)? {
        bail!("the client listed in the CRL was served (HTTP {code})");
    }
    match request(port, &pki.ca_der, &pki.good)? {
        Ok(200) => {}
        other => bail!("the good client was not served the second time: {other:?}"),
    }
    drop(gw);
    Ok(Run {
        first_answer,
        before_kib,
        after_kib,
        settled_kib,
        hwm_kib,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn main() -> Result<()> {
    let a = parse_args()?;
    std::fs::create_dir_all(&a.dir)?;
    let dir = std::fs::canonicalize(&a.dir)?;
    let a = Args { dir, ..a };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://127.0.0.1:{}/ca.crl", listener.local_addr()?.port());
    let pki = pki(&url, a.entries)?;
    write_files(&a.dir, &pki)?;
    let count = Arc::new(AtomicUsize::new(0));
    let crl_len = pki.crl.len();
    serve_crl(listener, Arc::new(pki.crl.clone()), count.clone());
    println!(
        "crlmem: {} entries, {crl_len} bytes of DER at {url}; gateway {}, 1 worker, crl-only",
        a.entries,
        a.gateway.display()
    );
    println!(
        "{:>3} {:>13} {:>10} {:>14} {:>16} {:>13}",
        "run", "first answer", "RSS before", "growth at once", "growth settled", "peak growth"
    );
    let mut runs = Vec::new();
    for n in 1..=a.runs {
        let r = one_run(&a, &pki, n, &count)?;
        println!(
            "{n:>3} {:>11.3} s {:>7.1} MB {:>11.1} MB {:>13.1} MB {:>10.1} MB",
            r.first_answer.as_secs_f64(),
            mb(r.before_kib),
            mb(r.after_kib.saturating_sub(r.before_kib)),
            mb(r.settled_kib.saturating_sub(r.before_kib)),
            mb(r.hwm_kib.saturating_sub(r.before_kib)),
        );
        runs.push(r);
    }
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let first = med(&|r| r.first_answer.as_secs_f64());
    let settled = med(&|r| mb(r.settled_kib.saturating_sub(r.before_kib)));
    let at_once = med(&|r| mb(r.after_kib.saturating_sub(r.before_kib)));
    let peak = med(&|r| mb(r.hwm_kib.saturating_sub(r.before_kib)));
    println!(
        "median of {} runs: first answer {first:.3} s; RSS growth {at_once:.1} MB at once, {settled:.1} MB ({:.1} MiB) after {} s; peak growth {peak:.1} MB",
        runs.len(),
        settled * 1e6 / 1048576.0,
        a.settle.as_secs()
    );
    println!(
        "target: first answer <= 1 s: {}; RSS growth <= 48 MB: {}",
        if first <= 1.0 { "met" } else { "NOT met" },
        if settled <= 48.0 && at_once <= 48.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn write_files(dir: &Path, pki: &Pki) -> Result<()> {
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem)?;
    std::fs::write(dir.join("server.pem"), &pki.server_pem)?;
    std::fs::write(dir.join("server.key"), &pki.server_key)?;
    // The gateway drops to `nobody` when run as root: the files must stay readable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
