//! `instr`: fixed workloads for the instruction-count guard (`cargo xtask perf-check`), run
//! under `valgrind --tool=callgrind`. Not a timing benchmark: it only does the work.
//!
//! ```text
//! instr full|resumed|returning|plain ITERS
//!                                        in-memory TLS 1.3 mTLS handshakes (ECDSA P-256,
//!                                        aws-lc-rs); only the server side is counted
//!                                        (--toggle-collect=gateway_benches::server_side*)
//! instr proxy ITERS                      an in-process gateway (one worker) proxying ITERS
//!                                        keep-alive requests on one connection to a plain
//!                                        HTTP backend; the worker thread is counted
//!                                        (--toggle-collect=gateway::worker::spawn_worker*),
//!                                        per request = (count(N) - count(0)) / N
//! ```
//! - `full`: every handshake comes from a client certificate the server has not seen.
//! - `resumed`: every handshake resumes a TLS 1.3 session (tickets).
//! - `returning`: full handshakes (no resumption) by the same client certificate again and
//!   again: what a verified-chain cache speeds up (the first sighting is always done once
//!   more, so `count(N) - count(0)` holds only returning handshakes).
//! - `plain`: as `returning`, against a plain rustls server configuration with the same
//!   provider, certificates and client (webpki verifier, no gateway policy): the yardstick.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rcgen::PKCS_ECDSA_P256_SHA256;

fn handshakes(kind: &str, iters: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("instr-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let case = gateway_benches::case(&dir, &PKCS_ECDSA_P256_SHA256, "aws-lc-rs");
    match kind {
        "full" => {
            // Clients made up front so key generation is not interleaved with the server.
            let clients: Vec<_> = (0..iters).map(|_| case.new_client(false)).collect();
            for c in clients {
                let one = gateway_benches::Case {
                    server: case.server.clone(),
                    client: c,
                    ca: case.ca.clone(),
                    provider: case.provider.clone(),
                };
                gateway_benches::handshake(&one);
            }
        }
        "returning" | "plain" => {
            // `plain`: the same returning client against a plain rustls server (webpki client
            // verifier, rustls' default two tickets), the yardstick for the gateway's own cost.
            let server = if kind == "plain" {
                gateway_benches::baseline(&dir, &case, "aws-lc-rs").server
            } else {
                case.server.clone()
            };
            let one = gateway_benches::Case {
                server,
                client: case.new_client(false),
                ca: case.ca.clone(),
                provider: case.provider.clone(),
            };
            // The first sighting plus ITERS returning ones; the guard counts runs with
            // ITERS = 0 and N and divides the difference by N.
            for _ in 0..iters + 1 {
                gateway_benches::handshake(&one);
            }
        }
        "resumed" => {
            gateway_benches::handshake(&case);
            if !gateway_benches::resumed(&case) {
                bail!("resumption does not work");
            }
            for _ in 0..iters {
                gateway_benches::handshake(&case);
            }
        }
        other => bail!("unknown scenario {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn backend() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("backend listener");
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok\n"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

fn proxy(iters: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("instr-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let case = gateway_benches::case(&dir, &PKCS_ECDSA_P256_SHA256, "aws-lc-rs");
    let be = backend()?;
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "[global]\nworkers = 1\npin_workers = false\nmetrics_interval_secs = 0\n[[listener]]\nbind = \"127.0.0.1:0\"\nbackend = \"http://{be}\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\ntrusted_cas = [\"ca.pem\"]\n[listener.tls]\nversions = [\"1.3\"]\n[listener.revocation]\nenabled = false\n"
        ),
    )?;
    let cfg = gateway::config::Config::load(&dir.join("proxy.toml"))?;
    let running = gateway::server::start(gateway::plan::plan(&cfg)?)?;
    let addr = *running.local_addrs.first().context("listener address")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = (*case.client).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector.connect("localhost".try_into()?, tcp).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        // One warm-up request (backend connection, pool) always; then ITERS counted ones.
        for _ in 0..iters + 1 {
            send.ready().await?;
            let resp = send
                .send_request(
                    hyper::Request::get("/")
                        .header("host", "localhost")
                        .body(Empty::<Bytes>::new())?,
                )
                .await?;
            if !resp.status().is_success() {
                bail!("status {}", resp.status());
            }
            resp.into_body().collect().await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    running.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(iters)) = (args.first(), args.get(1)) else {
        bail!("usage: instr full|resumed|returning|proxy ITERS");
    };
    let iters: usize = iters.parse().context("ITERS")?;
    match kind.as_str() {
        "proxy" => proxy(iters),
        k => handshakes(k, iters),
    }
}
