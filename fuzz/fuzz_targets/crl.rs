//! The CRL parser (`revocation::crl`): DER or PEM input, parsed (`Crl::parse`), freshness
//! judged, then the signature checked against the fixture CA and, when it verifies, the
//! entries read. Seeds: a real CRL of that CA.
#![no_main]

use gateway::pki::path::ParsedCert;
use gateway::revocation::crl::{self, Crl};

const CA: &[u8] = include_bytes!("../fixtures/ca.der");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(der) = crl::to_der(data) else {
        return;
    };
    let Ok(c) = Crl::parse(&der) else {
        return;
    };
    assert_eq!(c.der().as_deref(), Some(&der[..]));
    let now = 1_800_000_000;
    let _ = c.is_current(now, 300);
    let _ = crl::check_times(&c, now, 300);
    assert_eq!(c.entry_count(), 0, "no entries before a signature verified");
    let issuer = ParsedCert::parse(CA).expect("fixture CA parses");
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    if let Ok(entries) = c.verified_entries(&issuer, algs) {
        // Only the fixture CA's own signature gets here.
        let _ = entries.len();
        assert_eq!(c.entry_count(), entries.len());
        // The DER is released once the entries are read; the verified key still verifies.
        assert!(c.der().is_none());
        assert!(c.verify_signature(&issuer, algs).is_ok());
    }
});
