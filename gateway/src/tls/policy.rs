//! Crypto provider selection and the allow-list of cipher suites and groups.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{NamedGroup, SupportedProtocolVersion};

/// A TLS parameter outside the policy.
#[derive(Debug, thiserror::Error)]
pub enum TlsPolicyError {
    /// The provider name is unknown or not compiled in.
    #[error("crypto provider {0:?} is not available in this build (features: {1})")]
    Provider(String, &'static str),
    /// A suite name is unknown or outside the strong allow-list.
    #[error("cipher suite {0:?} is unknown or not allowed; allowed: {1}")]
    Suite(String, String),
    /// A group name is unknown or not offered by the provider.
    #[error(
        "key exchange group {0:?} is unknown or not available with this provider; available: {1}"
    )]
    Group(String, String),
    /// A protocol version other than 1.2/1.3.
    #[error("TLS version {0:?} is not allowed; use \"1.2\" and/or \"1.3\"")]
    Version(String),
    /// Nothing left after filtering.
    #[error("{0} is empty")]
    Empty(&'static str),
}

/// The provider used when the configuration names none: aws-lc-rs when compiled in.
pub const DEFAULT_PROVIDER: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// Suites allowed by the policy when configured explicitly (AES-GCM and ChaCha20-Poly1305,
/// all with forward secrecy).
pub const ALLOWED_SUITES: &[&str] = &[
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// The default: AES-GCM suites only, in server preference order. AES-128-GCM comes first:
/// its SHA-256 transcript and key schedule run on the SHA extensions of current x86 CPUs,
/// while SHA-384 (the AES-256 suites) has no hardware path there and was 9.5 % of the
/// gateway's CPU time in a handshake profile (see BENCHMARKS.md). List `cipher_suites` to
/// prefer AES-256.
pub const DEFAULT_SUITES: &[&str] = &[
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
];

/// The default groups, in preference order (those the provider lacks are skipped).
pub const DEFAULT_GROUPS: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];

fn group_name(g: NamedGroup) -> String {
    match g {
        NamedGroup::X25519 => "X25519".into(),
        NamedGroup::secp256r1 => "secp256r1".into(),
        NamedGroup::secp384r1 => "secp384r1".into(),
        NamedGroup::secp521r1 => "secp521r1".into(),
        NamedGroup::X25519MLKEM768 => "X25519MLKEM768".into(),
        other => format!("{other:?}"),
    }
}

fn canonical_group(name: &str) -> &str {
    match name {
        "P-256" | "prime256v1" => "secp256r1",
        "P-384" => "secp384r1",
        "x25519" => "X25519",
        other => other,
    }
}

/// The base provider by name, before filtering.
///
/// # Errors
/// [`TlsPolicyError::Provider`] if the name is unknown or its feature is not compiled in.
pub fn base_provider(name: &str) -> Result<CryptoProvider, TlsPolicyError> {
    const FEATURES: &str = if cfg!(all(feature = "aws-lc-rs", feature = "ring")) {
        "aws-lc-rs, ring"
    } else if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "ring"
    };
    match name {
        #[cfg(feature = "aws-lc-rs")]
        "aws-lc-rs" => Ok(rustls::crypto::aws_lc_rs::default_provider()),
        #[cfg(feature = "ring")]
        "ring" => Ok(rustls::crypto::ring::default_provider()),
        other => Err(TlsPolicyError::Provider(other.to_string(), FEATURES)),
    }
}

/// Builds the provider for a listener: the named base provider restricted to the configured
/// (or default) suites and groups.
///
/// # Errors
/// A [`TlsPolicyError`] naming the first unacceptable suite or group.
pub fn build_provider(
    provider: &str,
    suites: &[String],
    groups: &[String],
) -> Result<Arc<CryptoProvider>, TlsPolicyError> {
    restrict_provider(&base_provider(provider)?, suites, groups)
}

/// `base` restricted to the configured (or default) suites and groups: what
/// [`build_provider`] does, from a provider built once.
///
/// # Errors
/// A [`TlsPolicyError`] naming the first unacceptable suite or group.
pub fn restrict_provider(
    base: &CryptoProvider,
    suites: &[String],
    groups: &[String],
) -> Result<Arc<CryptoProvider>, TlsPolicyError> {
    let mut p = base.clone();
    let available: Vec<_> = p.cipher_suites.clone();
    let wanted: Vec<String> = if suites.is_empty() {
        DEFAULT_SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        suites.to_vec()
    };
    let mut chosen = Vec::new();
    for name in &wanted {
        let name_u = name.to_ascii_uppercase();
        let found = ALLOWED_SUITES
            .contains(&name_u.as_str())
            .then(|| {
                available
                    .iter()
                    .find(|s| format!("{:?}", s.suite()) == name_u)
            })
            .flatten();
        match found {
            // TLS 1.3 suites run their key schedule over prepared HMAC keys (`tls::hkdf`).
            Some(s) => chosen.push(super::hkdf::with_prepared_hkdf(*s)),
            None => {
                return Err(TlsPolicyError::Suite(
                    name.clone(),
                    ALLOWED_SUITES.join(", "),
                ))
            }
        }
    }
    if chosen.is_empty() {
        return Err(TlsPolicyError::Empty("cipher_suites"));
    }
    p.cipher_suites = chosen;

    let available = p.kx_groups.clone();
    let names = || {
        available
            .iter()
            .map(|g| group_name(g.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut kx = Vec::new();
    if groups.is_empty() {
        for d in DEFAULT_GROUPS {
            if let Some(g) = available.iter().find(|g| group_name(g.name()) == *d) {
                kx.push(*g);
            }
        }
    } else {
        for name in groups {
            let c = canonical_group(name);
            match available.iter().find(|g| group_name(g.name()) == c) {
                Some(g) => kx.push(*g),
                None => return Err(TlsPolicyError::Group(name.clone(), names())),
            }
        }
    }
    if kx.is_empty() {
        return Err(TlsPolicyError::Empty("groups"));
    }
    p.kx_groups = kx;
    Ok(Arc::new(p))
}

/// The protocol versions for a listener.
///
/// # Errors
/// [`TlsPolicyError::Version`] for anything but 1.2/1.3.
pub fn versions(
    names: &[String],
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsPolicyError> {
    let mut out = Vec::new();
    for v in names {
        match v.as_str() {
            "1.3" => out.push(&rustls::version::TLS13),
            "1.2" => out.push(&rustls::version::TLS12),
            other => return Err(TlsPolicyError::Version(other.to_string())),
        }
    }
    if out.is_empty() {
        return Err(TlsPolicyError::Empty("versions"));
    }
    Ok(out)
}

/// Signature schemes minus the SHA-1 ones, for CertificateVerify in either direction.
pub fn without_sha1(schemes: Vec<rustls::SignatureScheme>) -> Vec<rustls::SignatureScheme> {
    use rustls::SignatureScheme as S;
    schemes
        .into_iter()
        .filter(|s| !matches!(s, S::RSA_PKCS1_SHA1 | S::ECDSA_SHA1_Legacy))
        .collect()
}

/// Names of a provider's suites, for diagnostics.
pub fn suite_names(p: &CryptoProvider) -> Vec<String> {
    p.cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_provider() -> &'static str {
        DEFAULT_PROVIDER
    }

    #[test]
    fn default_is_aes_gcm_only() {
        let p = build_provider(default_provider(), &[], &[]).unwrap();
        let names = suite_names(&p);
        assert_eq!(names.len(), 6);
        assert!(names.iter().all(|n| n.contains("_GCM_")), "{names:?}");
    }

    #[test]
    fn unknown_or_weak_suite_is_config_error() {
        for bad in [
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "NOPE",
        ] {
            let err = build_provider(default_provider(), &[bad.into()], &[]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn chacha_only_when_configured() {
        let p = build_provider(
            default_provider(),
            &["TLS13_CHACHA20_POLY1305_SHA256".into()],
            &[],
        )
        .unwrap();
        assert_eq!(suite_names(&p), vec!["TLS13_CHACHA20_POLY1305_SHA256"]);
    }

    #[test]
    fn groups_aliases_and_errors() {
        let p = build_provider(default_provider(), &[], &["P-256".into()]).unwrap();
        assert_eq!(p.kx_groups.len(), 1);
        assert!(build_provider(default_provider(), &[], &["ffdhe2048".into()]).is_err());
    }

    #[test]
    fn versions_only_12_13() {
        assert!(versions(&["1.1".into()]).is_err());
        assert_eq!(versions(&["1.2".into(), "1.3".into()]).unwrap().len(), 2);
    }
}
