//! `cargo xtask fuzz SECS`: every cargo-fuzz target in `fuzz/` for SECS seconds each.
//!
//! cargo-fuzz is installed into `./.tools/bin` when missing, the targets are built with
//! nightly (`fuzz/` is its own workspace). Each target starts from its committed seeds
//! (`fuzz/corpus/TARGET`, read-only) plus a working corpus in `target/fuzz-corpus/TARGET`
//! (new inputs go there, so runs never modify the committed corpus). A crash fails the task
//! and names the reproducer in `fuzz/artifacts/TARGET/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::ebpf::NIGHTLY;
use crate::run;

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &["crl", "ocsp", "der", "proxy_v2", "config", "path"];

/// One target's run.
#[derive(Debug, Clone)]
pub struct FuzzRun {
    /// Target name.
    pub target: String,
    /// Executions (libFuzzer's `Done N runs`).
    pub execs: u64,
    /// Seconds run.
    pub secs: u64,
    /// Coverage points at the end (`cov:`), when reported.
    pub cov: Option<u64>,
    /// Corpus entries at the end.
    pub corpus: Option<u64>,
}

fn cargo_fuzz(root: &Path) -> PathBuf {
    root.join(".tools/bin/cargo-fuzz")
}

/// Installs nightly (if missing) and cargo-fuzz into `./.tools`.
///
/// # Errors
/// If rustup or cargo install fails.
pub fn install(root: &Path) -> Result<()> {
    let have_nightly = Command::new("rustc")
        .arg(format!("+{NIGHTLY}"))
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_nightly {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    if !cargo_fuzz(root).exists() {
        run(Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked", "--root"])
            .arg(root.join(".tools")))?;
    }
    Ok(())
}

fn fuzz_cmd(root: &Path) -> Command {
    // `rustup run nightly`: cargo-fuzz and the cargo it calls run with nightly first in PATH.
    let mut c = Command::new("rustup");
    c.args(["run", NIGHTLY])
        .arg(cargo_fuzz(root))
        .arg("fuzz")
        .current_dir(root.join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// Parses libFuzzer's final lines.
fn parse_stats(target: &str, secs: u64, log: &str) -> FuzzRun {
    let mut r = FuzzRun {
        target: target.to_string(),
        execs: 0,
        secs,
        cov: None,
        corpus: None,
    };
    for line in log.lines() {
        // "Done 123456 runs in 30 second(s)"
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut it = rest.split_whitespace();
            if let Some(n) = it.next().and_then(|n| n.parse().ok()) {
                r.execs = n;
            }
            if let Some(s) = it.nth(2).and_then(|n| n.parse().ok()) {
                r.secs = s;
            }
        }
        // "#123456 DONE   cov: 1234 ft: 5678 corp: 90/12Kb ..." or any status line.
        if line.starts_with('#') {
            let words: Vec<&str> = line.split_whitespace().collect();
            for w in words.windows(2) {
                match w[0] {
                    "cov:" => r.cov = w[1].parse().ok(),
                    "corp:" => r.corpus = w[1].split('/').next().and_then(|n| n.parse().ok()),
                    _ => {}
                }
            }
        }
    }
    r
}

/// Builds every target and runs each for `secs` seconds.
///
/// # Errors
/// A failed build, or a target that crashed (its reproducer is named).
pub fn fuzz(root: &Path, secs: u64) -> Result<Vec<FuzzRun>> {
    install(root)?;
    // No sanitizer: the targets are safe Rust (the fuzzer still finds panics, overflows
    // with debug assertions, and violated invariants), and the build stays fast.
    run(fuzz_cmd(root).args(["build", "-s", "none", "--debug-assertions"]))?;
    let mut out = Vec::new();
    for target in TARGETS {
        let work = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)?;
        let seeds = root.join("fuzz/corpus").join(target);
        eprintln!("xtask: fuzzing {target} for {secs} s");
        let o = fuzz_cmd(root)
            .args(["run", "-s", "none", "--debug-assertions", target])
            .arg(&work)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"])
            .output()
            .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
        let log = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({}); reproducer in fuzz/artifacts/{target}/:\n{}",
                o.status,
                tail.join("\n")
            );
        }
        let r = parse_stats(target, secs, &log);
        println!(
            "fuzz {:<9} {:>10} execs in {:>4} s ({:>7} exec/s), cov {}, corpus {}: no crash",
            r.target,
            r.execs,
            r.secs,
            r.execs / r.secs.max(1),
            r.cov.map_or("?".into(), |c| c.to_string()),
            r.corpus.map_or("?".into(), |c| c.to_string()),
        );
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_final_lines() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 3/1Kb exec/s: 0 rss: 40Mb\n\
                   #65536\tpulse  cov: 500 ft: 900 corp: 77/4Kb lim: 100 exec/s: 9000 rss: 60Mb\n\
                   #270000\tDONE   cov: 512 ft: 999 corp: 80/5Kb lim: 200 exec/s: 9000 rss: 61Mb\n\
                   Done 270000 runs in 30 second(s)\n";
        let r = parse_stats("der", 0, log);
        assert_eq!(r.execs, 270_000);
        assert_eq!(r.secs, 30);
        assert_eq!(r.cov, Some(512));
        assert_eq!(r.corpus, Some(80));
    }
}
