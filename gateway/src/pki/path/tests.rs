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
        policy_inputs: PolicyInputs::default(),
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

/// DER TLV with a short or long definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn oid_tlv(o: &PolicyOid) -> Vec<u8> {
    tlv(0x06, o.as_der())
}

/// A certificatePolicies extension naming `policies`.
fn cert_policies(policies: &[PolicyOid], critical: bool) -> rcgen::CustomExtension {
    let body: Vec<u8> = policies
        .iter()
        .flat_map(|p| tlv(0x30, &oid_tlv(p)))
        .collect();
    let mut e = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 32], tlv(0x30, &body));
    e.set_criticality(critical);
    e
}

/// A policyMappings extension.
fn policy_mappings(pairs: &[(PolicyOid, PolicyOid)]) -> rcgen::CustomExtension {
    let body: Vec<u8> = pairs
        .iter()
        .flat_map(|(a, b)| tlv(0x30, &[oid_tlv(a), oid_tlv(b)].concat()))
        .collect();
    let mut e = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 33], tlv(0x30, &body));
    e.set_criticality(true);
    e
}

/// A critical policyConstraints extension with the raw SEQUENCE contents `content`.
fn policy_constraints(content: &[u8]) -> rcgen::CustomExtension {
    let mut e = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 36], tlv(0x30, content));
    e.set_criticality(true);
    e
}

fn oid(s: &str) -> PolicyOid {
    PolicyOid::parse(s).expect("oid")
}

fn with_inputs(inputs: PolicyInputs) -> PathPolicy {
    PathPolicy {
        policy_inputs: inputs,
        ..policy(Target::EndEntity)
    }
}

#[test]
fn critical_policy_extensions_are_processed_not_refused() {
    let p1 = oid("2.16.840.1.101.3.2.1.48.1");
    let p2 = oid("2.16.840.1.101.3.2.1.48.2");
    let root = ca("Root", None, |_| {});
    let (a, b) = (p1.clone(), p2.clone());
    let int = ca("Int", Some(&root), move |p| {
        p.custom_extensions = vec![
            cert_policies(&[a.clone(), b.clone()], true),
            // requireExplicitPolicy 0: every certificate below must carry a valid policy.
            policy_constraints(&[0x80, 0x01, 0x00]),
        ];
    });
    let (a, b) = (p1.clone(), p2.clone());
    let good = leaf("good", &int, move |p| {
        p.custom_extensions = vec![cert_policies(&[a], false)]
    });
    let none = leaf("none", &int, |_| {});
    let other = leaf("other", &int, move |p| {
        p.custom_extensions = vec![cert_policies(&[oid("1.2.3.4")], false)];
        let _ = b;
    });
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    let run = |leaf: &CertificateDer<'static>, pol: &PathPolicy| {
        validate_path(&[leaf.clone(), int.der.clone()], &anchors, now(), pol)
    };
    let parsed = ParsedCert::parse(&int.der).expect("parses");
    assert_eq!(parsed.unknown_critical, None);
    assert!(parsed.policy_exts.constraints.is_some());
    run(&good, &policy(Target::EndEntity)).expect("valid for NIST-test-policy-1");
    for bad in [&none, &other] {
        let e = run(bad, &policy(Target::EndEntity)).unwrap_err();
        assert_eq!(e.step, Step::Policy, "{e}");
    }
    // The listener asking for policy 2: refused (the leaf is only valid for policy 1), and
    // not answered from the cache entry of the run above.
    let e = run(
        &good,
        &with_inputs(PolicyInputs::requiring(vec![p2.clone()])),
    )
    .unwrap_err();
    assert_eq!(e.step, Step::Policy);
    assert!(e.detail.contains("2.16.840.1.101.3.2.1.48.2"), "{e}");
    run(&good, &with_inputs(PolicyInputs::requiring(vec![p1, p2]))).expect("1 or 2");
}

#[test]
fn required_policy_without_policy_extensions_is_refused() {
    let root = ca("Root", None, |_| {});
    let l = leaf("plain", &root, |_| {});
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    validate_path(
        std::slice::from_ref(&l),
        &anchors,
        now(),
        &policy(Target::EndEntity),
    )
    .expect("no policy asked for");
    let strict = with_inputs(PolicyInputs::requiring(vec![oid("1.2.3")]));
    let e = validate_path(&[l], &anchors, now(), &strict).unwrap_err();
    assert_eq!(e.step, Step::Policy, "{e}");
}

#[test]
fn malformed_policy_extensions_and_any_policy_mappings_are_named() {
    let root = ca("Root", None, |_| {});
    // An empty policyConstraints sequence (RFC 5280 4.2.1.11).
    let int = ca("Int", Some(&root), |p| {
        p.custom_extensions = vec![policy_constraints(&[])];
    });
    let e = ParsedCert::parse(&int.der).unwrap_err();
    assert_eq!(e.step, Step::Malformed);
    assert!(e.detail.contains("policyConstraints"), "{e}");
    // A mapping to anyPolicy (6.1.4 (a)).
    let int = ca("Int", Some(&root), |p| {
        p.custom_extensions = vec![
            cert_policies(&[PolicyOid::any()], false),
            policy_mappings(&[(oid("1.2.3"), PolicyOid::any())]),
        ];
    });
    let l = leaf("l", &int, |p| {
        p.custom_extensions = vec![cert_policies(&[oid("1.2.3")], false)]
    });
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    let e = validate_path(
        &[l, int.der.clone()],
        &anchors,
        now(),
        &policy(Target::EndEntity),
    )
    .unwrap_err();
    assert_eq!(e.step, Step::Policy);
    assert!(e.detail.contains("anyPolicy"), "{e}");
}

#[test]
fn policy_tree_blowup_is_refused_quickly() {
    // A asserts 40 policies and maps each to the same 40 others; B asserts those 40 (each
    // expected by 40 nodes: 1,600 nodes); the leaf asserts anyPolicy (1,600 more). Each
    // further such CA would multiply the tree by 40: refused at the cap, not computed.
    let p: Vec<PolicyOid> = (0..40).map(|i| oid(&format!("1.2.3.{i}"))).collect();
    let q: Vec<PolicyOid> = (0..40).map(|i| oid(&format!("1.2.4.{i}"))).collect();
    let pairs: Vec<(PolicyOid, PolicyOid)> = p
        .iter()
        .flat_map(|a| q.iter().map(move |b| (a.clone(), b.clone())))
        .collect();
    let root = ca("Root", None, |_| {});
    let pp = p.clone();
    let a = ca("A", Some(&root), move |c| {
        c.custom_extensions = vec![cert_policies(&pp, false), policy_mappings(&pairs)]
    });
    let qq = q.clone();
    let b = ca("B", Some(&a), move |c| {
        c.custom_extensions = vec![cert_policies(&qq, false)]
    });
    let l = leaf("l", &b, |c| {
        c.custom_extensions = vec![cert_policies(&[PolicyOid::any()], false)]
    });
    let anchors = TrustAnchors::new(std::slice::from_ref(&root.der)).expect("anchors");
    let chain = [l, b.der.clone(), a.der.clone()];
    // Without an explicit policy nothing but a mapping of anyPolicy can refuse the path:
    // the tree is not built.
    validate_path(&chain, &anchors, now(), &policy(Target::EndEntity)).expect("default");
    let started = std::time::Instant::now();
    let strict = with_inputs(PolicyInputs {
        initial_explicit_policy: true,
        ..PolicyInputs::default()
    });
    let e = validate_path(&chain, &anchors, now(), &strict).unwrap_err();
    assert_eq!(e.step, Step::Policy);
    assert!(e.detail.contains("exceed"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
