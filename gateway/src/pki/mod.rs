//! Certificates and keys: loading from PEM, identities, the development PKI.

/// Development PKI for the embedded default.
pub mod devpki;
/// Identities and identity headers.
pub mod identity;
/// Key and signature policy.
pub mod keypolicy;
/// Certification path validation (RFC 5280 6.1).
#[allow(
    clippy::indexing_slicing,
    reason = "DER and name walkers of RFC 5280 path validation index after explicit length checks; not yet converted to get()"
)]
pub mod path;
/// `[listener.pki]`: certificate policy requirements.
pub mod policy_config;

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors loading certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM object of the expected kind.
    #[error("{path}: {message}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn content(path: &Path, message: impl Into<String>) -> PkiError {
    PkiError::Content {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Loads every certificate from a PEM file (or a single DER certificate).
///
/// # Errors
/// [`PkiError`] if the file cannot be read or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(bytes)]);
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| content(path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Loads the first private key from a PEM file.
///
/// # Errors
/// [`PkiError`] if the file cannot be read or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let bytes = std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        content(
            path,
            format!("no usable private key (PKCS#8, SEC1 or PKCS#1 PEM expected): {e}"),
        )
    })
}

/// Loads trusted CA certificates from files and directories (every `*.pem`/`*.crt`/`*.cer`
/// file in a directory, sorted by name).
///
/// # Errors
/// [`PkiError`] if a path cannot be read or a file holds no certificate.
pub fn load_ca_bundle(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| PkiError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| PkiError::Read {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("pem" | "crt" | "cer")
                    )
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(content(p, "directory holds no .pem/.crt/.cer file"));
            }
            for f in files {
                out.extend(load_certs(&f)?);
            }
        } else {
            out.extend(load_certs(p)?);
        }
    }
    Ok(out)
}

/// The provider compiled in (aws-lc-rs by default, ring in the ring-only build), for unit
/// tests of pki and revocation, which must not import `tls` (see `tests/module_cycles.rs`).
#[cfg(all(test, feature = "aws-lc-rs"))]
pub(crate) fn compiled_in_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// See above: the ring-only build.
#[cfg(all(test, not(feature = "aws-lc-rs")))]
pub(crate) fn compiled_in_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
