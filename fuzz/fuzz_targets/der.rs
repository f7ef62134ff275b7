//! The hand-written DER reader (`revocation::der`): nested TLV walking, times, BIT STRINGs,
//! serials, with its invariants asserted (`gateway::fuzzing::der_walk`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway::fuzzing::der_walk(data);
});
