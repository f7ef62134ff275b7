//! CRL files configured per listener (`crl_files`): loaded and parsed at start and on
//! change, signatures checked against the issuer once, consulted on every check.

use std::path::PathBuf;
use std::sync::OnceLock;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

use super::cache::crl_reason;
use super::cert::CertInfo;
use super::checker::CheckerError;
use super::config::Source;
use super::crl::{self, Crl};
use super::error::Reason;

/// What the configured CRL files say about a serial.
pub(crate) enum LocalListing {
    /// Listed by a verified, current CRL file.
    Revoked(Reason),
    /// Listed only by a CRL file whose signature has not been checked yet.
    Unverified,
    /// Not listed.
    Clear,
}

/// A configured CRL file, parsed; its signature is checked once per issuer key.
#[derive(Debug)]
pub(crate) struct LocalCrl {
    pub(crate) path: PathBuf,
    pub(crate) modified: Option<std::time::SystemTime>,
    pub(crate) der: Vec<u8>,
    pub(crate) crl: Crl,
    /// SPKI of the issuer whose signature was verified.
    pub(crate) verified: OnceLock<Vec<u8>>,
}

impl LocalCrl {
    /// Verifies issuer, cRLSign and signature (once per issuer key), then freshness at `now`.
    pub(crate) fn check(
        &self,
        issuer: &CertInfo<'_>,
        provider: &CryptoProvider,
        now: i64,
        skew: i64,
    ) -> Result<(), Reason> {
        let l = self;
        let src = format!("CRL file {}", l.path.display());
        match l.verified.get() {
            Some(spki) if spki.as_slice() == issuer.spki => {}
            _ => {
                let parsed = crl::parse(&l.der).map_err(|e| crl_reason(e, &src))?;
                // Times are judged below, at `now`; here only issuer, usage and signature.
                parsed
                    .verify(issuer, provider, l.crl.this_update, 0)
                    .map_err(|e| crl_reason(e, &src))?;
                let _ = l.verified.set(issuer.spki.to_vec());
            }
        }
        crl::check_times(&l.crl, now, skew).map_err(|e| crl_reason(e, &src))
    }
}

/// Whether a current configured CRL file lists the serial (cheap: binary search).
pub(crate) fn listing(
    local: &[LocalCrl],
    iss: &[u8],
    serial: &[u8],
    now: i64,
    skew: i64,
) -> LocalListing {
    let mut out = LocalListing::Clear;
    for l in local {
        if l.crl.issuer != iss || !l.crl.is_current(now, skew) || !l.crl.is_revoked(serial) {
            continue;
        }
        if l.verified.get().is_some() {
            return LocalListing::Revoked(Reason::Revoked {
                source: Source::Crl,
                at: None,
                code: None,
            });
        }
        out = LocalListing::Unverified;
    }
    out
}

/// Checks the signatures of CRL files issued by a trust anchor right away (CRLs of
/// intermediates are checked when first used, with the presented intermediate).
pub(crate) fn verify_with_anchors(
    local: &[LocalCrl],
    anchors: &[CertificateDer<'static>],
    provider: &CryptoProvider,
) {
    for l in local {
        let Some(issuer) = anchors
            .iter()
            .filter_map(|a| CertInfo::parse(a).ok())
            .find(|a| a.subject == l.crl.issuer.as_slice())
        else {
            continue;
        };
        let ok = crl::parse(&l.der)
            .ok()
            .and_then(|p| p.verify(&issuer, provider, l.crl.this_update, 0).ok())
            .is_some();
        if ok {
            let _ = l.verified.set(issuer.spki.to_vec());
        } else {
            tracing::warn!(path = %l.path.display(), "configured CRL file does not verify with its issuer's key");
        }
    }
}

/// Reads and parses the configured CRL files.
///
/// # Errors
/// [`CheckerError::File`] naming the file.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Vec<LocalCrl>, CheckerError> {
    let mut local = Vec::new();
    for path in paths {
        let file = |m: String| CheckerError::File {
            key: "crl_files",
            message: format!("{}: {m}", path.display()),
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let bytes = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        let der = crl::to_der(&bytes)
            .map_err(|e| file(e.to_string()))?
            .into_owned();
        let parsed = crl::parse(&der).map_err(|e| file(e.to_string()))?;
        let next_update = parsed
            .next_update
            .ok_or_else(|| file("CRL has no nextUpdate".into()))?;
        let crl = Crl {
            issuer: parsed.issuer.to_vec(),
            this_update: parsed.this_update,
            next_update,
            serials: parsed.serials,
        };
        local.push(LocalCrl {
            path: path.clone(),
            modified,
            der,
            crl,
            verified: OnceLock::new(),
        });
    }
    Ok(local)
}
