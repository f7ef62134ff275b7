//! `cargo xtask crl-memory [RUNS] [--entries N]`: time to the first answer and RSS growth of
//! a release gateway (one worker) that fetches a big CRL (1,000,000 entries, 24 MB of DER by
//! default) from a client certificate's distribution point. The measurement itself is
//! `benches/src/bin/crlmem.rs`; this builds it and the gateway in release mode and runs it.
//! Figures and the target are in BENCHMARKS.md ("Big CRL: time and memory").

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::run;

/// Builds the release gateway and `crlmem`, then runs `RUNS` measurements (default 3).
///
/// # Errors
/// A build failure, bad arguments, or a failed run (the gateway did not start, the good
/// client was refused or the listed one served).
pub fn crl_memory(root: &Path, args: &[String]) -> Result<()> {
    let mut runs = "3".to_string();
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--entries" => {
                extra.push(a.clone());
                extra.push(it.next().context("--entries needs a value")?.clone());
            }
            n => {
                n.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("RUNS must be a positive number, not {n:?}"))?;
                runs = n.to_string();
            }
        }
    }
    let (gateway, crlmem) = crate::build_gateway_and(root, "crlmem")?;
    run(Command::new(crlmem)
        .arg("--gateway")
        .arg(gateway)
        .arg("--dir")
        .arg(root.join("target/crl-memory"))
        .args(["--runs", &runs])
        .args(&extra))
}
