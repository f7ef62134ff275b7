//! The instruction-count guard: `cargo xtask perf-check` (part of `cargo xtask test`) and
//! `cargo xtask perf-baseline`.
//!
//! Each scenario of `benches/src/bin/instr.rs` runs under `valgrind --tool=callgrind` twice,
//! with 0 and with N iterations, collecting only inside the server side (`--toggle-collect`);
//! the difference divided by N is the scenario's instruction count per operation. Instruction
//! counts do not depend on how busy the machine is, so the guard cannot be fooled by noise.
//! `perf-check` fails when a scenario grows by more than [`MAX_GROWTH`] over the committed
//! baseline (`benches/instructions.baseline`); only `perf-baseline` rewrites that file.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run;

/// Allowed growth over the baseline before the check fails.
pub const MAX_GROWTH: f64 = 0.03;

/// What is counted: inside a function (`--toggle-collect`), or the whole of the gateway's
/// worker thread (`--separate-threads=yes`, the thread whose profile holds
/// `gateway::conn::serve_connection`: the connection task and the backend pool's tasks).
#[derive(Clone, Copy)]
enum Collect {
    Inside(&'static str),
    WorkerThread,
}

/// (scenario, iterations, what is counted)
const SCENARIOS: &[(&str, u64, Collect)] = &[
    (
        "handshake-full",
        20,
        Collect::Inside("gateway_benches::server_side*"),
    ),
    (
        "handshake-resumed",
        20,
        Collect::Inside("gateway_benches::server_side*"),
    ),
    (
        "handshake-returning",
        20,
        Collect::Inside("gateway_benches::server_side*"),
    ),
    // Not the gateway's code: plain rustls with the same client, for the ratio in
    // BENCHMARKS.md (a change in rustls or aws-lc-rs shows here too).
    (
        "handshake-plain",
        20,
        Collect::Inside("gateway_benches::server_side*"),
    ),
    ("proxy-request", 200, Collect::WorkerThread),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn baseline_path() -> PathBuf {
    root().join("benches/instructions.baseline")
}

fn instr_arg(scenario: &str) -> &str {
    scenario
        .strip_prefix("handshake-")
        .unwrap_or(match scenario {
            "proxy-request" => "proxy",
            s => s,
        })
}

/// Runs `instr` under callgrind and returns the collected instruction total.
fn count(bin: &Path, scenario: &str, iters: u64, collect: Collect) -> Result<u64> {
    let dir = root().join("target/callgrind");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{scenario}.{iters}.out"));
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--trace-children=no"]);
    match collect {
        Collect::Inside(f) => cmd.arg(format!("--toggle-collect={f}")),
        Collect::WorkerThread => cmd.arg("--separate-threads=yes"),
    };
    let o = cmd
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .arg(instr_arg(scenario))
        .arg(iters.to_string())
        .output()
        .context("cannot run valgrind")?;
    if !o.status.success() {
        bail!(
            "instr {scenario} {iters} under callgrind failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let total = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    match collect {
        Collect::Inside(_) => {
            let text =
                std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
            total(&text).with_context(|| format!("no totals line in {}", out.display()))
        }
        Collect::WorkerThread => {
            // One file per thread (OUT-01, OUT-02, ...): the worker's holds the connection.
            for e in std::fs::read_dir(&dir)?.flatten() {
                let text = std::fs::read_to_string(e.path())?;
                if let (true, Some(t)) = (
                    text.contains("gateway::conn::serve_connection"),
                    total(&text),
                ) {
                    return Ok(t);
                }
            }
            bail!("{scenario}: no thread of instr ran gateway::conn::serve_connection")
        }
    }
}

/// Builds `instr` and measures every scenario: (name, instructions per operation).
fn measure() -> Result<Vec<(String, u64)>> {
    crate::peers::ensure_extra(&[("valgrind", "valgrind")])?;
    run(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "gateway-benches",
        "--bin",
        "instr",
    ]))?;
    let bin = root().join("target/release/instr");
    let mut v = Vec::new();
    for (name, n, collect) in SCENARIOS {
        let zero = count(&bin, name, 0, *collect)?;
        let many = count(&bin, name, *n, *collect)?;
        let per_op = many.saturating_sub(zero) / n;
        if per_op == 0 {
            bail!("{name}: no instructions counted (was the counted function inlined or renamed?)");
        }
        eprintln!("xtask perf: {name}: {per_op} instructions per operation");
        v.push((name.to_string(), per_op));
    }
    Ok(v)
}

fn read_baseline() -> Result<Vec<(String, u64)>> {
    let p = baseline_path();
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no baseline at {}: record one with `cargo xtask perf-baseline`",
            p.display()
        )
    })?;
    let mut v = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut it = l.split_whitespace();
        let (Some(name), Some(n)) = (it.next(), it.next()) else {
            bail!("{}: bad line {l:?} (want: NAME COUNT)", p.display());
        };
        v.push((
            name.to_string(),
            n.parse()
                .with_context(|| format!("{}: bad count in {l:?}", p.display()))?,
        ));
    }
    Ok(v)
}

/// `cargo xtask perf-check`: fails on more than 3 % growth in any scenario.
///
/// # Errors
/// If a scenario grew, the baseline is missing, or valgrind/instr fail.
pub fn check() -> Result<()> {
    let base = read_baseline()?;
    let now = measure()?;
    let mut failed = Vec::new();
    println!("| scenario | baseline | now | change |\n| --- | --- | --- | --- |");
    for (name, n) in &now {
        let Some((_, b)) = base.iter().find(|(bn, _)| bn == name) else {
            failed.push(format!(
                "{name}: not in the baseline (run `cargo xtask perf-baseline`)"
            ));
            continue;
        };
        let change = *n as f64 / *b as f64 - 1.0;
        println!("| {name} | {b} | {n} | {:+.2} % |", change * 100.0);
        if change > MAX_GROWTH {
            failed.push(format!(
                "{name}: {n} instructions per operation, {:+.2} % over the baseline {b} (limit +{:.0} %)",
                change * 100.0,
                MAX_GROWTH * 100.0
            ));
        }
    }
    if !failed.is_empty() {
        bail!(
            "instruction-count guard failed:\n  {}\nIf the growth is intended, say why in the commit and run `cargo xtask perf-baseline`.",
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// `cargo xtask perf-baseline`: measures and rewrites the committed baseline.
///
/// # Errors
/// If valgrind/instr fail or the file cannot be written.
pub fn record() -> Result<()> {
    let now = measure()?;
    let mut text = String::from(
        "# Instructions per operation, server side, counted by callgrind (cargo xtask perf-baseline).\n\
         # cargo xtask perf-check (run by cargo xtask test) fails on more than 3 % growth.\n",
    );
    for (name, n) in &now {
        text.push_str(&format!("{name} {n}\n"));
    }
    std::fs::write(baseline_path(), text)?;
    println!("wrote {}", baseline_path().display());
    Ok(())
}
