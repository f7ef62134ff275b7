//! The handshake hot path: in-memory TLS 1.3 mutual-TLS handshakes against the gateway's own
//! server configuration (its verifier, key policy and provider), timing the server side only.
//! Full and resumed, ECDSA P-256 and RSA-2048, aws-lc-rs and ring.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway_benches::{case, handshake, resumed};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};

fn providers() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "aws-lc-rs") {
        v.push("aws-lc-rs");
    }
    if cfg!(feature = "ring") {
        v.push("ring");
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mtls_handshake_server");
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(50);
    for provider in providers() {
        for (alg_name, alg) in [
            ("ecdsa-p256", &PKCS_ECDSA_P256_SHA256),
            ("rsa-2048", &PKCS_RSA_SHA256),
        ] {
            // ring cannot generate RSA keys; rcgen uses aws-lc-rs for key generation here.
            let dir = tempfile::tempdir().expect("tempdir");
            let full = case(dir.path(), alg, provider);
            // Full handshakes: a client that never resumes.
            let mut no_resume = (*full.client).clone();
            no_resume.resumption = rustls::client::Resumption::disabled();
            let full_case = gateway_benches::Case {
                server: full.server.clone(),
                client: std::sync::Arc::new(no_resume),
                ca: full.ca.clone(),
                provider: full.provider.clone(),
            };
            // A returning client: the same certificate every time.
            g.bench_function(format!("{provider}/{alg_name}/full"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| handshake(&full_case)).sum())
            });
            // A first-seen client: a new certificate for every handshake (made untimed).
            g.bench_function(format!("{provider}/{alg_name}/full-first-seen"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let c = gateway_benches::Case {
                                server: full.server.clone(),
                                client: full.new_client(false),
                                ca: full.ca.clone(),
                                provider: full.provider.clone(),
                            };
                            handshake(&c)
                        })
                        .sum()
                })
            });
            // Plain rustls with the same certificates: the gateway's overhead is the difference.
            let base = gateway_benches::baseline(dir.path(), &full_case, provider);
            g.bench_function(format!("{provider}/{alg_name}/full-plain-rustls"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| handshake(&base)).sum())
            });
            // Resumed: prime the client's ticket store, then every handshake resumes.
            handshake(&full);
            assert!(
                resumed(&full),
                "resumption must work for the resumed benchmark"
            );
            g.bench_function(format!("{provider}/{alg_name}/resumed"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| handshake(&full)).sum())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
