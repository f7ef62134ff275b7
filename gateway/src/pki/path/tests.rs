//! Unit tests of path validation with rcgen-made certificates.

use crate::pki::compiled_in_provider;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use super::*;
use crate::pki::keypolicy::{KeyPolicy, RequiredEku};

fn policy(target: Target) -> PathPolicy {
    PathPolicy {
        key_policy: KeyPolicy { min_rsa_bits: 2048 },
        eku: RequiredEku::None,
        target,
        algs: compiled_in_provider().signature_verification_algorithms.all,
    }
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

fn name(cn: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Example");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str, parent: Option<&Ca>, f: impl FnOnce(&mut CertificateParams)) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    f(&mut params);
    let der = match parent {
        None => params.self_signed(&key).expect("self-signed").der().clone(),
        Some(p) => params
            .signed_by(&key, &Issuer::new(p.params.clone(), &p.key))
            .expect("signed")
            .der()
            .clone(),
    };
    Ca { params, key, der }
}

fn leaf(cn: &str, parent: &Ca, f: impl FnOnce(&mut CertificateParams)) -> CertificateDer<'static> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    f(&mut params);
    params
        .signed_by(&key, &Issuer::new(parent.params.clone(), &parent.key))
        .expect("leaf")
        .der()
        .clone()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn check(chain: &[CertificateDer<'static>], root: &Ca) -> Result<ValidatedPath, PathError> {
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    validate_path(chain, &anchors, now(), &policy(Target::EndEntity))
}

#[test]
fn valid_two_level_path_and_any_order_pool() {
    let root = ca("Root", None, |_| {});
    let int = ca("Intermediate", Some(&root), |_| {});
    let l = leaf("alice", &int, |_| {});
    let p = check(&[l.clone(), int.der.clone()], &root).expect("valid");
    assert_eq!(p.certs.len(), 2);
    // Missing intermediate: name chaining fails.
    let e = check(&[l], &root).expect_err("no issuer");
    assert_eq!(e.step, Step::NameChaining);
}

#[test]
fn intermediate_without_key_cert_sign_is_refused() {
    let root = ca("Root", None, |_| {});
    let int = ca("Intermediate", Some(&root), |p| {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]
    });
    let l = leaf("alice", &int, |_| {});
    let e = check(&[l, int.der.clone()], &root).expect_err("keyCertSign");
    assert_eq!(e.step, Step::KeyUsage, "{e}");
}

#[test]
fn intermediate_that_is_not_a_ca_is_refused() {
    let root = ca("Root", None, |_| {});
    let int = ca("Intermediate", Some(&root), |p| {
        p.is_ca = IsCa::ExplicitNoCa
    });
    let l = leaf("alice", &int, |_| {});
    let e = check(&[l, int.der.clone()], &root).expect_err("not a CA");
    assert_eq!(e.step, Step::BasicConstraints, "{e}");
}

#[test]
fn path_len_constraint_counts_non_self_issued_only() {
    let root = ca("Root", None, |_| {});
    let a = ca("A", Some(&root), |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let b = ca("B", Some(&a), |_| {});
    let l = leaf("alice", &b, |_| {});
    let e = check(&[l, b.der.clone(), a.der.clone()], &root).expect_err("pathLen 0");
    assert_eq!(e.step, Step::PathLength, "{e}");
    // Directly under the constrained CA: fine.
    let l2 = leaf("bob", &a, |_| {});
    check(&[l2, a.der.clone()], &root).expect("pathLen 0 allows a leaf");
}

#[test]
fn expired_and_ca_leaf_and_unknown_critical_refused() {
    let root = ca("Root", None, |_| {});
    let l = leaf("old", &root, |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    assert_eq!(
        check(&[l], &root).expect_err("expired").step,
        Step::Validity
    );
    let sub = ca("Sub", Some(&root), |_| {});
    assert_eq!(
        check(std::slice::from_ref(&sub.der), &root)
            .expect_err("CA leaf")
            .step,
        Step::EndEntityIsCa
    );
    let l = leaf("crit", &root, |p| {
        let mut ext =
            rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
    });
    assert_eq!(
        check(&[l], &root).expect_err("critical").step,
        Step::CriticalExtension
    );
}

#[test]
fn names_compare_case_and_space_insensitively() {
    let root = ca("Root", None, |_| {});
    // The issuer name as the leaf spells it differs in case and spacing.
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = name("alice");
    params.is_ca = IsCa::ExplicitNoCa;
    let mut issuer_params = root.params.clone();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::OrganizationName, "  EXAMPLE ");
    dn.push(DnType::CommonName, "root");
    issuer_params.distinguished_name = dn;
    let l = params
        .signed_by(&key, &Issuer::new(issuer_params, &root.key))
        .expect("leaf")
        .der()
        .clone();
    check(&[l], &root).expect("7.1 comparison");
}

#[test]
fn name_constraints_apply_to_subject_and_san() {
    let root = ca("Root", None, |_| {});
    let int = ca("Intermediate", Some(&root), |p| {
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.com".into())],
            excluded_subtrees: vec![],
        })
    });
    let good = leaf("alice", &int, |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            "a.example.com".try_into().expect("dns"),
        )]
    });
    check(&[good, int.der.clone()], &root).expect("permitted");
    let bad = leaf("mallory", &int, |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            "example.org".try_into().expect("dns"),
        )]
    });
    let e = check(&[bad, int.der.clone()], &root).expect_err("outside");
    assert_eq!(e.step, Step::NameConstraints, "{e}");
}

#[test]
fn bad_signature_and_garbage_are_verdicts() {
    let root = ca("Root", None, |_| {});
    let other = ca("Root", None, |_| {});
    let l = leaf("alice", &other, |_| {});
    assert_eq!(check(&[l], &root).expect_err("sig").step, Step::Signature);
    let e = check(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])], &root).expect_err("junk");
    assert_eq!(e.step, Step::Malformed);
    let _ = Arc::new(0);
}

#[test]
fn time_formatting() {
    assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(fmt_time(-631152000), "1950-01-01T00:00:00Z");
    assert_eq!(fmt_time(1577836800), "2020-01-01T00:00:00Z");
}

/// The verified-chain cache answers a returning chain, never a refused one, only inside the
/// validity window, and per policy and trust store.
#[test]
fn chain_cache_returning_chain_window_policy_and_scope() {
    let root = ca("Cache Root", None, |_| {});
    let inter = ca("Cache Intermediate", Some(&root), |_| {});
    let good = leaf("cached client", &inter, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    });
    let chain = vec![good.clone(), inter.der.clone()];
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    let pol = policy(Target::EndEntity);
    let t = now();

    assert!(anchors.cache().is_empty());
    let first = validate_path(&chain, &anchors, t, &pol).expect("valid");
    assert_eq!(anchors.cache().len(), 1, "a validated chain is cached");
    let key = chain_cache::key(&chain, &pol);
    let hit = anchors.cache().get(&key, t).expect("hit");
    assert_eq!(hit.target().digest, first.target().digest);
    assert_eq!(hit.certs.len(), 2);

    // Outside the window (after the leaf's notAfter): no hit, and the full validation refuses.
    let late = 2_300_000_000; // 2042
    assert!(anchors.cache().get(&key, late).is_none());
    let e = validate_path(&chain, &anchors, late, &pol).expect_err("expired");
    assert_eq!(e.step, Step::Validity, "{e}");
    // Before the leaf's notBefore: the same.
    let early = 1_500_000_000; // 2017
    assert!(anchors.cache().get(&key, early).is_none());
    assert!(validate_path(&chain, &anchors, early, &pol).is_err());

    // Another policy or another order of the presented certificates is another key.
    let any = policy(Target::Any);
    assert_ne!(chain_cache::key(&chain, &any), key);
    let reordered = vec![good.clone(), inter.der.clone(), inter.der.clone()];
    assert_ne!(chain_cache::key(&reordered, &pol), key);

    // A refused chain is not cached: a leaf of an untrusted issuer.
    let other_root = ca("Other Root", None, |_| {});
    let stranger = vec![leaf("stranger", &other_root, |_| {})];
    let before = anchors.cache().len();
    assert!(validate_path(&stranger, &anchors, t, &pol).is_err());
    assert!(validate_path(&stranger, &anchors, t, &pol).is_err());
    assert_eq!(anchors.cache().len(), before);

    // Another trust store (a reload builds new anchors) starts empty, and a chain cached
    // for one store is refused by a store that does not trust its root.
    let reloaded = TrustAnchors::new(std::slice::from_ref(&other_root.der)).expect("anchors");
    assert!(reloaded.cache().is_empty());
    assert!(validate_path(&chain, &reloaded, t, &pol).is_err());
}
