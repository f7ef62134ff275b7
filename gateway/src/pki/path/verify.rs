//! Signature verification through the rustls provider's WebPKI algorithms (no home-made
//! crypto), with a process-wide memo of successful checks: a returning client's chain
//! costs hash lookups, not public-key operations.

use std::sync::OnceLock;

use rustls::pki_types::SignatureVerificationAlgorithm;

use super::cert::ParsedCert;

/// The memo holds at most this many successful verifications; it is cleared when full.
const MEMO_MAX: usize = 65_536;

fn memo() -> &'static papaya::HashSet<[u8; 32]> {
    static MEMO: OnceLock<papaya::HashSet<[u8; 32]>> = OnceLock::new();
    MEMO.get_or_init(papaya::HashSet::new)
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigError {
    /// No algorithm allowed by the provider (and so by the policy) fits key and signature.
    Unsupported,
    /// The signature is wrong.
    Invalid,
}

/// Verifies `signature` over `message` (algorithm `sig_alg`) with `signer`'s key.
/// `object` identifies the signed object (its SHA-256) for the memo.
///
/// # Errors
/// [`SigError`].
pub fn verify(
    algs: &[&'static dyn SignatureVerificationAlgorithm],
    signer: &ParsedCert,
    object: &[u8; 32],
    sig_alg: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SigError> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(signer.spki());
    h.update(object);
    h.update(sig_alg);
    let key: [u8; 32] = h.finalize().into();
    let m = memo();
    if m.pin().contains(&key) {
        return Ok(());
    }
    let mut supported = false;
    for alg in algs {
        if alg.public_key_alg_id().as_ref() != signer.spki_alg()
            || alg.signature_alg_id().as_ref() != sig_alg
        {
            continue;
        }
        supported = true;
        if alg
            .verify_signature(signer.public_key(), message, signature)
            .is_ok()
        {
            let g = m.pin();
            if g.len() >= MEMO_MAX {
                g.clear();
            }
            g.insert(key);
            return Ok(());
        }
    }
    Err(if supported {
        SigError::Invalid
    } else {
        SigError::Unsupported
    })
}

/// Verifies `cert`'s signature with `issuer`'s key.
///
/// # Errors
/// [`SigError`].
pub fn verify_cert(
    algs: &[&'static dyn SignatureVerificationAlgorithm],
    cert: &ParsedCert,
    issuer: &ParsedCert,
) -> Result<(), SigError> {
    verify(
        algs,
        issuer,
        &cert.digest,
        cert.sig_alg(),
        cert.tbs(),
        cert.signature(),
    )
}
