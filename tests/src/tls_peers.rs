//! TLS peers for backend and probe tests: the crypto provider and a rustls server with a
//! certificate from `certs`.
#![allow(dead_code)]

use std::sync::Arc;

// Re-exported for the tests that include this file; not every test binary uses each one.
#[allow(unused_imports)]
pub use crate::certs::{Ca, Leaf};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    gateway::tls::build_provider(gateway::tls::policy::DEFAULT_PROVIDER, &[], &[])
        .expect("provider")
}

/// A rustls server config with `leaf` (+ optional client-cert verification by `client_ca`).
pub fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).expect("root");
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .expect("verifier");
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(
        b.with_single_cert(vec![leaf.der()], leaf.key_der())
            .expect("server cert"),
    )
}
