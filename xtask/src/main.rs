//! Project tasks. `cargo xtask test` is what CI runs: it installs the test peers (curl,
//! openssl, ...) from Debian when missing, then runs the whole test suite with both crypto
//! providers, plus fmt and clippy. Before anything it sets up the eBPF toolchain (rust-src,
//! bpf-linker in `./.tools/`) and builds the eBPF programs, so the tests use the real ones.

mod compare;
mod crlmem;
mod ebpf;
mod fuzz;
mod peers;
mod perf;
mod pkits;
mod soak;

use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("install-peers") => peers::ensure(),
        Some("lint") => lint(),
        Some("perf-check") => perf::check(),
        Some("perf-baseline") => perf::record(),
        Some("install-tools") => ebpf::install_tools(&ebpf::workspace_root()),
        Some("build-ebpf") => {
            let root = ebpf::workspace_root();
            ebpf::install_tools(&root)?;
            for obj in ebpf::build(&root)? {
                println!("{}", obj.display());
            }
            Ok(())
        }
        Some("fuzz") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            fuzz::fuzz(&ebpf::workspace_root(), secs).map(|_| ())
        }
        Some("soak") => soak::soak(
            &ebpf::workspace_root(),
            soak::minutes(args.get(1))?,
            soak::CI_BOUNDS,
        ),
        Some("compare") => compare::compare(&compare::Options::parse(&args[1..])?),
        Some("crl-memory") => crlmem::crl_memory(&ebpf::workspace_root(), &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test           install test peers, then fmt/clippy and every test (what CI runs)\n  \
                 install-peers  install curl, openssl and the other test peers from Debian\n  \
                 lint           cargo fmt --check, clippy -D warnings, no module import cycle\n  \
                 perf-check     instruction counts (callgrind) of the hot paths vs benches/instructions.baseline\n  \
                 perf-baseline  measure and rewrite benches/instructions.baseline (explicit only)\n  \
                 install-tools  rust-src for nightly and bpf-linker into ./.tools (idempotent)\n  \
                 build-ebpf     install-tools, then build the eBPF programs into target/ebpf\n  \
                 compare [SECS] [--rounds N] [--idle N] [--only w1,w2] [--no-floor]\n                \
                 gateway vs nginx, pinned, interleaved rounds, medians and ratios\n  \
                 crl-memory [RUNS] [--entries N]\n                \
                 time to first answer and RSS growth with a 1M-entry CRL from a distribution point\n  \
                 soak [MINUTES] mixed traffic against a release gateway; RSS and fds over time (default 2)\n  \
                 fuzz [SECS]    every cargo-fuzz target in fuzz/ for SECS s each (default 60; nightly, cargo-fuzz in ./.tools)"
            );
            bail!("no command given")
        }
    }
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

/// Builds the release gateway and one binary of `gateway-benches` (`loadgen` for `compare`
/// and `soak`, `crlmem` for `crl-memory`) and returns their paths under
/// `root/target/release`.
fn build_gateway_and(
    root: &std::path::Path,
    bench_bin: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "gateway",
        "-p",
        "gateway-benches",
        "--bin",
        "gateway",
        "--bin",
        bench_bin,
    ]))?;
    let release = root.join("target/release");
    Ok((release.join("gateway"), release.join(bench_bin)))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The modules of gateway/src import each other top-down only (ARCHITECTURE.md).
    run(cargo().args(["test", "-p", "gateway", "--test", "module_cycles"]))
}

/// Seconds each fuzz target runs in `cargo xtask test` (6 targets: 3 minutes, plus the
/// nightly build of the fuzz workspace).
const FUZZ_SECS_IN_TEST: u64 = 30;

fn test(extra: &[String]) -> Result<()> {
    // First: the gateway's build script embeds the eBPF programs only when they can be built.
    ebpf::ensure()?;
    peers::ensure()?;
    pkits::ensure(&ebpf::workspace_root())?;
    lint()?;
    let mut total = Tally::default();
    // The benchmarks compile and run one iteration each (a smoke test, not a measurement).
    total += run_tests(cargo().args(["test", "-p", "gateway-benches", "--benches"]))?;
    // The ring provider: the gateway's own tests with ring only.
    total += run_tests(
        cargo()
            .args([
                "test",
                "-p",
                "gateway",
                "--no-default-features",
                "--features",
                "ring",
            ])
            .args(extra),
    )?;
    // The default build (aws-lc-rs) runs everything.
    total += run_tests(cargo().args(["test", "--workspace"]).args(extra))?;
    // Instruction counts of the handshake and proxy hot paths against the committed baseline.
    let perf = perf::check();
    println!(
        "summary: {} passed, {} failed, {} skipped at run time, {} ignored",
        total.passed,
        total.failed,
        total.skipped.len(),
        total.ignored
    );
    for s in &total.skipped {
        println!("  skipped: {s}");
    }
    if total.failed > 0 {
        bail!("{} tests failed", total.failed);
    }
    // Two minutes of mixed traffic against a release build; fails on memory or descriptor
    // growth (bounds in xtask/src/soak.rs).
    soak::soak(&ebpf::workspace_root(), 2.0, soak::CI_BOUNDS)?;
    // Each fuzz target for a bounded time (a crash fails the run).
    fuzz::fuzz(&ebpf::workspace_root(), FUZZ_SECS_IN_TEST)?;
    perf
}

/// Test counts summed over `cargo test` runs. A test that skipped itself at run time
/// (`tests/src/skip.rs`: a missing peer outside CI) reports success to libtest; it is moved
/// from `passed` to `skipped` here.
#[derive(Debug, Default, Clone)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// `<test>: <reason>` of each run-time skip.
    skipped: Vec<String>,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.skipped.extend(o.skipped);
    }
}

/// Where skipping tests record themselves (`GATEWAY_TEST_SKIPS`, see tests/src/skip.rs).
const SKIP_LOG_ENV: &str = "GATEWAY_TEST_SKIPS";
const SKIP_MARKER: &str = "SKIPPED: ";

/// Runs a `cargo test` command, streaming its output, and sums its `test result:` lines.
fn run_tests(cmd: &mut Command) -> Result<Tally> {
    use std::io::{BufRead, BufReader, Write};
    let skip_log = ebpf::workspace_root()
        .join("target")
        .join("xtask-test-skips.txt");
    if let Some(dir) = skip_log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&skip_log, "")
        .with_context(|| format!("cannot reset {}", skip_log.display()))?;
    cmd.env(SKIP_LOG_ENV, &skip_log);
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut t = Tally::default();
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let line = line?;
            let _ = writeln!(stdout, "{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let mut it = part.split_whitespace().rev();
                    let (Some(word), Some(n)) = (it.next(), it.next()) else {
                        continue;
                    };
                    let Ok(n) = n.parse::<u64>() else { continue };
                    match word {
                        "passed" => t.passed += n,
                        "failed" => t.failed += n,
                        "ignored" => t.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let st = child.wait()?;
    t.skipped = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(SKIP_MARKER))
        .map(str::to_string)
        .collect();
    // Each skipped test finished as "ok" in libtest's count.
    t.passed = t.passed.saturating_sub(t.skipped.len() as u64);
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(t)
}
