//! Upstream TLS: the gateway as a S.E.E. client of a backend on loopback. Only a backend
//! with a good, trusted, current, unrevoked certificate for the right name gets a request.

/// The backend/client test PKI and TLS peers, from the test-support crate's sources
/// (tests/src).
#[path = "../../tests/src/tls_peers.rs"]
mod access_support;
/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use access_support::{server_config, Ca, Leaf};
use bytes::Bytes;
use gateway::status::{
    BoxFuture, CertReport, CertStatus, ChainStatus, Source, StatusCheck, StatusFactory,
};
use gateway::upstream::{
    error_chain, UpstreamConnector, UpstreamError, UpstreamRevocation, UpstreamTls,
    UpstreamTlsConfig,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, UnixTime};

/// An HTTPS backend on 127.0.0.1 answering "backend ok"; counts the requests it served.
async fn backend(cfg: Arc<rustls::ServerConfig>) -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"backend ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, hits)
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("Backend CA");
    let ca_path = ca.write(dir.path(), "backend-ca");
    Pki { dir, ca, ca_path }
}

fn cfg(p: &Pki) -> UpstreamTlsConfig {
    UpstreamTlsConfig {
        trusted_cas: vec![p.ca_path.clone()],
        server_name: None,
        client_cert: None,
        client_key: None,
        min_rsa_bits: 2048,
        revocation: UpstreamRevocation::Off,
        connect_timeout_secs: 5,
    }
}

/// A fake revocation checker answering the same status for every certificate.
#[derive(Debug)]
struct FixedStatus(CertStatus);

const DETAIL: &str = "now";

impl StatusCheck for FixedStatus {
    fn in_handshake(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> CertStatus {
        self.0.clone()
    }

    fn check_chain<'a>(
        &'a self,
        presented: &'a [CertificateDer<'static>],
    ) -> BoxFuture<'a, ChainStatus> {
        let certs = presented
            .iter()
            .map(|_| CertReport {
                subject: "CN=localhost".into(),
                issuer: "CN=test".into(),
                serial: "01".into(),
                status: self.0.clone(),
                detail: DETAIL.into(),
            })
            .collect();
        Box::pin(async move { ChainStatus { certs } })
    }
}

/// A factory handing out a [`FixedStatus`] checker; checks it is given the backend's CAs.
fn fixed(status: CertStatus) -> Box<StatusFactory> {
    Box::new(move |anchors: &[CertificateDer<'static>]| {
        assert_eq!(anchors.len(), 1, "the backend's trust anchors are passed");
        Ok(Arc::new(FixedStatus(status.clone())) as Arc<dyn StatusCheck>)
    })
}

async fn get(tls: UpstreamTls, port: u16) -> Result<String, hyper_util::client::legacy::Error> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(UpstreamConnector::new(Some(Arc::new(tls))));
    let uri: http::Uri = format!("https://localhost:{port}/").parse().expect("uri");
    let resp = client.get(uri).await?;
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn serve(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    server_config(leaf, None)
}

#[tokio::test]
async fn good_backend_is_proxied() {
    let p = pki();
    let (port, hits) = backend(serve(&p.ca.server(false))).await;
    let tls = UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    assert_eq!(get(tls, port).await.expect("request"), "backend ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_backend_is_refused() {
    let p = pki();
    let (port, hits) = backend(serve(&p.ca.server(true))).await;
    let tls = UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    let e = tls
        .connect(&format!("127.0.0.1:{port}"), "localhost")
        .await
        .expect_err("refused");
    assert!(matches!(e, UpstreamError::Handshake { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
    // Through the hyper client: the 502 log line says why.
    let tls = UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    let err = get(tls, port).await.expect_err("refused");
    let why = error_chain(&err);
    assert!(why.to_lowercase().contains("expired"), "{why}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn untrusted_backend_is_refused() {
    let p = pki();
    let other = Ca::new("Some Other CA");
    let (port, hits) = backend(serve(&other.server(false))).await;
    let tls = UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    let e = tls
        .connect(&format!("127.0.0.1:{port}"), "localhost")
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("UnknownIssuer") || e.to_string().contains("unknown issuer"),
        "{e}"
    );
    let tls = UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    assert!(get(tls, port).await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_name_is_refused() {
    let p = pki();
    let (port, _) = backend(serve(&p.ca.server(false))).await;
    let mut c = cfg(&p);
    c.server_name = Some("billing.example.org".into());
    let tls = UpstreamTls::from_config(&c, access_support::provider(), None).expect("tls");
    let e = tls
        .connect(&format!("127.0.0.1:{port}"), "localhost")
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("NotValidForName") || e.to_string().contains("not valid for name"),
        "{e}"
    );
}

#[tokio::test]
async fn revoked_or_unknown_status_is_refused_before_any_request() {
    let p = pki();
    let (port, hits) = backend(serve(&p.ca.server(false))).await;
    let mut c = cfg(&p);
    c.revocation = UpstreamRevocation::Require;
    // Fail closed: requiring revocation without a checker refuses to build.
    let e = UpstreamTls::from_config(&c, access_support::provider(), None).expect_err("no checker");
    assert!(e.to_string().contains("revocation"), "{e}");

    let revoked = fixed(CertStatus::Revoked {
        source: Source::Ocsp,
        time: None,
        code: Some(1),
    });
    let tls =
        UpstreamTls::from_config(&c, access_support::provider(), Some(&*revoked)).expect("tls");
    let e = tls
        .connect(&format!("127.0.0.1:{port}"), "localhost")
        .await
        .expect_err("revoked");
    assert!(matches!(e, UpstreamError::Revoked { .. }), "{e}");
    let err = get(tls, port).await.expect_err("revoked via client");
    assert!(
        error_chain(&err).contains("revoked"),
        "{}",
        error_chain(&err)
    );

    let unknown = fixed(CertStatus::Unavailable {
        reason: "OCSP responder timed out".into(),
    });
    let tls =
        UpstreamTls::from_config(&c, access_support::provider(), Some(&*unknown)).expect("tls");
    let e = tls
        .connect(&format!("127.0.0.1:{port}"), "localhost")
        .await
        .expect_err("unknown");
    assert!(matches!(e, UpstreamError::StatusUnknown { .. }), "{e}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request reached the backend"
    );

    let good = fixed(CertStatus::Good {
        source: Some(Source::Ocsp),
    });
    let tls = UpstreamTls::from_config(&c, access_support::provider(), Some(&*good)).expect("tls");
    assert_eq!(get(tls, port).await.expect("good status"), "backend ok");
}

#[tokio::test]
async fn client_certificate_for_mutual_tls() {
    let p = pki();
    let client_ca = Ca::new("Gateway Client CA");
    let (port, hits) = backend(server_config(&p.ca.server(false), Some(&client_ca))).await;
    let without =
        UpstreamTls::from_config(&cfg(&p), access_support::provider(), None).expect("tls");
    assert!(
        get(without, port).await.is_err(),
        "backend requires a client certificate"
    );
    let (cert, key) = client_ca
        .client("gateway", "Edge")
        .write(p.dir.path(), "gw-client");
    let mut c = cfg(&p);
    c.client_cert = Some(cert);
    c.client_key = Some(key);
    let with = UpstreamTls::from_config(&c, access_support::provider(), None).expect("tls");
    assert_eq!(get(with, port).await.expect("mTLS request"), "backend ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
