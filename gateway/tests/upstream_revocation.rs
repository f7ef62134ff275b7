//! Upstream TLS with the real revocation machinery: a backend whose certificate the CRL
//! lists is refused before any request is sent; a listed-as-good one is proxied.

/// The backend/client test PKI and TLS peers, from the test-support crate's sources
/// (tests/src).
#[path = "../../tests/src/tls_peers.rs"]
mod access_support;
/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;

use std::sync::Arc;

use access_support::{server_config, Ca};
use gateway::revocation::{RevocationCache, RevocationConfig, RevocationOrder};
use gateway::upstream::{UpstreamError, UpstreamRevocation, UpstreamTls, UpstreamTlsConfig};

async fn backend(cfg: Arc<rustls::ServerConfig>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_backend_is_refused_good_one_connects() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("Backend CA");
    let ca_file = ca.write(dir.path(), "backend-ca");
    let good = ca.server(false);
    let revoked = ca.server(false);
    let crl = dir.path().join("backend.crl");
    std::fs::write(&crl, ca.crl_revoking(&[&revoked])).expect("crl");
    let good_port = backend(server_config(&good, None)).await;
    let revoked_port = backend(server_config(&revoked, None)).await;

    let rcfg = RevocationConfig {
        order: RevocationOrder::CrlOnly,
        crl_files: vec![crl],
        ..RevocationConfig::default()
    };
    let cache = RevocationCache::new(1000).expect("cache");
    let factory = gateway::revocation::status::status_factory(
        &rcfg,
        "test upstream",
        Arc::new(
            gateway::tls::base_provider(gateway::tls::policy::DEFAULT_PROVIDER).expect("provider"),
        ),
        Some(&cache),
    )
    .expect("factory");
    let cfg = UpstreamTlsConfig {
        trusted_cas: vec![ca_file],
        server_name: None,
        client_cert: None,
        client_key: None,
        min_rsa_bits: 2048,
        revocation: UpstreamRevocation::Require,
        connect_timeout_secs: 5,
    };
    let tls = UpstreamTls::from_config(&cfg, access_support::provider(), Some(&*factory))
        .expect("upstream tls");
    tls.connect(&format!("127.0.0.1:{good_port}"), "localhost")
        .await
        .expect("good backend connects");
    let e = tls
        .connect(&format!("127.0.0.1:{revoked_port}"), "localhost")
        .await
        .expect_err("revoked backend refused");
    assert!(matches!(e, UpstreamError::Revoked { .. }), "{e}");
}
