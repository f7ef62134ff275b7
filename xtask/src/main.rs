//! Project tasks. `cargo xtask <task>`:
//! - `install-tools`: rust-src for nightly and bpf-linker into `./.tools/` (idempotent);
//! - `build-ebpf`: install-tools, then build the eBPF object (`ebpf/`) into `target/ebpf/`;
//! - `test`: both of the above, then `cargo test --workspace` (CI entry point).

mod ebpf;

use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let rest: Vec<String> = std::env::args().skip(2).collect();
    let root = ebpf::workspace_root();
    match task.as_str() {
        "install-tools" => ebpf::install_tools(&root),
        "build-ebpf" => {
            ebpf::install_tools(&root)?;
            for o in ebpf::build(&root)? {
                println!("{}", o.display());
            }
            Ok(())
        }
        "test" => {
            ebpf::ensure()?;
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&root)
                .args(["test", "--workspace"])
                .args(&rest)
                .status()
                .context("could not start cargo test")?;
            if !status.success() {
                bail!("cargo test failed with {status}");
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask <install-tools | build-ebpf | test [cargo test args]>");
            bail!("unknown task {task:?}")
        }
    }
}
