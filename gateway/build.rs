//! Builds and embeds the eBPF programs (`ebpf/`) when the eBPF toolchain is available:
//! nightly with rust-src and bpf-linker (`./.tools/bpf-linker/bin`, from
//! `cargo xtask install-tools`, or on PATH). Without it the gateway still builds: the objects
//! are embedded empty, and at run time steering falls back to classic-BPF reuseport.
//!
//! `GATEWAY_EBPF=skip` never builds them; `GATEWAY_EBPF=require` fails the build when they
//! cannot be built (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

const OBJECTS: [&str; 2] = ["steer-xdp", "steer-reuseport"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or(manifest);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let tools_bin = root.join(".tools/bpf-linker/bin");
    // Watched so that installing the linker rebuilds with the real programs.
    let _ = std::fs::create_dir_all(&tools_bin);
    for p in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf/Cargo.lock",
        "common/src",
        "common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-changed={}", tools_bin.display());
    println!("cargo:rerun-if-env-changed=GATEWAY_EBPF");

    let policy = std::env::var("GATEWAY_EBPF").unwrap_or_default();
    let status = if policy == "skip" {
        Err("GATEWAY_EBPF=skip".to_string())
    } else {
        build(&root, &tools_bin)
    };
    match status {
        Ok(dir) => {
            for name in OBJECTS {
                let from = dir.join(name);
                if let Err(e) = std::fs::copy(&from, out.join(name)) {
                    panic!("copying {}: {e}", from.display());
                }
            }
            write(&out.join("ebpf-status"), "");
        }
        Err(why) => {
            if policy == "require" {
                panic!("GATEWAY_EBPF=require but the eBPF programs could not be built: {why}");
            }
            println!(
                "cargo:warning=gateway built WITHOUT eBPF steering programs ({why}); \
                 run `cargo xtask build-ebpf` to enable XDP/SK_REUSEPORT steering"
            );
            for name in OBJECTS {
                write(&out.join(name), "");
            }
            write(&out.join("ebpf-status"), &why);
        }
    }
}

fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("writing {}: {e}", path.display());
    }
}

fn find_linker(tools_bin: &Path) -> Option<PathBuf> {
    let local = tools_bin.join("bpf-linker");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("bpf-linker"))
            .find(|p| p.exists())
    })
}

fn build(root: &Path, tools_bin: &Path) -> Result<PathBuf, String> {
    let linker = find_linker(tools_bin).ok_or("bpf-linker not found")?;
    let target_dir = root.join("target/ebpf");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root.join("ebpf"))
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        // Settings meant for this (host, stable) build must not leak into the nested one.
        if k.starts_with("CARGO_") && k != "CARGO_HOME"
            || matches!(
                k.as_str(),
                "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTUP_TOOLCHAIN"
                    | "RUSTDOC"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &linker);
    let output = cmd
        .output()
        .map_err(|e| format!("could not run rustup: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("nightly eBPF build failed: {}", tail.join(" | ")));
    }
    Ok(target_dir.join("bpfel-unknown-none/release"))
}
