//! What any TLS terminator must spend on this machine, whatever its own code: the public-key
//! operations of one TLS 1.3 handshake, timed with the provider the gateway uses (rustls'
//! own calls: a key exchange's `start` and `complete`, a signer's `sign`, the verification
//! of a CertificateVerify signature, without parsing the certificate). `loadgen crypto` prints them; `cargo xtask compare --floor`
//! adds them to the cost of plain TCP + HTTP (no TLS) measured the same way as the servers,
//! which gives the least a full or resumed handshake can cost here.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{NamedGroup, SignatureScheme};

/// Median microseconds of each public-key operation of a TLS 1.3 handshake.
#[derive(Debug, Clone, Copy)]
pub struct CryptoCosts {
    /// X25519: the server's key share (`start`) and the shared secret (`complete`).
    pub x25519_us: f64,
    /// ECDSA P-256 SHA-256: the server's CertificateVerify signature.
    pub p256_sign_us: f64,
    /// ECDSA P-256 SHA-256: checking the client's CertificateVerify.
    pub p256_verify_us: f64,
}

impl CryptoCosts {
    /// What a resumed handshake (psk_dhe_ke) must compute: one key exchange.
    pub fn resumed_us(&self) -> f64 {
        self.x25519_us
    }

    /// What a full mutual-TLS handshake of a returning client (chain already verified)
    /// must compute: a key exchange, a signature, a CertificateVerify check.
    pub fn full_us(&self) -> f64 {
        self.x25519_us + self.p256_sign_us + self.p256_verify_us
    }
}

/// The median of `rounds` batches of `batch` calls of `f`, in microseconds per call.
fn median_us(rounds: usize, batch: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..batch {
            f()?;
        }
        v.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().context("no rounds")
}

/// Times the handshake's public-key operations with `provider` (`rounds` batches of `batch`).
///
/// # Errors
/// If the provider lacks X25519 or ECDSA P-256, or an operation fails.
pub fn crypto_costs(provider: &CryptoProvider, rounds: usize, batch: usize) -> Result<CryptoCosts> {
    let kx = provider
        .kx_groups
        .iter()
        .find(|g| g.name() == NamedGroup::X25519)
        .context("the provider has no X25519")?;
    let peer = kx.start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let peer_pub = peer.pub_key().to_vec();
    let x25519_us = median_us(rounds, batch, || {
        let ours = kx.start().map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(ours.pub_key());
        let secret = ours
            .complete(&peer_pub)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(secret.secret_bytes());
        Ok(())
    })?;

    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
    let signing: Arc<dyn rustls::sign::SigningKey> = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scheme = SignatureScheme::ECDSA_NISTP256_SHA256;
    // A CertificateVerify's signed content: 64 spaces, the context string, a zero byte and
    // a SHA-256 transcript hash.
    let mut msg = vec![0x20u8; 64];
    msg.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    msg.extend_from_slice(&[0x5a; 32]);
    let signer = signing
        .choose_scheme(&[scheme])
        .context("the key cannot sign ECDSA P-256 SHA-256")?;
    let p256_sign_us = median_us(rounds, batch, || {
        std::hint::black_box(signer.sign(&msg).map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(())
    })?;
    let sig = signer.sign(&msg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let public = kp.public_key_raw().to_vec();
    let verifier = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .and_then(|(_, algs)| algs.first())
        .context("the provider cannot verify ECDSA P-256 SHA-256")?;
    let p256_verify_us = median_us(rounds, batch, || {
        verifier
            .verify_signature(&public, &msg, &sig)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(())
    })?;
    if !(x25519_us > 0.0 && p256_sign_us > 0.0 && p256_verify_us > 0.0) {
        bail!("a timing came out as zero");
    }
    Ok(CryptoCosts {
        x25519_us,
        p256_sign_us,
        p256_verify_us,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_timed_with_the_gateways_provider() {
        let p =
            gateway::tls::policy::base_provider(gateway::tls::policy::DEFAULT_PROVIDER).unwrap();
        let c = crypto_costs(&p, 3, 5).unwrap();
        assert!(c.x25519_us > 0.0 && c.p256_sign_us > 0.0 && c.p256_verify_us > 0.0);
        assert!(c.full_us() > c.resumed_us());
    }
}
