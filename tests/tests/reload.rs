//! Hot reload under continuous load: 20 reloads, each swapping the server certificate and the
//! trusted client CAs, while clients keep running full handshakes (a new connection per
//! request, no resumption) and keep-alive connections (requests on connections opened under
//! older configurations). Not one connection or request may fail; after each reload the
//! newly trusted CA is accepted, the removed CA refused, and new connections see the new
//! server certificate. A reload with an invalid configuration is refused and the old one
//! keeps serving.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{Leaf, LeafSpec, TestCa};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_config(server_ca: &TestCa, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der.clone()))
        .expect("root");
    let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("client key");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![CertificateDer::from(leaf.der.clone())], key)
    .expect("client auth");
    // Every connection a full handshake: the new trust anchors must be what decides.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

async fn connect(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
}

/// One request on a fresh connection: Ok(server leaf DER) on a 200, Err(what happened).
async fn one_request(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Result<Vec<u8>, String> {
    let mut tls = connect(port, cfg).await.map_err(|e| e.to_string())?;
    let server_leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&out))),
        Err(_) => return Err("timeout".into()),
    }
    let text = String::from_utf8_lossy(&out);
    if text.starts_with("HTTP/1.1 200") {
        Ok(server_leaf)
    } else {
        Err(format!("answer: {text:?}"))
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, e: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut v = self.errors.lock().expect("lock");
        if v.len() < 10 {
            v.push(e);
        }
    }
}

/// Full handshakes, one request each, until `stop`.
async fn full_handshake_loop(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        match one_request(port, &cfg).await {
            Ok(_) => t.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                t.fail(format!("full handshake: {e}"));
                0
            }
        };
    }
}

/// Requests on keep-alive connections (a new one every 200 requests) until `stop`.
async fn keep_alive_loop(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        let tls = match connect(port, &cfg).await {
            Ok(tls) => tls,
            Err(e) => {
                t.fail(format!("keep-alive connect: {e}"));
                continue;
            }
        };
        let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
        {
            Ok(x) => x,
            Err(e) => {
                t.fail(format!("keep-alive http handshake: {e}"));
                continue;
            }
        };
        let driver = tokio::spawn(conn);
        for _ in 0..200 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let req = hyper::Request::get("/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .expect("request");
            match send.send_request(req).await {
                Ok(resp) if resp.status() == 200 => {
                    let _ = resp.into_body().collect().await;
                    t.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(resp) => t.fail(format!("keep-alive status {}", resp.status())),
                Err(e) => {
                    t.fail(format!("keep-alive request: {e}"));
                    break;
                }
            }
        }
        drop(send);
        let _ = driver.await;
    }
}

fn write(path: &Path, text: &str) {
    // Write-then-rename, as an operator's deployment tool would.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn twenty_reloads_under_load_swap_server_cert_and_cas_without_a_failed_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let server_ca = TestCa::new("Reload Server CA");
    let servers = [
        server_ca.issue(dir, "server-a", &LeafSpec::server()),
        server_ca.issue(dir, "server-b", &LeafSpec::server()),
    ];
    let stable_ca = TestCa::new("Stable Client CA");
    let stable_pem = stable_ca.write_cert(dir, "stable-ca.pem");
    let loader = stable_ca.issue(dir, "loader", &LeafSpec::client("loader"));
    let rotating: Vec<(TestCa, Leaf)> = (0..=20)
        .map(|i| {
            let ca = TestCa::new(&format!("Rotating CA {i}"));
            let leaf = ca.issue(dir, &format!("client-{i}"), &LeafSpec::client("rotating"));
            (ca, leaf)
        })
        .collect();

    let server_pem = dir.join("server.pem");
    let server_key = dir.join("server.key");
    let rotating_pem = dir.join("rotating-ca.pem");
    let install = |i: usize| {
        let s = &servers[i % 2];
        write(
            &server_pem,
            &std::fs::read_to_string(&s.cert).expect("cert"),
        );
        write(&server_key, &std::fs::read_to_string(&s.key).expect("key"));
        write(&rotating_pem, &rotating[i].0.cert_pem);
    };
    install(0);
    let toml = format!(
        "{GLOBAL}{}",
        listener_toml(
            "builtin:identity",
            &server_pem,
            &server_key,
            &[&stable_pem, &rotating_pem],
            "sensitive",
            "name = \"edge\"\n",
        )
    );
    let gw = TestGateway::start(dir, &toml);
    let reloader = gw.running().reloader(&dir.join("gateway.toml"));
    let port = gw.port();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let full = Arc::new(Tally::default());
    let kept = Arc::new(Tally::default());
    let load_cfg = client_config(&server_ca, &loader);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(rt.spawn(full_handshake_loop(
            port,
            load_cfg.clone(),
            stop.clone(),
            full.clone(),
        )));
    }
    for _ in 0..2 {
        tasks.push(rt.spawn(keep_alive_loop(
            port,
            load_cfg.clone(),
            stop.clone(),
            kept.clone(),
        )));
    }
    std::thread::sleep(Duration::from_millis(300));

    for i in 1..=20 {
        install(i);
        let outcome = reloader.reload().expect("reload accepted");
        assert!(outcome.restart_required.is_empty(), "{outcome}");
        let new_client = client_config(&server_ca, &rotating[i].1);
        let old_client = client_config(&server_ca, &rotating[i - 1].1);
        let (new, old) = rt.block_on(async {
            (
                one_request(port, &new_client).await,
                one_request(port, &old_client).await,
            )
        });
        let leaf = new.unwrap_or_else(|e| panic!("reload {i}: newly trusted CA refused: {e}"));
        assert_eq!(
            leaf,
            servers[i % 2].der,
            "reload {i}: new connections must get the new server certificate"
        );
        assert!(
            old.is_err(),
            "reload {i}: a client of the removed CA got in"
        );
        // Let the load run across the new plan for a moment.
        std::thread::sleep(Duration::from_millis(100));
    }

    // An invalid configuration is refused; the running one keeps serving.
    std::fs::write(&server_key, "not a key").expect("break key");
    let err = reloader.reload().expect_err("broken key refused");
    assert!(err.to_string().contains("server_key"), "{err}");
    let st = &gw.running().admin_state.reloads;
    assert_eq!(st.ok.load(Ordering::Relaxed), 20);
    assert_eq!(st.failed.load(Ordering::Relaxed), 1);
    let still = client_config(&server_ca, &rotating[20].1);
    rt.block_on(one_request(port, &still))
        .expect("old configuration still serves");

    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let (fo, ff) = (
        full.ok.load(Ordering::Relaxed),
        full.failed.load(Ordering::Relaxed),
    );
    let (ko, kf) = (
        kept.ok.load(Ordering::Relaxed),
        kept.failed.load(Ordering::Relaxed),
    );
    eprintln!("load during 20 reloads: full handshakes ok {fo} failed {ff}; keep-alive requests ok {ko} failed {kf}");
    assert_eq!(
        ff + kf,
        0,
        "failed: {:?} {:?}",
        full.errors.lock().expect("lock"),
        kept.errors.lock().expect("lock")
    );
    assert!(
        fo >= 40 && ko >= 40,
        "the load must really run: {fo} full, {ko} keep-alive"
    );
}
