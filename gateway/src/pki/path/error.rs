//! Why a certification path was refused, naming the RFC 5280 step.

use std::fmt;

/// The step of RFC 5280 section 6.1 (or the S.E.E. policy rule) that refused a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The certificate does not parse (RFC 5280 4.1).
    Malformed,
    /// A key or signature algorithm outside the S.E.E. key policy.
    KeyPolicy,
    /// 6.1.3 (a)(1): the signature does not verify with the working public key.
    Signature,
    /// 6.1.3 (a)(2): outside the validity period.
    Validity,
    /// 6.1.3 (a)(4): no issuer whose name chains (no path to a trust anchor).
    NameChaining,
    /// 6.1.3 (b)-(c): a name outside the permitted or inside the excluded subtrees.
    NameConstraints,
    /// 6.1.4 (k): an intermediate that is not a CA (basicConstraints cA).
    BasicConstraints,
    /// 6.1.4 (l): pathLenConstraint exceeded.
    PathLength,
    /// 6.1.4 (n): a CA key without keyCertSign.
    KeyUsage,
    /// 6.1.4 (o) / 6.1.5 (f): an unrecognized critical extension.
    CriticalExtension,
    /// 6.1.3 (d)-(f), 6.1.4 (a)-(b), 6.1.5 (g): certificate policies (no valid policy while
    /// an explicit policy is required, a mapping of anyPolicy, a policy tree too large).
    Policy,
    /// S.E.E. policy: a CA certificate presented as the end entity.
    EndEntityIsCa,
    /// S.E.E. policy: the required extended key usage is missing.
    ExtendedKeyUsage,
}

impl Step {
    /// The RFC 5280 reference (or policy) of the step, for people.
    pub fn rfc(self) -> &'static str {
        match self {
            Step::Malformed => "RFC 5280 4.1 (certificate syntax)",
            Step::KeyPolicy => "S.E.E. key policy (RFC 5280 6.1.3 (a)(1) algorithms)",
            Step::Signature => "RFC 5280 6.1.3 (a)(1) signature",
            Step::Validity => "RFC 5280 6.1.3 (a)(2) validity period",
            Step::NameChaining => "RFC 5280 6.1.3 (a)(4) name chaining / trust anchor",
            Step::NameConstraints => "RFC 5280 6.1.3 (b)-(c) name constraints",
            Step::BasicConstraints => "RFC 5280 6.1.4 (k) basicConstraints",
            Step::PathLength => "RFC 5280 6.1.4 (l)-(m) pathLenConstraint",
            Step::KeyUsage => "RFC 5280 6.1.4 (n) keyUsage keyCertSign",
            Step::CriticalExtension => "RFC 5280 6.1.4 (o) / 6.1.5 (f) critical extensions",
            Step::Policy => {
                "RFC 5280 6.1.3 (d)-(f) / 6.1.4 (a)-(b) / 6.1.5 (g) certificate policies"
            }
            Step::EndEntityIsCa => "S.E.E. policy: end-entity certificate required",
            Step::ExtendedKeyUsage => "S.E.E. policy: extended key usage",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc())
    }
}

/// A refused certification path: the step, the certificate, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {subject}: {detail}")]
pub struct PathError {
    /// The failed step.
    pub step: Step,
    /// The certificate at fault (RFC 4514 subject, or a position when it does not parse).
    pub subject: String,
    /// What was wrong.
    pub detail: String,
}

impl PathError {
    pub(crate) fn new(step: Step, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        PathError {
            step,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    /// The rustls error a TLS verifier fails the handshake with (so the peer gets a
    /// fitting alert).
    pub fn to_rustls(&self) -> rustls::Error {
        use rustls::{CertificateError, Error, OtherError};
        let e = match self.step {
            Step::Validity if self.detail.contains("not yet") => CertificateError::NotValidYet,
            Step::Validity => CertificateError::Expired,
            Step::Signature => CertificateError::BadSignature,
            Step::NameChaining => CertificateError::UnknownIssuer,
            Step::Malformed => CertificateError::BadEncoding,
            Step::ExtendedKeyUsage => CertificateError::InvalidPurpose,
            _ => CertificateError::Other(OtherError(std::sync::Arc::new(self.clone()))),
        };
        Error::InvalidCertificate(e)
    }
}
