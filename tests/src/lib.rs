//! Test support: a real PKI made with rcgen (and openssl for what rcgen refuses to make),
//! an in-process gateway on loopback, a header-echo backend, and real clients (curl,
//! openssl s_client, rustls).

pub mod backend;
pub mod clients;
pub mod gw;
pub mod pki;
pub mod raw;

/// Whether we run under CI (`CI=true`): tests that need a tool must not skip there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns true if `tool` is on PATH; outside CI prints a visible skip message when not.
///
/// # Panics
/// In CI, when the tool is missing (a silent skip would hide a missing install step).
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{tool} is required in CI but not installed");
        eprintln!("SKIPPED: {tool} not installed (run `cargo xtask install-peers`)");
    }
    found
}
