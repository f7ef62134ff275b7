//! CRL parsing and RFC 5280 6.3 processing with rcgen-made CRLs.

use crate::pki::compiled_in_provider;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, CrlScope, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

use super::*;
use crate::pki::keypolicy::{KeyPolicy, RequiredEku};
use crate::pki::path::validate::{PathPolicy, Target, TrustAnchors};
use crate::revocation::crl_status::{crl_status, CrlContext, CrlStatus};

fn algs() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    compiled_in_provider().signature_verification_algorithms.all
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    cert: Arc<ParsedCert>,
}

fn ca() -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "CRL Test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let der = params.self_signed(&key).expect("ca").der().to_vec();
    let cert = Arc::new(ParsedCert::parse(&der).expect("parse"));
    Ca { params, key, cert }
}

fn leaf(ca: &Ca, serial: &[u8], dp: Option<&str>) -> Arc<ParsedCert> {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "leaf");
    p.serial_number = Some(SerialNumber::from_slice(serial));
    if let Some(u) = dp {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![u.to_string()],
        }];
    }
    let der = p
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .expect("leaf")
        .der()
        .to_vec();
    Arc::new(ParsedCert::parse(&der).expect("parse"))
}

fn crl(ca: &Ca, number: u8, revoked: &[&[u8]], idp: Option<(&str, Option<CrlScope>)>) -> Crl {
    let now = time::OffsetDateTime::now_utc();
    let der = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(i64::from(10 - number.min(9))),
        next_update: now + time::Duration::hours(1),
        crl_number: SerialNumber::from_slice(&[number]),
        issuing_distribution_point: idp.map(|(u, scope)| CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![u.to_string()],
            },
            scope,
        }),
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - time::Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&Issuer::new(ca.params.clone(), &ca.key))
    .expect("crl")
    .der()
    .to_vec();
    Crl::parse(&der).expect("parse")
}

fn status(ca: &Ca, cert: &ParsedCert, crls: Vec<Crl>) -> CrlStatus {
    let crls: Vec<Arc<Crl>> = crls.into_iter().map(Arc::new).collect();
    let anchors = TrustAnchors::new(&[rustls::pki_types::CertificateDer::from(
        ca.cert.der().to_vec(),
    )])
    .expect("anchors");
    let anchor = anchors.all()[0].clone();
    let ctx = CrlContext {
        crls: &crls,
        pool: &[],
        anchors: &anchors,
        anchor: &anchor,
        time: crate::revocation::now_secs(),
        skew: 0,
        policy: PathPolicy {
            key_policy: KeyPolicy { min_rsa_bits: 2048 },
            eku: RequiredEku::None,
            target: Target::CrlSigner,
            algs: algs(),
            policy_inputs: crate::pki::path::PolicyInputs::default(),
        },
        depth: 0,
    };
    crl_status(cert, &anchor, &ctx)
}

#[test]
fn entries_are_read_only_after_the_signature_verifies() {
    let a = ca();
    let b = ca();
    let c = crl(&a, 1, &[&[5], &[6]], None);
    // A CRL claiming to be from `b`'s name but signed by `a`: nothing is built.
    assert!(matches!(
        c.verified_entries(&b.cert, algs()),
        Err(CrlError::BadSignature(_))
    ));
    assert!(c.entries_if_verified().is_none());
    assert_eq!(c.entry_count(), 0);
    let e = c.verified_entries(&a.cert, algs()).expect("verifies");
    assert!(e.contains(&a.cert.subject, &[5]));
    assert_eq!(c.entry_count(), 2);
}

#[test]
fn serial_longer_than_20_octets_is_refused() {
    let a = ca();
    let c = crl(&a, 1, &[&[0x11; 21]], None);
    assert!(matches!(
        c.verified_entries(&a.cert, algs()),
        Err(CrlError::SerialTooLong(21))
    ));
    // 20 octets are fine.
    let c = crl(&a, 1, &[&[0x11; 20]], None);
    assert!(c.verified_entries(&a.cert, algs()).is_ok());
}

#[test]
fn older_crl_is_recognized() {
    let a = ca();
    let new = crl(&a, 5, &[], None);
    let old = crl(&a, 2, &[&[7]], None);
    assert!(old.is_older_than(&new));
    assert!(!new.is_older_than(&old));
    assert!(matches!(old.older_error(), CrlError::Older { .. }));
}

#[test]
fn partition_crl_for_another_distribution_point_does_not_cover() {
    let a = ca();
    let cert = leaf(&a, &[9], Some("http://crl.example/a.crl"));
    let other = crl(&a, 1, &[], Some(("http://crl.example/b.crl", None)));
    assert!(matches!(
        status(&a, &cert, vec![other]),
        CrlStatus::Undetermined(..)
    ));
    let same = crl(&a, 1, &[], Some(("http://crl.example/a.crl", None)));
    assert!(matches!(
        status(&a, &cert, vec![same]),
        CrlStatus::Good { .. }
    ));
}

#[test]
fn only_ca_certs_crl_does_not_cover_a_leaf_and_user_certs_one_does() {
    let a = ca();
    let cert = leaf(&a, &[9], Some("http://crl.example/a.crl"));
    let ca_only = crl(
        &a,
        1,
        &[],
        Some(("http://crl.example/a.crl", Some(CrlScope::CaCertsOnly))),
    );
    assert!(matches!(
        status(&a, &cert, vec![ca_only]),
        CrlStatus::Undetermined(..)
    ));
    let users = crl(
        &a,
        1,
        &[],
        Some(("http://crl.example/a.crl", Some(CrlScope::UserCertsOnly))),
    );
    assert!(matches!(
        status(&a, &cert, vec![users]),
        CrlStatus::Good { .. }
    ));
}

#[test]
fn any_crl_in_scope_that_lists_the_certificate_wins() {
    // A configured file saying "good" and a distribution-point CRL saying "revoked".
    let a = ca();
    let cert = leaf(&a, &[9], None);
    let good = crl(&a, 1, &[], None);
    let revoked = crl(&a, 2, &[&[9]], None);
    assert!(matches!(
        status(&a, &cert, vec![good, revoked]),
        CrlStatus::Revoked { .. }
    ));
}

#[test]
fn crl_signed_by_a_key_without_crl_sign_is_not_used() {
    // The trusted certificate lacks cRLSign; the same key signs a CRL anyway (rcgen is
    // given parameters that allow it).
    let signing = ca();
    let mut params = signing.params.clone();
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let der = params.self_signed(&signing.key).expect("ca").der().to_vec();
    let a = Ca {
        cert: Arc::new(ParsedCert::parse(&der).expect("parse")),
        params: signing.params,
        key: signing.key,
    };
    let cert = leaf(&a, &[9], None);
    let c = crl(&a, 1, &[], None);
    match status(&a, &cert, vec![c]) {
        CrlStatus::Undetermined(why, _) => assert!(why.contains("cRLSign"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn der_is_released_once_the_entries_are_read_and_only_the_verified_key_still_verifies() {
    let a = ca();
    let b = ca();
    let c = crl(&a, 1, &[&[5], &[6]], None);
    assert!(c.der().is_some_and(|d| d.len() == c.der_len()));
    c.verified_entries(&a.cert, algs()).expect("verifies");
    assert!(c.der().is_none(), "DER kept after the entries were read");
    // The key it verified with still verifies (another certificate of that key too)...
    c.verify_signature(&a.cert, algs()).expect("same key");
    let again = Ca {
        cert: Arc::new(
            ParsedCert::parse(a.params.self_signed(&a.key).expect("ca").der()).expect("parse"),
        ),
        params: a.params.clone(),
        key: KeyPair::from_pem(&a.key.serialize_pem()).expect("key"),
    };
    c.verify_signature(&again.cert, algs())
        .expect("same key, other certificate");
    assert!(c.verified_entries(&a.cert, algs()).is_ok());
    // ...any other key does not, nor an algorithm the policy does not allow.
    assert!(matches!(
        c.verify_signature(&b.cert, algs()),
        Err(CrlError::BadSignature(_))
    ));
    assert!(matches!(
        c.verified_entries(&b.cert, algs()),
        Err(CrlError::BadSignature(_))
    ));
    assert!(matches!(
        c.verify_signature(&a.cert, &[]),
        Err(CrlError::BadSignature(_))
    ));
}

#[test]
fn unsorted_entries_with_removals_and_duplicates() {
    let a = ca();
    let now = time::OffsetDateTime::now_utc();
    let serial =
        |i: u32| ((i.wrapping_mul(2_654_435_761) & 0x00ff_ffff) | 0x0100_0000).to_be_bytes();
    let mut revoked: Vec<RevokedCertParams> = (0..3000u32)
        .map(|i| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial(i)),
            revocation_time: now - time::Duration::hours(1),
            reason_code: (i % 10 == 0).then_some(rcgen::RevocationReason::RemoveFromCrl),
            invalidity_date: None,
        })
        .collect();
    // A duplicate entry.
    revoked.push(RevokedCertParams {
        serial_number: SerialNumber::from_slice(&serial(7)),
        revocation_time: now - time::Duration::hours(1),
        reason_code: None,
        invalidity_date: None,
    });
    let der = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + time::Duration::hours(1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&Issuer::new(a.params.clone(), &a.key))
    .expect("crl")
    .der()
    .to_vec();
    let c = Crl::parse(&der).expect("parse");
    let e = c.verified_entries(&a.cert, algs()).expect("entries");
    assert_eq!(e.len(), 2700);
    for i in 0..3000u32 {
        assert_eq!(
            e.contains(&a.cert.subject, &serial(i)),
            i % 10 != 0,
            "serial {i}"
        );
    }
    assert!(!e.contains(&a.cert.subject, &[1, 2, 3]));
}
