//! The S.E.E. key policy for certificates: strong key types and sizes, no SHA-1, EKU.

use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

/// What the key policy requires of a certificate.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// Minimum RSA modulus size in bits.
    pub min_rsa_bits: usize,
}

/// Which extended key usage a leaf must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredEku {
    /// id-kp-clientAuth.
    ClientAuth,
    /// id-kp-serverAuth.
    ServerAuth,
    /// Not checked (an explicit relaxation).
    None,
}

/// A policy violation, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPolicyError {
    /// The certificate does not parse.
    #[error("certificate does not parse: {0}")]
    Parse(String),
    /// RSA modulus too short.
    #[error("RSA key of {bits} bits is below the minimum of {min}")]
    RsaTooShort {
        /// The key's size.
        bits: usize,
        /// The policy minimum.
        min: usize,
    },
    /// An EC curve other than P-256/P-384.
    #[error("EC key on curve {0} is not allowed (P-256 or P-384 required)")]
    Curve(String),
    /// A key type outside RSA/EC.
    #[error("public key algorithm {0} is not allowed")]
    KeyType(String),
    /// A SHA-1 (or MD5) signature.
    #[error("signature algorithm {0} is not allowed (SHA-1/MD5)")]
    WeakSignature(String),
    /// The required EKU is missing.
    #[error("extended key usage {0} is required but absent")]
    MissingEku(&'static str),
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const WEAK_SIG_OIDS: &[&str] = &[
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.2.840.113549.1.1.4", // md5WithRSAEncryption
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
];

impl KeyPolicy {
    /// Checks one certificate of a chain (leaf or intermediate) against the policy.
    ///
    /// # Errors
    /// The first [`KeyPolicyError`] found.
    pub fn check(&self, der: &[u8], eku: RequiredEku) -> Result<(), KeyPolicyError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| KeyPolicyError::Parse(e.to_string()))?;
        self.check_parsed(&cert, eku)
    }

    /// As [`KeyPolicy::check`] on a parsed certificate.
    ///
    /// # Errors
    /// The first [`KeyPolicyError`] found.
    pub fn check_parsed(
        &self,
        cert: &X509Certificate<'_>,
        eku: RequiredEku,
    ) -> Result<(), KeyPolicyError> {
        self.check_facts(&KeyFacts::of(cert), eku)
    }

    /// As [`KeyPolicy::check`] on the facts read once from a certificate (the path
    /// validator keeps them with its parsed certificates).
    ///
    /// # Errors
    /// The first [`KeyPolicyError`] found.
    pub fn check_facts(&self, f: &KeyFacts, eku: RequiredEku) -> Result<(), KeyPolicyError> {
        if WEAK_SIG_OIDS.contains(&f.sig_oid.as_str()) {
            return Err(KeyPolicyError::WeakSignature(f.sig_oid.clone()));
        }
        match &f.key {
            KeyKind::Rsa(bits) => {
                if *bits < self.min_rsa_bits {
                    return Err(KeyPolicyError::RsaTooShort {
                        bits: *bits,
                        min: self.min_rsa_bits,
                    });
                }
            }
            KeyKind::Ec(curve) => {
                if curve != OID_P256 && curve != OID_P384 {
                    return Err(KeyPolicyError::Curve(curve.clone()));
                }
            }
            KeyKind::Other(alg) => return Err(KeyPolicyError::KeyType(alg.clone())),
        }
        let need = match eku {
            RequiredEku::None => return Ok(()),
            RequiredEku::ClientAuth => "clientAuth",
            RequiredEku::ServerAuth => "serverAuth",
        };
        // anyExtendedKeyUsage alone does not satisfy the policy: the purpose must be named.
        let ok = match f.eku {
            Some((client, server)) => match eku {
                RequiredEku::ClientAuth => client,
                RequiredEku::ServerAuth => server,
                RequiredEku::None => true,
            },
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(KeyPolicyError::MissingEku(need))
        }
    }
}

/// The public key of a certificate, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this modulus size in bits.
    Rsa(usize),
    /// EC on the curve with this OID.
    Ec(String),
    /// Any other algorithm (its OID).
    Other(String),
}

/// What the key policy looks at in a certificate, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The certificate's signature algorithm OID.
    pub sig_oid: String,
    /// Its public key.
    pub key: KeyKind,
    /// (clientAuth, serverAuth) when an EKU extension parses, else `None`.
    pub eku: Option<(bool, bool)>,
}

impl KeyFacts {
    /// Reads the facts from a parsed certificate.
    pub fn of(cert: &X509Certificate<'_>) -> KeyFacts {
        let spki = cert.public_key();
        let key = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(rsa.key_size()),
            Ok(PublicKey::EC(_)) => KeyKind::Ec(
                spki.algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            Ok(_) | Err(_) => KeyKind::Other(spki.algorithm.algorithm.to_id_string()),
        };
        let eku = match cert.extended_key_usage() {
            Ok(Some(ext)) => Some((ext.value.client_auth, ext.value.server_auth)),
            _ => None,
        };
        KeyFacts {
            sig_oid: cert.signature_algorithm.algorithm.to_id_string(),
            key,
            eku,
        }
    }
}

/// Error type carried in `rustls::Error::Other` for key-policy rejections.
#[derive(Debug, thiserror::Error)]
#[error("{role} certificate rejected by key policy: {error}")]
pub struct PolicyRejection {
    /// `client` or `server`.
    pub role: &'static str,
    /// The violated rule.
    pub error: KeyPolicyError,
}

impl KeyPolicyError {
    /// The rustls error a verifier fails the handshake with (so the peer gets the matching
    /// alert: `unsupported_certificate` for a missing EKU, `bad_certificate` otherwise).
    pub fn into_tls_error(self, role: &'static str) -> rustls::Error {
        use rustls::{CertificateError, Error, OtherError};
        match self {
            KeyPolicyError::MissingEku(_) => {
                Error::InvalidCertificate(CertificateError::InvalidPurpose)
            }
            KeyPolicyError::Parse(_) => Error::InvalidCertificate(CertificateError::BadEncoding),
            error => Error::InvalidCertificate(CertificateError::Other(OtherError(
                std::sync::Arc::new(PolicyRejection { role, error }),
            ))),
        }
    }
}
