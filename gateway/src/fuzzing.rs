//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): crate-private parsers
//! walked with their invariants asserted, so a violated invariant is a crash the fuzzer
//! reports. Not part of the gateway's API.

use crate::revocation::der::{self, Reader};

/// Walks `data` as nested DER with the crate's reader, recursing into constructed values
/// (at most `depth` levels), decoding times, BIT STRINGs and serials on the way.
///
/// Invariants checked: every TLV's raw encoding is its header followed by its value, the
/// TLVs of one level tile the input they were read from exactly, and decoded times are
/// within the range the encoding allows.
pub fn der_walk(data: &[u8]) {
    walk(data, 8);
}

fn walk(data: &[u8], depth: usize) {
    let mut r = Reader::new(data);
    let mut consumed = 0usize;
    while !r.is_empty() {
        let peek = r.peek_tag();
        let Ok(t) = r.any() else {
            return;
        };
        assert_eq!(peek, Some(t.tag));
        assert!(
            t.raw.len() >= 2 + t.value.len(),
            "header of at least 2 bytes"
        );
        assert!(t.raw.ends_with(t.value), "raw = header + value");
        assert_eq!(
            &data[consumed..consumed + t.raw.len()],
            t.raw,
            "TLVs tile the input"
        );
        consumed += t.raw.len();
        match t.tag {
            der::tag::UTC_TIME | der::tag::GENERALIZED_TIME => {
                if let Ok(secs) = der::time(&t) {
                    // Years 0000..=9999 (GeneralizedTime) or 1950..=2049 (UTCTime).
                    assert!(
                        (-62_167_219_200..=253_402_300_800).contains(&secs),
                        "{secs}"
                    );
                    let s = der::fmt_time(secs);
                    assert!(!s.is_empty());
                }
            }
            der::tag::BIT_STRING => {
                if let Ok(b) = der::bit_string_bytes(&t) {
                    assert_eq!(b.len() + 1, t.value.len());
                }
            }
            der::tag::INTEGER => {
                let n = der::normalize_serial(t.value);
                assert!(n.len() <= t.value.len());
                assert!(n.len() <= 1 || n[0] != 0);
            }
            _ => {}
        }
        if t.tag & 0x20 != 0 && depth > 0 {
            walk(t.value, depth - 1);
        }
    }
    assert_eq!(consumed, data.len());
}
