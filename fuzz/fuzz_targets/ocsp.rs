//! The OCSP response parser and verifier (`revocation::ocsp::verify_response`) for the
//! fixture leaf and CA: every byte string is either a well-formed, correctly signed answer
//! for exactly that certificate, or an error; never a panic. Seeds: real responses.
#![no_main]

use gateway::revocation::cert::CertInfo;
use gateway::revocation::ocsp::{self, Freshness};
use gateway::revocation::CertIdHash;

const CA: &[u8] = include_bytes!("../fixtures/ca.der");
const LEAF: &[u8] = include_bytes!("../fixtures/leaf.der");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let issuer = CertInfo::parse(CA).expect("fixture CA parses");
    let leaf = CertInfo::parse(LEAF).expect("fixture leaf parses");
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    for hash in [CertIdHash::Sha1, CertIdHash::Sha256] {
        let req = ocsp::build_request(&leaf, &issuer, hash, None).expect("request");
        let at = Freshness {
            now: 1_800_000_000,
            skew: 300,
            max_age: 3600,
        };
        let _ = ocsp::verify_response(data, &leaf, &issuer, &req, &provider, at);
    }
});
