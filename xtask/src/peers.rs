//! Test peers from Debian: installed when missing, so a fresh machine needs nothing by hand.

use std::process::Command;

use anyhow::Result;

use crate::run;

/// (command that must exist, Debian package providing it)
const PEERS: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("setpriv", "util-linux"),
    ("nginx", "nginx"),
    ("strace", "strace"),
];

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {cmd} >/dev/null 2>&1 || test -x /usr/sbin/{cmd}"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs extra (command, package) pairs when missing (benchmark peers).
///
/// # Errors
/// If apt-get fails.
pub fn ensure_extra(extra: &[(&str, &str)]) -> Result<()> {
    install(
        extra
            .iter()
            .filter(|(c, _)| !have(c))
            .map(|(_, p)| *p)
            .collect(),
    )
}

/// Installs every missing peer with apt-get (as root; elsewhere with sudo if available).
///
/// # Errors
/// If apt-get fails.
pub fn ensure() -> Result<()> {
    install(
        PEERS
            .iter()
            .filter(|(cmd, _)| !have(cmd))
            .map(|(_, pkg)| *pkg)
            .collect(),
    )
}

fn install(missing: Vec<&str>) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing test peers: {}", missing.join(" "));
    // SAFETY-free check of effective uid through `id -u`.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]))?;
    run(apt(&["install", "-y", "-q", "--no-install-recommends"]).args(&missing))?;
    Ok(())
}
