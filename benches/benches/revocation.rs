//! Revocation hot path and CRL loading.
//!
//! - `revocation_cache_hit`: the in-handshake status check answered from the shared cache
//!   (one and two threads), and the awaited post-handshake check on a hit.
//! - `crl_load`: parse + verify signature + build the compact serial set of 10k, 100k and
//!   1M-entry CRLs (heap bytes printed).
//! - `mtls_handshake_revocation`: full TLS 1.3 mutual-TLS handshake (server side) without
//!   revocation vs with the revocation cache hit inline.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway::revocation::{
    crl, RevocationCache, RevocationChecker, RevocationConfig, RevocationOrder,
};
use gateway::status::{CertStatus, StatusCheck};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, UnixTime};

/// Polls a future that completes without waiting (a cache hit).
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the check did not complete from the cache"),
    }
}

struct Pki {
    ca_cert: rcgen::Certificate,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "Bench CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = p.self_signed(&ca_key).expect("ca");
        Pki {
            ca_cert,
            ca_params: p,
            ca_key,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.ca_params, &self.ca_key)
    }

    fn leaf(&self, cn: &str, server: bool) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = CertificateParams::new(if server {
            vec!["localhost".into()]
        } else {
            vec![]
        })
        .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from_slice(&[0x7f, 0x12, 0x34]));
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        (p.signed_by(&key, &self.issuer()).expect("leaf"), key)
    }

    /// A CRL with `n` revoked 16-byte serials.
    fn crl(&self, n: usize) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = (0..n as u64)
            .map(|i| {
                let mut s = [0u8; 16];
                s[0] = 0x10;
                s[8..].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&s),
                    revocation_time: now - time::Duration::days(1),
                    reason_code: None,
                    invalidity_date: None,
                }
            })
            .collect();
        CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer())
        .expect("crl")
        .der()
        .to_vec()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(gateway::tls::policy::base_provider("aws-lc-rs").expect("provider"))
}

/// A checker whose cache holds a `good` entry for `client` (from a configured CRL file with
/// 100k entries), plus 100k other entries' worth of CRL.
fn warm_checker(pki: &Pki, dir: &Path, client: &CertificateDer<'static>) -> Arc<RevocationChecker> {
    std::fs::write(dir.join("ca.crl"), pki.crl(100_000)).expect("write crl");
    let cfg = RevocationConfig {
        order: RevocationOrder::CrlOnly,
        crl_files: vec![dir.join("ca.crl")],
        ..RevocationConfig::default()
    };
    let cache = RevocationCache::new(200_000).expect("cache");
    let anchors = vec![pki.ca_cert.der().clone()];
    let c = RevocationChecker::new(&cfg, "bench", &anchors, provider(), cache).expect("checker");
    poll_once(c.check(client, &[])).expect("good");
    c
}

fn cache_hit(c: &mut Criterion) {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (leaf, _) = pki.leaf("bench client", false);
    let leaf = leaf.der().clone();
    let checker = warm_checker(&pki, dir.path(), &leaf);
    let mut g = c.benchmark_group("revocation_cache_hit");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("handshake_check/1thread", |b| {
        b.iter(|| assert!(checker.in_handshake(&leaf, &[], UnixTime::now()).is_good()))
    });
    g.bench_function("handshake_check/2threads", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(2);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..per {
                            let st = checker.in_handshake(&leaf, &[], UnixTime::now());
                            assert!(!matches!(st, CertStatus::Revoked { .. }));
                        }
                    });
                }
            });
            // Wall time per operation with two threads working in parallel.
            t.elapsed() / 2
        })
    });
    g.bench_function("post_handshake_check", |b| {
        b.iter(|| poll_once(checker.check(&leaf, &[])).expect("ok"))
    });
    g.finish();
    eprintln!("cache metrics: {:?}", checker.cache().metrics());
}

fn crl_load(c: &mut Criterion) {
    let pki = Pki::new();
    let issuer_der = pki.ca_cert.der().clone();
    let issuer = gateway::pki::path::ParsedCert::parse(&issuer_der).expect("issuer");
    let provider = provider();
    let algs = provider.signature_verification_algorithms.all;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut g = c.benchmark_group("crl_load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    // `cargo test --benches` (the CI smoke run, unoptimized) runs the smallest size only.
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000]
    };
    for &n in sizes {
        let t = Instant::now();
        let der = pki.crl(n);
        eprintln!(
            "generated {n}-entry CRL ({} bytes) in {:?}",
            der.len(),
            t.elapsed()
        );
        let crl = crl::load(&der, &issuer, algs, now, 0).expect("load");
        eprintln!("{n} entries: {} serials read", crl.entry_count());
        g.bench_with_input(BenchmarkId::from_parameter(n), &der, |b, der| {
            b.iter(|| crl::load(der, &issuer, algs, now, 0).expect("load"))
        });
    }
    g.finish();
}

fn handshake_overhead(c: &mut Criterion) {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (server, skey) = pki.leaf("localhost", true);
    let (client, ckey) = pki.leaf("bench client", false);
    std::fs::write(d.join("ca.pem"), pki.ca_cert.pem()).expect("w");
    std::fs::write(d.join("server.pem"), server.pem()).expect("w");
    std::fs::write(d.join("server.key"), skey.serialize_pem()).expect("w");
    std::fs::write(
        d.join("gw.toml"),
        "[[listener]]\nbind = \"127.0.0.1:0\"\nbackend = \"builtin:identity\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\ntrusted_cas = [\"ca.pem\"]\n[listener.tls]\nversions = [\"1.3\"]\n",
    )
    .expect("w");
    let cfg = gateway::config::Config::load(&d.join("gw.toml")).expect("config");
    let leaf = client.der().clone();
    let checker = warm_checker(&pki, d, &leaf);
    let status: Arc<dyn StatusCheck> = checker.clone();
    let l = &cfg.listeners[0];
    let cas = gateway::pki::load_ca_bundle(&l.trusted_cas).expect("cas");
    let server_config = |status: Option<Arc<dyn StatusCheck>>| {
        let base = gateway::tls::base_provider("aws-lc-rs").expect("provider");
        Arc::new(
            gateway::tls::build_server_config(gateway::tls::ServerTlsParts {
                settings: &l.tls,
                client_cert_required: true,
                provider: gateway::tls::restrict_provider(
                    &base,
                    &l.tls.cipher_suites,
                    &l.tls.groups,
                )
                .expect("policy"),
                provider_name: "aws-lc-rs",
                chain: gateway::pki::load_certs(&l.server_cert).expect("chain"),
                key: gateway::pki::load_key(&l.server_key).expect("key"),
                trusted_cas: &cas,
                status,
                cert_resolver: None,
                policy_inputs: l.pki.policy_inputs().expect("pki"),
            })
            .expect("server config"),
        )
    };
    let without = server_config(None);
    let with = server_config(Some(status));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_cert.der().clone()).expect("root");
    let mut ccfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![leaf.clone()],
            PrivateKeyDer::from_pem_slice(ckey.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("client auth");
    ccfg.resumption = rustls::client::Resumption::disabled();
    let ccfg = Arc::new(ccfg);
    let mut g = c.benchmark_group("mtls_handshake_revocation");
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(50);
    for (name, server) in [("disabled", without), ("cache_hit", with)] {
        let case = gateway_benches::Case {
            server,
            client: ccfg.clone(),
            ca: None,
            provider: String::new(),
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| gateway_benches::handshake(&case)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, cache_hit, crl_load, handshake_overhead);
criterion_main!(benches);
