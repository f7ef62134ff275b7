//! Typed revocation verdict errors.

use super::config::Source;
use super::der::fmt_time;

/// Why a certificate's status check rejected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Revoked according to `source`.
    Revoked {
        /// Which source said so.
        source: Source,
        /// Revocation time, when the source gives it.
        at: Option<i64>,
        /// RFC 5280 CRLReason code, when given.
        code: Option<u8>,
    },
    /// No current status could be had (unreachable, timeout, HTTP error, oversized, no URL).
    Unavailable {
        /// What was tried and what failed.
        why: String,
    },
    /// The only status available is out of date (nextUpdate passed, thisUpdate ahead).
    Stale {
        /// Details.
        why: String,
    },
    /// A signature did not verify or the signer was not authorized.
    BadSignature {
        /// Details.
        why: String,
    },
    /// OCSP answered `unknown`.
    Unknown,
    /// A malformed CRL or OCSP response, or a malformed certificate.
    Malformed {
        /// Details.
        why: String,
    },
    /// The certificate's issuer is neither presented nor trusted.
    IssuerNotFound,
    /// The certification path is not valid (any more) at the time of the check.
    Path {
        /// The RFC 5280 step that failed.
        why: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Revoked { source, at, code } => {
                write!(f, "revoked (according to {source}")?;
                if let Some(t) = at {
                    write!(f, ", at {}", fmt_time(*t))?;
                }
                if let Some(c) = code {
                    write!(f, ", reason code {c}")?;
                }
                f.write_str(")")
            }
            Reason::Unavailable { why } => write!(f, "no current status available: {why}"),
            Reason::Stale { why } => write!(f, "status information is stale: {why}"),
            Reason::BadSignature { why } => write!(f, "status information not trustworthy: {why}"),
            Reason::Unknown => f.write_str("OCSP responder answered unknown"),
            Reason::Malformed { why } => write!(f, "malformed status information: {why}"),
            Reason::IssuerNotFound => {
                f.write_str("issuer certificate not found among the presented and trusted CAs")
            }
            Reason::Path { why } => write!(f, "certification path refused: {why}"),
        }
    }
}

impl Reason {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Revoked { .. } => "revoked",
            Reason::Unavailable { .. } => "unavailable",
            Reason::Stale { .. } => "stale",
            Reason::BadSignature { .. } => "bad_signature",
            Reason::Unknown => "unknown",
            Reason::Malformed { .. } => "malformed",
            Reason::IssuerNotFound => "issuer_not_found",
            Reason::Path { .. } => "path",
        }
    }
}

/// A rejection, naming the certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate serial {serial} issued by {issuer}: {reason}")]
pub struct RevocationError {
    /// Why.
    pub reason: Reason,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
}

impl RevocationError {
    /// Whether the certificate is revoked (as opposed to its status being unavailable).
    pub fn is_revoked(&self) -> bool {
        matches!(self.reason, Reason::Revoked { .. })
    }

    /// The rustls error to fail a handshake with: `certificate_revoked` for revoked, else a
    /// `bad_certificate`-class error carrying this error.
    pub fn to_rustls(&self) -> rustls::Error {
        use rustls::{CertificateError, OtherError};
        if self.is_revoked() {
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        } else {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
                std::sync::Arc::new(self.clone()),
            )))
        }
    }
}
