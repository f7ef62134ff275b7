//! Building the eBPF object: toolchain bootstrap (rust-src for nightly, bpf-linker against
//! nightly's own libLLVM, both idempotent into `./.tools/`) and the nightly build of `ebpf/`.
//!
//! The gateway's `build.rs` finds the linker installed here (`.tools/bpf-linker/bin`) and
//! embeds the object; without it the gateway still builds, with the reuseport fallback only.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The bpf-linker release installed into `.tools/bpf-linker`.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// The toolchain that compiles `ebpf/` (needs `-Z build-std`).
pub const NIGHTLY: &str = "nightly";

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// Path of the bpf-linker binary that [`install_tools`] installs.
pub fn bpf_linker_path(root: &Path) -> PathBuf {
    root.join(".tools/bpf-linker/bin/bpf-linker")
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd.get_program());
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs rust-src for nightly and bpf-linker (linked against nightly's own libLLVM) into
/// `./.tools/`. Does nothing for the parts already present.
///
/// # Errors
/// When nightly is not installed, rustup cannot add rust-src, or `cargo install` fails.
pub fn install_tools(root: &Path) -> Result<()> {
    let components = output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", NIGHTLY],
    )
    .context(
        "the nightly toolchain is needed for the eBPF programs (rustup toolchain install nightly)",
    )?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }

    let linker = bpf_linker_path(root);
    let stamp = root.join(".tools/bpf-linker/.version");
    let sysroot = output("rustc", &[&format!("+{NIGHTLY}"), "--print", "sysroot"])?;
    let sysroot = PathBuf::from(sysroot.trim());
    let verbose = output("rustc", &[&format!("+{NIGHTLY}"), "-vV"])?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV did not report an LLVM version")?
        .to_string();
    let want_stamp = format!("{BPF_LINKER_VERSION} llvm-{major} {}", sysroot.display());
    if linker.exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want_stamp.as_str())
    {
        return Ok(());
    }

    let lib = std::fs::read_dir(sysroot.join("lib"))
        .context("reading the nightly sysroot")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .context("nightly ships no libLLVM.so.*-rust-* in its sysroot")?;
    let llvm = root.join(".tools/llvm");
    let llvm_lib = llvm.join("lib");
    std::fs::create_dir_all(&llvm_lib)?;
    for name in [
        "libLLVM.so".to_string(),
        lib.file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default()
            .to_string(),
    ] {
        let link = llvm_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .env("LLVM_PREFIX", &llvm)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--root",
        ])
        .arg(root.join(".tools/bpf-linker")))?;
    std::fs::write(&stamp, want_stamp)?;
    Ok(())
}

/// Builds `ebpf/` with nightly into `target/ebpf/` and returns the object paths.
///
/// # Errors
/// When the toolchain is missing (run [`install_tools`] first) or the build fails.
pub fn build(root: &Path) -> Result<Vec<PathBuf>> {
    let linker = bpf_linker_path(root);
    if !linker.exists() {
        bail!(
            "{} is missing: run `cargo xtask install-tools`",
            linker.display()
        );
    }
    let target_dir = root.join("target/ebpf");
    run(Command::new("rustup")
        .current_dir(root.join("ebpf"))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &linker)
        .args([
            "run",
            NIGHTLY,
            "cargo",
            "build",
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--target-dir",
        ])
        .arg(&target_dir))?;
    let out = target_dir.join("bpfel-unknown-none/release");
    let objs = ["steer-xdp", "steer-reuseport"]
        .map(|n| out.join(n))
        .to_vec();
    for o in &objs {
        if !o.exists() {
            bail!("the eBPF build did not produce {}", o.display());
        }
    }
    Ok(objs)
}

/// Everything the tests need: tools installed and the eBPF object built, so that the
/// gateway's build script embeds the real programs. Called first by `cargo xtask test`.
///
/// # Errors
/// See [`install_tools`] and [`build`].
pub fn ensure() -> Result<()> {
    let root = workspace_root();
    install_tools(&root)?;
    build(&root)?;
    Ok(())
}
