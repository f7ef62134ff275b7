//! The one certificate-status interface: "is this verified chain's status acceptable?"
//!
//! Its callers (the client-certificate verifier inside the handshake, the connection after
//! the handshake, upstream TLS and `gateway probe`) and its implementation (the revocation
//! checker) all sit above this module, so neither imports the other: the callers hold an
//! `Arc<dyn StatusCheck>`, the plan step hands them the revocation checker.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};

/// A boxed future, for object-safe async hooks.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a status answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An OCSP responder.
    Ocsp,
    /// A CRL (fetched from a distribution point or a configured file).
    Crl,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Ocsp => "OCSP",
            Source::Crl => "CRL",
        })
    }
}

/// The status of one certificate: the structured verdict every caller decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked according to `source` (`None`: accepted without a current answer, by
    /// an explicit relaxation such as `soft_fail`, or not checked under the policy).
    Good {
        /// Which source said so.
        source: Option<Source>,
    },
    /// Revoked according to `source`.
    Revoked {
        /// Which source said so.
        source: Source,
        /// Revocation time (Unix seconds), when the source gives it.
        time: Option<i64>,
        /// RFC 5280 CRLReason code, when given.
        code: Option<u8>,
    },
    /// No current status could be had (fetch failed, stale, no CRL/OCSP pointer, not in
    /// the cache yet): fail closed unless a relaxation says otherwise.
    Unavailable {
        /// Why.
        reason: Cow<'static, str>,
    },
}

impl CertStatus {
    /// Whether the certificate may pass.
    pub fn is_good(&self) -> bool {
        matches!(self, CertStatus::Good { .. })
    }
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertStatus::Good { source: Some(s) } => write!(f, "good (according to {s})"),
            CertStatus::Good { source: None } => f.write_str("accepted without a current status"),
            CertStatus::Revoked { source, time, code } => {
                write!(f, "revoked (according to {source}")?;
                if let Some(t) = time {
                    write!(f, ", at {}", fmt_unix(*t))?;
                }
                if let Some(c) = code {
                    write!(f, ", reason code {c}")?;
                }
                f.write_str(")")
            }
            CertStatus::Unavailable { reason } => f.write_str(reason),
        }
    }
}

/// The status of one certificate of a chain, naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    /// Subject DN of the certificate (RFC 4514).
    pub subject: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// The verdict.
    pub status: CertStatus,
    /// Freshness and provenance for people: `valid until …, cached`, `soft-fail (…)`.
    pub detail: String,
}

impl fmt::Display for CertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate serial {} issued by {}: {}",
            self.serial, self.issuer, self.status
        )
    }
}

/// The status of a whole chain, one report per presented certificate, leaf first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainStatus {
    /// The reports, in the order the certificates were presented.
    pub certs: Vec<CertReport>,
}

impl ChainStatus {
    /// The report that refuses the chain, if any: a revoked certificate first, else the
    /// first one whose status is unavailable. A chain with fewer reports than `presented`
    /// certificates is refused by the caller (see [`ChainStatus::covers`]).
    pub fn refusal(&self) -> Option<&CertReport> {
        self.certs
            .iter()
            .find(|r| matches!(r.status, CertStatus::Revoked { .. }))
            .or_else(|| self.certs.iter().find(|r| !r.status.is_good()))
    }

    /// Whether there is a report for each of `presented` certificates.
    pub fn covers(&self, presented: usize) -> bool {
        self.certs.len() >= presented
    }
}

/// Answers the status of a verified certificate chain.
///
/// Implementations fetch CRL/OCSP with deadlines (single-flight, cached) and report one
/// entry for every certificate they were asked about, `Unavailable` when they cannot tell.
pub trait StatusCheck: Send + Sync + fmt::Debug {
    /// Inside the handshake, after the chain verified: answers only from what is already
    /// known, never blocks or fetches. `Revoked` fails the handshake (alert
    /// `certificate_revoked`); anything else is left to [`StatusCheck::check_chain`].
    fn in_handshake(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> CertStatus;

    /// After the handshake (full or resumed) and before any byte is forwarded, or after an
    /// upstream handshake before any byte is sent: the awaited check of `chain` (leaf
    /// first, as presented). Policy relaxations (`soft_fail`) are applied by the
    /// implementation; callers refuse on [`ChainStatus::refusal`].
    fn check_chain<'a>(
        &'a self,
        chain: &'a [CertificateDer<'static>],
    ) -> BoxFuture<'a, ChainStatus>;
}

/// Makes the status checker of one set of trust anchors (one `https://` backend's CAs, or
/// the probe's): the implementation needs them to find the issuer of a certificate the
/// peer did not send. Called once per target when the plan is built.
pub type StatusFactory =
    dyn Fn(&[CertificateDer<'static>]) -> Result<Arc<dyn StatusCheck>, String> + Send + Sync;

/// Formats Unix seconds as RFC 3339 (UTC), e.g. `2027-01-01T00:00:00Z`, for messages.
pub fn fmt_unix(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: CertStatus) -> CertReport {
        CertReport {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            serial: "01".into(),
            status,
            detail: String::new(),
        }
    }

    #[test]
    fn revoked_wins_over_unavailable() {
        let chain = ChainStatus {
            certs: vec![
                report(CertStatus::Unavailable {
                    reason: "timeout".into(),
                }),
                report(CertStatus::Revoked {
                    source: Source::Crl,
                    time: Some(0),
                    code: Some(1),
                }),
            ],
        };
        let r = chain.refusal().expect("refused");
        assert_eq!(
            r.to_string(),
            "certificate serial 01 issued by CN=ca: revoked (according to CRL, at 1970-01-01T00:00:00Z, reason code 1)"
        );
        let good = ChainStatus {
            certs: vec![report(CertStatus::Good {
                source: Some(Source::Ocsp),
            })],
        };
        assert!(good.refusal().is_none() && good.covers(1) && !good.covers(2));
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(fmt_unix(1_798_761_600), "2027-01-01T00:00:00Z");
        assert_eq!(fmt_unix(951_782_400), "2000-02-29T00:00:00Z");
    }
}
