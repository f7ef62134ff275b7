//! CRL files configured per listener (`crl_files`): read at start and on change, parsed
//! (header only) and kept; which certificates each covers and who signed it is decided by
//! CRL processing ([`crl_status`](super::crl_status)). A file whose content is unusable
//! (malformed, no nextUpdate) is kept as a failure with its reason, logged: a status
//! failure for the certificates it should cover, never a configuration error. A changed
//! file holding an older CRL (thisUpdate or cRLNumber going back) does not replace the
//! copy held.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::SignatureVerificationAlgorithm;

use super::checker::CheckerError;
use super::crl::{self, Crl};
use crate::pki::path::validate::TrustAnchors;
use crate::pki::path::ParsedCert;

/// What the configured CRL files say about a certificate, from what is verified already.
pub(crate) enum LocalListing {
    /// Listed by a verified, current CRL file.
    Revoked,
    /// A current CRL file of the issuer has not been verified yet: decide on the slow path.
    Unverified,
    /// Not listed.
    Clear,
}

/// A configured CRL file.
#[derive(Debug)]
pub(crate) struct LocalCrl {
    pub(crate) path: PathBuf,
    pub(crate) modified: Option<std::time::SystemTime>,
    /// The CRL, or why its content cannot be used.
    pub(crate) crl: Result<Arc<Crl>, String>,
}

/// The usable CRLs.
pub(crate) fn usable(local: &[LocalCrl]) -> Vec<Arc<Crl>> {
    local
        .iter()
        .filter_map(|l| l.crl.as_ref().ok().cloned())
        .collect()
}

/// Whether a current configured CRL file lists `cert` (cheap: binary search in the CRLs
/// whose signature has been verified).
pub(crate) fn listing(local: &[LocalCrl], cert: &ParsedCert, now: i64, skew: i64) -> LocalListing {
    let mut out = LocalListing::Clear;
    for c in local.iter().filter_map(|l| l.crl.as_ref().ok()) {
        if c.issuer_name != cert.issuer && !c.idp.as_ref().is_some_and(|i| i.indirect) {
            continue;
        }
        if !c.is_current(now, skew) {
            continue;
        }
        match c.entries_if_verified() {
            Some(e) if e.contains(&cert.issuer, cert.serial()) => return LocalListing::Revoked,
            Some(_) => {}
            None => out = LocalListing::Unverified,
        }
    }
    out
}

/// Verifies CRL files issued directly by a trust anchor right away (the others are verified
/// when first used, with the signer CRL processing finds).
pub(crate) fn verify_with_anchors(
    local: &[LocalCrl],
    anchors: &TrustAnchors,
    algs: &[&'static dyn SignatureVerificationAlgorithm],
) {
    for (l, c) in local
        .iter()
        .filter_map(|l| l.crl.as_ref().ok().map(|c| (l, c)))
    {
        for a in anchors.by_subject(&c.issuer_name) {
            match c.verified_entries(a, algs) {
                Ok(_) => break,
                Err(crl::CrlError::BadSignature(_)) => {}
                Err(e) => {
                    tracing::warn!(path = %l.path.display(), error = %e, "configured CRL file is unusable");
                    break;
                }
            }
        }
    }
}

/// Reads and parses the configured CRL files. `held` is the set in use: a file whose CRL
/// is older than the one held for the same path keeps the held one.
///
/// # Errors
/// [`CheckerError::File`] when a file cannot be read at all (a wrong path is a
/// configuration error; bad content is not).
pub(crate) fn load(
    paths: &[PathBuf],
    held: Option<&[LocalCrl]>,
) -> Result<Vec<LocalCrl>, CheckerError> {
    let mut local = Vec::new();
    for path in paths {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let bytes = std::fs::read(path).map_err(|e| CheckerError::File {
            key: "crl_files",
            message: format!("{}: {e}", path.display()),
        })?;
        let parsed = crl::to_der_owned(bytes.into())
            .and_then(Crl::parse_owned)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        let previous = held
            .and_then(|h| h.iter().find(|l| l.path == *path))
            .and_then(|l| l.crl.as_ref().ok());
        let crl = match (parsed, previous) {
            (Ok(new), Some(old)) if new.is_older_than(old) => {
                tracing::warn!(path = %path.display(), error = %new.older_error(), "configured CRL file replaced by an older CRL; keeping the newer one");
                Ok(old.clone())
            }
            (Ok(new), _) => Ok(new),
            (Err(e), _) => {
                tracing::warn!(path = %path.display(), error = %e, "configured CRL file is unusable: certificates it should cover get no status from it");
                Err(e)
            }
        };
        local.push(LocalCrl {
            path: path.clone(),
            modified,
            crl,
        });
    }
    Ok(local)
}
