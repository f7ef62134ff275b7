//! The canonical path normaliser (`proxy::path::canonicalize`) under each option set:
//! the canonical form is origin-form, has no dot segments (and no empty segments when
//! slashes are merged), and is a fixed point: normalising it again gives itself.
#![no_main]

use gateway::proxy::path::{canonicalize, PathOptions};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let opts = PathOptions {
        allow_encoded_slash: sel & 1 != 0,
        allow_backslash: sel & 2 != 0,
        allow_semicolon: sel & 4 != 0,
        merge_slashes: sel & 8 != 0,
        case_insensitive: sel & 16 != 0,
    };
    let Ok(c) = canonicalize(raw, &opts) else {
        return;
    };
    let s = c.as_str();
    assert!(s.starts_with('/'), "{raw:?} -> {s:?}");
    for seg in s.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "dot segment left: {raw:?} -> {s:?}"
        );
    }
    if opts.merge_slashes {
        assert!(!s.contains("//"), "{raw:?} -> {s:?}");
    }
    let again = canonicalize(s, &opts).unwrap_or_else(|e| panic!("{raw:?} -> {s:?} -> {e}"));
    assert_eq!(again.as_str(), s, "not a fixed point: {raw:?}");
    assert!(c.covered_by("/"));
});
