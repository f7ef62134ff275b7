//! The NIST PKITS test data (certificates and CRLs), from the pinned pip package
//! `cryptography-vectors`, installed into `./.tools/pyvectors` (not committed). The test
//! `tests/tests/pkits.rs` reads `x509/PKITS_data` there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::run;

/// The pinned version of the package.
pub const VERSION: &str = "50.0.2";

/// Where the data lands, relative to the workspace root.
pub fn data_dir(root: &Path) -> PathBuf {
    root.join(".tools/pyvectors/cryptography_vectors/x509/PKITS_data")
}

/// Installs the package with pip when the data is missing (python3 and pip from Debian
/// when those are missing too).
///
/// # Errors
/// When pip fails.
pub fn ensure(root: &Path) -> Result<()> {
    let target = root.join(".tools/pyvectors");
    let stamp = target.join(format!("cryptography_vectors-{VERSION}.dist-info"));
    if data_dir(root)
        .join("certs/TrustAnchorRootCertificate.crt")
        .exists()
        && stamp.exists()
    {
        return Ok(());
    }
    crate::peers::ensure_extra(&[("python3", "python3"), ("pip3", "python3-pip")])?;
    eprintln!(
        "xtask: installing cryptography-vectors=={VERSION} (PKITS data) into {}",
        target.display()
    );
    let _ = std::fs::remove_dir_all(&target);
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--break-system-packages",
            "--target",
        ])
        .arg(&target)
        .arg(format!("cryptography-vectors=={VERSION}")))?;
    if !data_dir(root).exists() {
        bail!(
            "cryptography-vectors installed but {} is missing",
            data_dir(root).display()
        );
    }
    Ok(())
}
