//! The one skip policy of the project's tests.
//!
//! A test that needs root, a peer program (curl, openssl, strace, ...) or the eBPF programs
//! asks [`can_run`] (or [`require_tool`]) first. Outside CI a missing prerequisite skips the
//! test: it says so on stderr (`SKIPPED: <test>: needs ...`) and, when `cargo xtask test`
//! set `GATEWAY_TEST_SKIPS`, appends the same line to that file so the summary counts the
//! test as skipped, not passed. Under `CI=true` the test fails instead: a silent skip would
//! hide a missing install step.
//!
//! Only `std` is used, so the gateway crate's own integration tests include this file too
//! (`#[path = "../../tests/src/skip.rs"] mod skip;`) and every test follows one policy.

use std::io::Write as _;

/// The environment variable naming the file skips are recorded in (set by `cargo xtask`).
pub const SKIP_LOG_ENV: &str = "GATEWAY_TEST_SKIPS";

/// The marker a skipped test prints and records, followed by `<test>: <reason>`.
pub const SKIP_MARKER: &str = "SKIPPED: ";

/// Whether we run under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is on `PATH`.
pub fn have_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the process runs with effective uid 0 (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The running test's name (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// Whether the current test can run, given the prerequisites that are `missing` (each
/// phrased as what is needed). Empty: `true`. Otherwise, outside CI the skip is printed and
/// recorded and `false` returned (the test returns early); under `CI=true` it panics.
///
/// # Panics
/// Under `CI=true` when something is missing.
pub fn can_run(missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let test = current_test();
    let reason = format!("needs {}", missing.join(", "));
    assert!(!in_ci(), "{test}: CI=true but it cannot run: {reason}");
    record_skip(&test, &reason);
    false
}

/// Whether `tool` is installed; when not, the current test is skipped (see [`can_run`]).
///
/// # Panics
/// Under `CI=true` when the tool is missing.
pub fn require_tool(tool: &str) -> bool {
    have_tool(tool)
        || can_run(&[format!(
            "the `{tool}` command (run `cargo xtask install-peers`)"
        )])
}

/// Prints the skip marker and appends it to the skip log, if one is configured.
fn record_skip(test: &str, reason: &str) {
    let line = format!("{SKIP_MARKER}{test}: {reason}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
}
