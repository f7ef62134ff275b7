//! Certification path validation (RFC 5280 section 6.1): the one implementation behind
//! client chains in the handshake, upstream chains, `gateway verify` and `gateway probe`.
//!
//! Why our own validator rather than rustls-webpki with extra checks: webpki compares names
//! byte for byte (RFC 5280 7.1 asks for case-insensitive, whitespace-collapsing comparison
//! across string types), has no notion of self-issued key-rollover certificates in
//! pathLenConstraint, and gives no access to the validated path that CRL processing
//! (RFC 5280 6.3: the CRL signer's own path, indirect CRLs) needs. Checks on top of a webpki
//! result could only refuse more, never accept the valid paths webpki refuses. Signatures
//! still go through the rustls provider's WebPKI algorithms, and parsed certificates and
//! verified signatures are memoized (process-wide, bounded), and each trust store keeps the
//! chains it validated ([`chain_cache`]), so that a returning client costs one hash and one
//! lookup: see [`validate_path`].
//!
//! - [`name`]: RFC 5280 7.1 name comparison; [`names`]: general names, name constraints.
//! - [`cert`]: a certificate parsed once; [`validate`]: path building and 6.1 processing;
//!   [`policy`]: certificate policies (the valid_policy_tree of 6.1).

pub mod cert;
pub mod chain_cache;
mod der;
pub mod error;
pub mod name;
pub mod names;
pub mod policy;
pub mod validate;
pub mod verify;

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;

pub use cert::ParsedCert;
pub use error::{PathError, Step};
pub use policy::{PolicyInputs, PolicyOid};
pub use validate::{PathPolicy, Target, TrustAnchors, ValidatedPath};

/// Parsed certificates kept at most (cleared when full).
const CERT_CACHE_MAX: usize = 16_384;

fn cert_cache() -> &'static papaya::HashMap<[u8; 32], Arc<ParsedCert>> {
    static CACHE: OnceLock<papaya::HashMap<[u8; 32], Arc<ParsedCert>>> = OnceLock::new();
    CACHE.get_or_init(papaya::HashMap::new)
}

/// Parses `der`, or returns the copy parsed before (keyed by its SHA-256).
///
/// # Errors
/// [`Step::Malformed`].
pub fn parse_cached(der: &[u8]) -> Result<Arc<ParsedCert>, PathError> {
    use sha2::Digest;
    parse_cached_digest(der, sha2::Sha256::digest(der).into())
}

/// As [`parse_cached`] with the SHA-256 of `der` already known.
fn parse_cached_digest(der: &[u8], digest: [u8; 32]) -> Result<Arc<ParsedCert>, PathError> {
    let cache = cert_cache();
    if let Some(c) = cache.pin().get(&digest) {
        return Ok(c.clone());
    }
    let c = Arc::new(ParsedCert::parse_with_digest(Arc::from(der), digest)?);
    let g = cache.pin();
    if g.len() >= CERT_CACHE_MAX {
        g.clear();
    }
    g.insert(digest, c.clone());
    Ok(c)
}

/// Validates `chain` (target first, then any other certificates the peer sent, in any
/// order) against `anchors` at `time` (Unix seconds) under `policy`.
///
/// Builds every candidate path (issuers by name, preferring matching key identifiers;
/// self-issued rollover certificates included) and returns the first that passes RFC 5280
/// 6.1 and the S.E.E. policy. Status (revocation) is not part of it: see
/// `revocation::crl_status`. A chain validated before under the same policy and trust store
/// is answered from the store's [`chain_cache`] while `time` is inside every certificate's
/// validity period.
///
/// # Errors
/// [`PathError`] naming the RFC 5280 step that failed, for the most complete path tried.
pub fn validate_path(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    time: i64,
    policy: &PathPolicy,
) -> Result<ValidatedPath, PathError> {
    validate_path_with(chain, anchors, time, policy, || Ok::<(), PathError>(()))
}

/// As [`validate_path`], running `before` (cheap checks that refuse early, such as the key
/// policy on the raw certificates) only when the chain is not in the cache.
///
/// # Errors
/// What `before` returns, or the [`PathError`] of the validation.
pub fn validate_path_with<E: From<PathError>>(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    time: i64,
    policy: &PathPolicy,
    before: impl FnOnce() -> Result<(), E>,
) -> Result<ValidatedPath, E> {
    let digests = chain_cache::digests(chain);
    let key = chain_cache::key_of_digests(&digests, policy);
    if let Some(path) = anchors.cache().get(&key, time) {
        return Ok(path);
    }
    before()?;
    let path = validate_uncached(chain, &digests, anchors, time, policy)?;
    anchors.cache().insert(key, &path);
    Ok(path)
}

/// The full validation behind [`validate_path`], without the chain cache.
fn validate_uncached(
    chain: &[CertificateDer<'_>],
    digests: &[[u8; 32]],
    anchors: &TrustAnchors,
    time: i64,
    policy: &PathPolicy,
) -> Result<ValidatedPath, PathError> {
    let (target, rest) = chain
        .split_first()
        .ok_or_else(|| PathError::new(Step::Malformed, "chain", "no certificate presented"))?;
    let digest = |i: usize| digests.get(i).copied();
    let parse = |i: usize, der: &[u8]| match digest(i) {
        Some(d) => parse_cached_digest(der, d),
        None => parse_cached(der),
    };
    let target = parse(0, target)?;
    let mut pool = Vec::with_capacity(rest.len());
    for (i, c) in rest.iter().enumerate() {
        pool.push(parse(i + 1, c).map_err(|mut e| {
            e.subject = format!("certificate #{} of the chain", i + 2);
            e
        })?);
    }
    validate::build(target, &pool, anchors, None, time, policy)
}

/// Whether the end-entity certificate of `chain` is within its validity period at `time`:
/// for resumed sessions, whose chain is not validated again by the handshake (the status
/// check validates the whole path again when revocation checking is on).
///
/// # Errors
/// [`Step::Validity`] or [`Step::Malformed`].
pub fn leaf_valid_at(chain: &[CertificateDer<'_>], time: i64) -> Result<(), PathError> {
    let leaf = chain
        .first()
        .ok_or_else(|| PathError::new(Step::Malformed, "chain", "no certificate"))?;
    let c = parse_cached(leaf)?;
    if time < c.not_before || time > c.not_after {
        return Err(PathError::new(
            Step::Validity,
            c.subject_string(),
            format!(
                "outside its validity period {} .. {}",
                fmt_time(c.not_before),
                fmt_time(c.not_after)
            ),
        ));
    }
    Ok(())
}

/// RFC 3339 UTC for messages.
pub(crate) fn fmt_time(secs: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
