//! Revocation checking against real CRL servers and OCSP responders on loopback.

/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;
/// The CRL/OCSP test servers and the revocation test CA, from the test-support crate's
/// sources (tests/src).
#[path = "../../tests/src/status_servers.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::revocation::{
    Reason, RevocationCache, RevocationChecker, RevocationConfig, RevocationOrder, Source, Verdict,
};
use gateway::status::{CertStatus, StatusCheck};
use rustls::pki_types::{CertificateDer, UnixTime};
use support::*;

/// The one skip policy, shared with the `gateway-tests` crate (each test file uses part of it).
#[allow(dead_code)]
#[path = "../../tests/src/skip.rs"]
mod skip;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // The gateway's tests also run with the ring provider only.
    let name = if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "ring"
    };
    Arc::new(gateway::tls::policy::base_provider(name).unwrap())
}

fn checker(cfg: RevocationConfig, ca: &Ca) -> Arc<RevocationChecker> {
    let cache = RevocationCache::new(10_000).unwrap();
    RevocationChecker::new(
        &cfg,
        "test",
        std::slice::from_ref(&ca.cert),
        provider(),
        cache,
    )
    .unwrap()
}

fn cfg(order: RevocationOrder) -> RevocationConfig {
    RevocationConfig {
        order,
        fetch_timeout_ms: 1000,
        ..RevocationConfig::default()
    }
}

async fn check(
    c: &RevocationChecker,
    leaf: &Leaf,
) -> Result<Verdict, gateway::revocation::RevocationError> {
    c.check(&leaf.cert, &[]).await
}

fn source_of(v: &Verdict) -> Option<Source> {
    match v {
        Verdict::Good(s) => s[0].source,
        Verdict::NotChecked => None,
    }
}

#[tokio::test]
async fn revoked_by_crl() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[7], -60, 3600));
    let leaf = ca.leaf(7, Some(&crl_url), Some(&dead_url("/ocsp")));
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(
        matches!(
            e.reason,
            Reason::Revoked {
                source: Source::Crl,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.serial, "07");
    assert!(e.issuer.contains("Test CA"), "{}", e.issuer);
}

#[tokio::test]
async fn revoked_by_ocsp_only_after_the_last_crl() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[], -60, 3600));
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(8, Some(&crl_url), Some(&ocsp_url));
    ocsp.set(8, "revoked");
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(
        matches!(
            e.reason,
            Reason::Revoked {
                source: Source::Ocsp,
                at: Some(_),
                ..
            }
        ),
        "{e}"
    );
    // Now cached: the handshake-time check refuses it without a fetch.
    let r = c.in_handshake(&leaf.cert, &[], UnixTime::now());
    assert!(matches!(r, CertStatus::Revoked { .. }), "{r:?}");
    assert_eq!(ocsp.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn good_by_ocsp_and_then_from_cache() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(9, Some(&dead_url("/ca.crl")), Some(&ocsp_url));
    ocsp.set(9, "good");
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let v = check(&c, &leaf).await.unwrap();
    assert_eq!(source_of(&v), Some(Source::Ocsp));
    let v = check(&c, &leaf).await.unwrap();
    let Verdict::Good(s) = v else { panic!() };
    assert!(s[0].cached);
    assert_eq!(ocsp.requests.load(Ordering::SeqCst), 1);
    let m = c.cache().metrics();
    assert_eq!((m.hits, m.misses, m.ocsp_fetches), (1, 1, 1));
    // A cache miss in the handshake is left to the awaited check.
    let other = ca.leaf(10, None, Some(&ocsp_url));
    assert!(matches!(
        c.in_handshake(&other.cert, &[], UnixTime::now()),
        CertStatus::Unavailable { .. }
    ));
}

#[tokio::test]
async fn ocsp_with_nonce_sha256_cert_id_and_post() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(11, None, Some(&ocsp_url));
    ocsp.set(11, "good");
    let mut cf = cfg(RevocationOrder::OcspOnly);
    cf.ocsp_nonce = true;
    cf.ocsp_cert_id_hash = gateway::revocation::CertIdHash::Sha256;
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.is_ok());
}

#[tokio::test]
async fn both_unreachable_rejects() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(12, Some(&dead_url("/ca.crl")), Some(&dead_url("/ocsp")));
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::Unavailable { .. }), "{e}");
    assert_eq!(c.cache().metrics().rejected_unavailable, 1);
}

#[tokio::test]
async fn no_status_urls_at_all_rejects() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(13, None, None);
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    assert!(check(&c, &leaf).await.is_err());
}

#[tokio::test]
async fn ocsp_down_but_current_crl_accepts() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[99], -60, 3600));
    let leaf = ca.leaf(14, Some(&crl_url), Some(&dead_url("/ocsp")));
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let v = check(&c, &leaf).await.unwrap();
    assert_eq!(source_of(&v), Some(Source::Crl));
}

#[tokio::test]
async fn stale_crl_rejects() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[], -7200, -3600));
    let leaf = ca.leaf(15, Some(&crl_url), None);
    let c = checker(cfg(RevocationOrder::CrlOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::Stale { .. }), "{e}");
}

#[tokio::test]
async fn crl_signed_by_another_key_rejects() {
    let ca = Ca::new("Test CA");
    // Same name, different key.
    let impostor = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(impostor.crl(&[], -60, 3600));
    let leaf = ca.leaf(16, Some(&crl_url), None);
    let c = checker(cfg(RevocationOrder::CrlOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::BadSignature { .. }), "{e}");
}

#[tokio::test]
async fn malformed_and_oversized_crls_reject() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(b"this is not a CRL".to_vec());
    let leaf = ca.leaf(17, Some(&crl_url), None);
    let c = checker(cfg(RevocationOrder::CrlOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::Malformed { .. }), "{e}");

    let (_crl, crl_url) = CrlServer::start(ca.crl(&(0..200).collect::<Vec<_>>(), -60, 3600));
    let leaf = ca.leaf(18, Some(&crl_url), None);
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.max_response_bytes = 1024;
    let c = checker(cf, &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(e.to_string().contains("larger than 1024"), "{e}");
}

#[tokio::test]
async fn ocsp_signed_by_unrelated_key_rejects() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Unrelated(rcgen::KeyPair::generate().unwrap()));
    let leaf = ca.leaf(19, None, Some(&ocsp_url));
    ocsp.set(19, "good");
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::BadSignature { .. }), "{e}");
}

#[tokio::test]
async fn delegated_responder_with_eku_accepts() {
    let ca = Ca::new("Test CA");
    let r = ca.responder(true);
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Delegated(r.cert.clone(), r.key));
    let leaf = ca.leaf(20, None, Some(&ocsp_url));
    ocsp.set(20, "good");
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    assert_eq!(
        source_of(&check(&c, &leaf).await.unwrap()),
        Some(Source::Ocsp)
    );
}

#[tokio::test]
async fn delegated_responder_without_eku_rejects() {
    let ca = Ca::new("Test CA");
    let r = ca.responder(false);
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Delegated(r.cert.clone(), r.key));
    let leaf = ca.leaf(21, None, Some(&ocsp_url));
    ocsp.set(21, "good");
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("OCSPSigning"), "{e}");
}

#[tokio::test]
async fn delegated_responder_of_another_ca_rejects() {
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let r = other.responder(true);
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Delegated(r.cert.clone(), r.key));
    let leaf = ca.leaf(22, None, Some(&ocsp_url));
    ocsp.set(22, "good");
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(matches!(e.reason, Reason::BadSignature { .. }), "{e}");
}

#[tokio::test]
async fn ocsp_unknown_rejects() {
    let ca = Ca::new("Test CA");
    let (_ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(23, None, Some(&ocsp_url));
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert_eq!(e.reason, Reason::Unknown);
}

#[tokio::test(flavor = "current_thread")]
async fn slow_responder_beyond_deadline_rejects_and_worker_stays_responsive() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    *ocsp.delay.lock().unwrap() = Duration::from_secs(5);
    let leaf = ca.leaf(24, None, Some(&ocsp_url));
    ocsp.set(24, "good");
    let mut cf = cfg(RevocationOrder::OcspOnly);
    cf.fetch_timeout_ms = 300;
    let c = checker(cf, &ca);
    // A task on the same (single-threaded) worker runtime keeps running while we wait.
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    let t0 = Instant::now();
    let e = check(&c, &leaf).await.unwrap_err();
    let took = t0.elapsed();
    ticker.abort();
    assert!(matches!(e.reason, Reason::Unavailable { .. }), "{e}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(ticks.load(Ordering::Relaxed) >= 10, "worker was blocked");
}

#[tokio::test]
async fn revocation_published_while_running_takes_effect_within_refresh_interval() {
    let ca = Ca::new("Test CA");
    let (crl, crl_url) = CrlServer::start(ca.crl(&[], -60, 3600));
    let leaf = ca.leaf(25, Some(&crl_url), None);
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.refresh_interval_secs = 1;
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.is_ok());
    // Unchanged CRL: the refresh is a conditional GET answered 304.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(crl.not_modified.load(Ordering::SeqCst) >= 1);
    assert!(c.cache().metrics().crl_not_modified >= 1);
    crl.set(ca.crl(&[25], -30, 3600));
    let t0 = Instant::now();
    loop {
        match check(&c, &leaf).await {
            Err(e) if e.is_revoked() => break,
            _ => {
                assert!(
                    t0.elapsed() < Duration::from_secs(4),
                    "revocation not picked up"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Downloads: the initial one, the changed one; everything else was 304.
    assert_eq!(
        crl.requests.load(Ordering::SeqCst) - crl.not_modified.load(Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn last_good_crl_kept_while_server_fails() {
    let ca = Ca::new("Test CA");
    let (crl, crl_url) = CrlServer::start(ca.crl(&[], -60, 3600));
    let leaf = ca.leaf(26, Some(&crl_url), None);
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.refresh_interval_secs = 1;
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.is_ok());
    *crl.status.lock().unwrap() = Some(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let other = ca.leaf(27, Some(&crl_url), None);
    assert!(check(&c, &other).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_checks_make_one_request_per_certificate() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    *ocsp.delay.lock().unwrap() = Duration::from_millis(200);
    let (crl, crl_url) = CrlServer::start(ca.crl(&[], -60, 3600));
    let leaves: Vec<Leaf> = (100..103)
        .map(|s| ca.leaf(s, Some(&crl_url), Some(&ocsp_url)))
        .collect();
    for l in &leaves {
        ocsp.set(l.serial, "good");
    }
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let c = c.clone();
        let cert: CertificateDer<'static> = leaves[i % 3].cert.clone();
        tasks.push(tokio::spawn(
            async move { c.check(&cert, &[]).await.is_ok() },
        ));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(ocsp.requests.load(Ordering::SeqCst), 3);
    assert_eq!(crl.requests.load(Ordering::SeqCst), 0);

    // Same for CRLs: 1000 checks of certificates of one issuer, one download.
    let c = checker(cfg(RevocationOrder::CrlOnly), &ca);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let c = c.clone();
        let cert = leaves[i % 3].cert.clone();
        tasks.push(tokio::spawn(
            async move { c.check(&cert, &[]).await.is_ok() },
        ));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(crl.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn openssl_ocsp_responder_good_and_revoked() {
    if !skip::require_tool("openssl") {
        return;
    }
    let ca = Ca::new("Test CA");
    let r = start_openssl_ocsp(&ca, &[(30, false), (31, true)]);
    let good = ca.leaf(30, None, Some(&r.url));
    let revoked = ca.leaf(31, None, Some(&r.url));
    let unknown = ca.leaf(32, None, Some(&r.url));
    let c = checker(cfg(RevocationOrder::OcspOnly), &ca);
    assert_eq!(
        source_of(&check(&c, &good).await.unwrap()),
        Some(Source::Ocsp)
    );
    let e = check(&c, &revoked).await.unwrap_err();
    assert!(e.is_revoked(), "{e}");
    let e = check(&c, &unknown).await.unwrap_err();
    assert_eq!(e.reason, Reason::Unknown);
}

#[tokio::test]
async fn configured_crl_file_and_responder_override() {
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let crl_path = dir.path().join("ca.crl");
    std::fs::write(&crl_path, ca.crl(&[40], -60, 3600)).unwrap();
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    ocsp.set(40, "good");
    ocsp.set(41, "good");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let mut cf = cfg(RevocationOrder::OcspFirst);
    cf.crl_files = vec![crl_path];
    cf.ocsp_responders = vec![gateway::revocation::OcspResponderOverride {
        issuer_cert: ca_path,
        url: ocsp_url,
    }];
    let c = checker(cf, &ca);
    // No URLs in the certificates: the override and the file are used.
    let revoked = ca.leaf(40, None, None);
    let good = ca.leaf(41, None, None);
    let e = check(&c, &revoked).await.unwrap_err();
    assert!(
        matches!(
            e.reason,
            Reason::Revoked {
                source: Source::Crl,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        source_of(&check(&c, &good).await.unwrap()),
        Some(Source::Ocsp)
    );
    // The verified CRL file also answers inside the handshake.
    assert!(matches!(
        c.in_handshake(&revoked.cert, &[], UnixTime::now()),
        CertStatus::Revoked { .. }
    ));
}

#[tokio::test]
async fn soft_fail_and_disabled_are_explicit() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(50, Some(&dead_url("/ca.crl")), Some(&dead_url("/o")));
    let mut cf = cfg(RevocationOrder::OcspFirst);
    cf.soft_fail = true;
    let c = checker(cf, &ca);
    let Verdict::Good(s) = check(&c, &leaf).await.unwrap() else {
        panic!()
    };
    assert!(s[0].soft_failed.is_some());
    assert_eq!(c.cache().metrics().soft_fail_accepts, 1);
    let mut cf = cfg(RevocationOrder::OcspFirst);
    cf.enabled = false;
    let c = checker(cf, &ca);
    assert_eq!(check(&c, &leaf).await.unwrap(), Verdict::NotChecked);
}

#[tokio::test]
async fn intermediates_checked_when_configured() {
    let root = Ca::new("Root CA");
    let (_crl, crl_url) = CrlServer::start(root.crl(&[0x1c], -60, 3600));
    // An intermediate CA, serial 0x1c, revoked by the root's CRL.
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Intermediate CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x1c]));
    p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec![crl_url],
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &root.issuer()).unwrap();
    let inter = Ca {
        cert: cert.der().clone(),
        pem: cert.pem(),
        params: p,
        key,
    };
    let (ocsp, ocsp_url) = start_ocsp(&inter, Signer::Issuer);
    let leaf = inter.leaf(60, None, Some(&ocsp_url));
    ocsp.set(60, "good");
    let cache = RevocationCache::new(1000).unwrap();
    // Leaf only: an explicit relaxation since intermediates are checked by default.
    let mut leaf_only = cfg(RevocationOrder::OcspFirst);
    leaf_only.check_intermediates = false;
    let c = RevocationChecker::new(
        &leaf_only,
        "t",
        std::slice::from_ref(&root.cert),
        provider(),
        cache.clone(),
    )
    .unwrap();
    assert!(c
        .check(&leaf.cert, std::slice::from_ref(&inter.cert))
        .await
        .is_ok());
    let mut cf = cfg(RevocationOrder::OcspFirst);
    cf.check_intermediates = true;
    let c = RevocationChecker::new(
        &cf,
        "t",
        std::slice::from_ref(&root.cert),
        provider(),
        cache,
    )
    .unwrap();
    let e = c
        .check(&leaf.cert, std::slice::from_ref(&inter.cert))
        .await
        .unwrap_err();
    assert!(e.is_revoked() && e.serial == "1c", "{e}");
}

#[tokio::test]
async fn issuer_not_found_rejects() {
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let leaf = other.leaf(70, None, None);
    let c = checker(cfg(RevocationOrder::OcspFirst), &ca);
    assert_eq!(
        check(&c, &leaf).await.unwrap_err().reason,
        Reason::IssuerNotFound
    );
}

#[tokio::test]
async fn stapling_serves_only_a_current_good_answer() {
    use gateway::revocation::staple::{certified_key, StaplingResolver};
    use rustls::pki_types::pem::PemObject;
    let ca = Ca::new("Server CA");
    let (ocsp, url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(80, None, Some(&url));
    ocsp.set(80, "good");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key.serialize_pem().as_bytes())
        .unwrap();
    let ck = certified_key(vec![leaf.cert.clone(), ca.cert.clone()], key, &provider()).unwrap();
    let cf = RevocationConfig {
        refresh_interval_secs: 1,
        ..RevocationConfig::default()
    };
    let cache = RevocationCache::new(100).unwrap();
    let r = StaplingResolver::start(ck.clone(), &cf, provider(), &cache).unwrap();
    let t0 = Instant::now();
    while r.current().ocsp.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(3), "no staple");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The staple is a verifiable, good OCSP response for our certificate.
    let staple = r.current().ocsp.clone().unwrap();
    let cert = gateway::revocation::cert::CertInfo::parse(&leaf.cert).unwrap();
    let issuer = gateway::revocation::cert::CertInfo::parse(&ca.cert).unwrap();
    let req = gateway::revocation::ocsp::BuiltRequest {
        der: Vec::new(),
        nonce: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = gateway::revocation::ocsp::Freshness {
        now,
        skew: 60,
        max_age: 3600,
    };
    let ans =
        gateway::revocation::ocsp::verify_response(&staple, &cert, &issuer, &req, &provider(), at)
            .unwrap();
    assert_eq!(ans.status, gateway::revocation::ocsp::OcspStatus::Good);
    assert!(r.stapled_until().unwrap() > now);
    // Revoked: the staple goes.
    ocsp.set(80, "revoked");
    while r.current().ocsp.is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "revoked answer still stapled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No AIA OCSP URL: stapling cannot start.
    let plain = ca.leaf(81, None, None);
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(plain.key.serialize_pem().as_bytes())
            .unwrap();
    let ck = certified_key(vec![plain.cert.clone(), ca.cert.clone()], key, &provider()).unwrap();
    assert!(StaplingResolver::start(ck, &cf, provider(), &cache).is_err());
}

#[tokio::test]
async fn hot_ocsp_answers_are_refreshed_in_the_background() {
    let ca = Ca::new("Test CA");
    let (ocsp, ocsp_url) = start_ocsp(&ca, Signer::Issuer);
    let leaf = ca.leaf(90, None, Some(&ocsp_url));
    ocsp.set(90, "good");
    let mut cf = cfg(RevocationOrder::OcspOnly);
    cf.refresh_interval_secs = 1;
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.is_ok());
    // Used again (hot), then revoked at the responder.
    assert!(check(&c, &leaf).await.is_ok());
    ocsp.set(90, "revoked");
    // Without any request-path fetch, the cache-only handshake check learns of it.
    let t0 = Instant::now();
    loop {
        if matches!(
            c.in_handshake(&leaf.cert, &[], UnixTime::now()),
            CertStatus::Revoked { .. }
        ) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "background refresh did not happen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ocsp.requests.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn replaced_crl_file_takes_effect_without_restart() {
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.crl");
    std::fs::write(&path, ca.crl(&[], -60, 3600)).unwrap();
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.crl_files = vec![path.clone()];
    cf.refresh_interval_secs = 1;
    let c = checker(cf, &ca);
    let leaf = ca.leaf(95, None, None);
    assert_eq!(
        source_of(&check(&c, &leaf).await.unwrap()),
        Some(Source::Crl)
    );
    // Replace the file (as an operator's cron job would), PEM this time.
    let der = ca.crl(&[95], -30, 3600);
    let pem = format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&der)
    });
    std::fs::write(&path, pem).unwrap();
    let t0 = Instant::now();
    loop {
        if let Err(e) = check(&c, &leaf).await {
            assert!(e.is_revoked(), "{e}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "new CRL file not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And inside the handshake, too.
    assert!(matches!(
        c.in_handshake(&leaf.cert, &[], UnixTime::now()),
        CertStatus::Revoked { .. }
    ));
}

#[test]
fn malformed_crls_and_ocsp_responses_never_panic() {
    use gateway::revocation::{cert::CertInfo, crl, ocsp};
    let ca = Ca::new("Test CA");
    let issuer = CertInfo::parse(&ca.cert).unwrap();
    let leaf = ca.leaf(5, None, None);
    let cert = CertInfo::parse(&leaf.cert).unwrap();
    let p = provider();
    let crl_issuer = gateway::pki::path::ParsedCert::parse(&ca.cert).unwrap();
    let algs = p.signature_verification_algorithms.all;
    let good_crl = ca.crl(&[1, 2, 3], -60, 3600);
    let state = OcspStateForFuzz::response(&ca);
    let req = ocsp::BuiltRequest {
        der: Vec::new(),
        nonce: None,
    };
    let at = ocsp::Freshness {
        now: 2_000_000_000,
        skew: 0,
        max_age: 60,
    };
    for input in [&good_crl, &state] {
        for cut in 0..input.len() {
            let _ = crl::load(&input[..cut], &crl_issuer, algs, 0, 0);
            let _ = ocsp::verify_response(&input[..cut], &cert, &issuer, &req, &p, at);
        }
        for i in 0..input.len() {
            for bit in [0x01u8, 0x80] {
                let mut m = input.clone();
                m[i] ^= bit;
                let _ = crl::load(&m, &crl_issuer, algs, 0, 0);
                let _ = ocsp::verify_response(&m, &cert, &issuer, &req, &p, at);
            }
        }
    }
    assert!(crl::load(b"", &crl_issuer, algs, 0, 0).is_err());
    assert!(CertInfo::parse(b"\x30\x03\x02\x01").is_err());
}

/// A real signed OCSP response (from our responder's code path) as fuzz seed.
struct OcspStateForFuzz;

impl OcspStateForFuzz {
    fn response(ca: &Ca) -> Vec<u8> {
        let (state, url) = start_ocsp(ca, Signer::Issuer);
        state.set(5, "good");
        let leaf = ca.leaf(5, None, Some(&url));
        let cert = gateway::revocation::cert::CertInfo::parse(&leaf.cert).unwrap();
        let issuer = gateway::revocation::cert::CertInfo::parse(&ca.cert).unwrap();
        let req = gateway::revocation::ocsp::build_request(
            &cert,
            &issuer,
            gateway::revocation::CertIdHash::Sha1,
            None,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let f = gateway::revocation::fetch::Fetcher::new(Duration::from_secs(2), 1 << 16);
            f.post_ocsp(&url, req.der).await.unwrap().to_vec()
        })
    }
}

#[tokio::test]
async fn replayed_older_crl_does_not_unrevoke() {
    let ca = Ca::new("Test CA");
    let (crl, crl_url) = CrlServer::start(ca.crl(&[27], -30, 3600));
    let leaf = ca.leaf(27, Some(&crl_url), None);
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.refresh_interval_secs = 1;
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.unwrap_err().is_revoked());
    // The server now hands out an older CRL (thisUpdate earlier) that does not list it.
    crl.set(ca.crl(&[], -600, 3600));
    let before = crl.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        crl.requests.load(Ordering::SeqCst) > before,
        "the CRL was not refreshed"
    );
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(e.is_revoked(), "an older CRL replaced the newer one: {e}");
}

#[tokio::test]
async fn status_check_refuses_a_certificate_expired_since_the_session_began() {
    // Resumed sessions are not validated again by the handshake: the awaited status check
    // validates the path at the time of the connection.
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[], -60, 3600));
    let leaf = ca.leaf(28, Some(&crl_url), None);
    let c = checker(cfg(RevocationOrder::CrlOnly), &ca);
    assert!(check(&c, &leaf).await.is_ok());
    let year_4100 = 67_300_000_000;
    let e = c.check_at(&leaf.cert, &[], year_4100).await.unwrap_err();
    assert!(matches!(e.reason, Reason::Path { .. }), "{e}");
    assert!(e.to_string().contains("6.1.3 (a)(2)"), "{e}");
    assert!(
        gateway::pki::path::leaf_valid_at(std::slice::from_ref(&leaf.cert), year_4100).is_err()
    );
}

#[tokio::test]
async fn unusable_crl_file_is_a_status_failure_not_a_configuration_error() {
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.crl");
    std::fs::write(&bad, b"not a CRL at all").unwrap();
    let leaf = ca.leaf(29, None, None);
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.crl_files = vec![bad];
    let c = checker(cf, &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(!e.is_revoked(), "{e}");
    // A good file next to it answers.
    let good = dir.path().join("good.crl");
    std::fs::write(&good, ca.crl(&[], -60, 3600)).unwrap();
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.crl_files = vec![dir.path().join("bad.crl"), good];
    let c = checker(cf, &ca);
    assert!(check(&c, &leaf).await.is_ok());
}

#[tokio::test]
async fn configured_file_saying_good_does_not_hide_a_distribution_point_saying_revoked() {
    let ca = Ca::new("Test CA");
    let (_crl, crl_url) = CrlServer::start(ca.crl(&[30], -30, 3600));
    let leaf = ca.leaf(30, Some(&crl_url), None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.crl");
    std::fs::write(&file, ca.crl(&[], -60, 3600)).unwrap();
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.crl_files = vec![file];
    let c = checker(cf, &ca);
    let e = check(&c, &leaf).await.unwrap_err();
    assert!(e.is_revoked(), "{e}");
}

#[tokio::test]
async fn status_path_is_validated_under_the_listener_policy_inputs() {
    // The status check builds the client's path again: under `[listener.pki]` it must be a
    // path the handshake accepts (one valid for a required policy), not any path.
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let crl_path = dir.path().join("ca.crl");
    std::fs::write(&crl_path, ca.crl(&[], -60, 3600)).unwrap();
    let mut cf = cfg(RevocationOrder::CrlOnly);
    cf.crl_files = vec![crl_path];
    let leaf = ca.leaf(60, None, None);
    let plain = checker(cf.clone(), &ca);
    assert!(check(&plain, &leaf).await.is_ok());
    let required =
        gateway::pki::path::PolicyInputs::requiring(vec![gateway::pki::path::PolicyOid::parse(
            "2.16.840.1.101.3.2.1.3.13",
        )
        .unwrap()]);
    let strict = checker(cf, &ca).with_policy_inputs(required).unwrap();
    let e = check(&strict, &leaf).await.unwrap_err();
    assert!(
        matches!(&e.reason, Reason::Path { why } if why.contains("certificate policies")),
        "{e}"
    );
}
