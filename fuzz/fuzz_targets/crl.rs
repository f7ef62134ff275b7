//! The CRL parser (`revocation::crl`): DER or PEM input, parsed, then verified against the
//! fixture CA (issuer match, cRLSign, signature, freshness). Seeds: a real CRL of that CA.
#![no_main]

use gateway::revocation::cert::CertInfo;
use gateway::revocation::crl;

const CA: &[u8] = include_bytes!("../fixtures/ca.der");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(der) = crl::to_der(data) else {
        return;
    };
    let Ok(parsed) = crl::parse(&der) else {
        return;
    };
    assert!(parsed.tbs.len() < der.len());
    if let Some(next) = parsed.next_update {
        let _ = next.checked_sub(parsed.this_update);
    }
    let issuer = CertInfo::parse(CA).expect("fixture CA parses");
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let now = 1_800_000_000;
    if let Ok(c) = parsed.verify(&issuer, &provider, now, 300) {
        // Only the fixture CA's own signature gets here: the answer must be consistent.
        assert!(c.is_current(now, 300));
        let _ = c.is_revoked(&[0x10, 0x01]);
    }
});
