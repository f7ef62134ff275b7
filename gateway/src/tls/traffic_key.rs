//! One direction's traffic key for [`crate::tls::session`]: the key material, kept for the
//! session's life, and the AEAD context made from it, only while the connection is in use.
//!
//! An AES-GCM context (expanded key schedule and GHASH table) takes about 600 bytes of heap
//! per direction; a parked keep-alive connection ([`crate::lifetime`]) needs none, so
//! [`TrafficKey::park`] drops it and the next record rebuilds it (one key expansion, about
//! a microsecond). The key material itself is zeroed when the key is dropped.

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::aead;
#[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
use ring::aead;

use rustls::{ConnectionTrafficSecrets, Error};
use zeroize::Zeroize;

/// The AEAD family of a traffic key (nonce and additional-data construction differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// AES-128-GCM or AES-256-GCM.
    AesGcm,
    /// ChaCha20-Poly1305 (only where configured: a logged relaxation).
    Chacha20Poly1305,
}

/// A traffic key and IV, and the AEAD context while in use.
pub(crate) struct TrafficKey {
    alg: &'static aead::Algorithm,
    family: Family,
    key: [u8; 32],
    key_len: usize,
    /// The write IV (RFC 8446 7.3; the salt and explicit-nonce base in TLS 1.2 AES-GCM).
    iv: [u8; 12],
    ctx: Option<aead::LessSafeKey>,
    /// TLS 1.2 record construction (else TLS 1.3).
    tls12: bool,
}

impl TrafficKey {
    /// The key of `secrets` for TLS 1.2 records (`tls12`) or TLS 1.3 ones (the context is
    /// made on first use).
    pub(crate) fn new(secrets: &ConnectionTrafficSecrets, tls12: bool) -> Result<Self, Error> {
        let (alg, family, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&aead::AES_128_GCM, Family::AesGcm, key, iv)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&aead::AES_256_GCM, Family::AesGcm, key, iv)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, Family::Chacha20Poly1305, key, iv)
            }
            _ => return Err(Error::General("unknown AEAD negotiated".into())),
        };
        let material = key.as_ref();
        if material.len() != alg.key_len() || material.len() > 32 {
            return Err(Error::General("traffic key of the wrong length".into()));
        }
        let mut k = [0u8; 32];
        k.iter_mut().zip(material).for_each(|(d, s)| *d = *s);
        let iv: [u8; 12] = iv
            .as_ref()
            .try_into()
            .map_err(|_| Error::General("traffic IV of the wrong length".into()))?;
        Ok(TrafficKey {
            alg,
            family,
            key: k,
            key_len: material.len(),
            iv,
            ctx: None,
            tls12,
        })
    }

    /// Whether the records are TLS 1.2 ones.
    pub(crate) fn tls12(&self) -> bool {
        self.tls12
    }

    /// The AEAD family.
    pub(crate) fn family(&self) -> Family {
        self.family
    }

    /// The IV.
    pub(crate) fn iv(&self) -> [u8; 12] {
        self.iv
    }

    /// The per-record nonce of RFC 8446 5.3 (also TLS 1.2 ChaCha20-Poly1305, RFC 7905): the
    /// IV XOR the sequence number (big-endian, right-aligned).
    pub(crate) fn xor_nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// The AEAD context, made now if the key was parked.
    pub(crate) fn context(&mut self) -> Result<&aead::LessSafeKey, Error> {
        if self.ctx.is_none() {
            let material = self.key.get(..self.key_len).unwrap_or_default();
            let unbound = aead::UnboundKey::new(self.alg, material)
                .map_err(|_| Error::General("traffic key rejected by the provider".into()))?;
            self.ctx = Some(aead::LessSafeKey::new(unbound));
        }
        self.ctx
            .as_ref()
            .ok_or_else(|| Error::General("traffic key context missing".into()))
    }

    /// Drops the AEAD context (the connection is idle); the next record makes it again.
    pub(crate) fn park(&mut self) {
        self.ctx = None;
    }

    /// Whether the AEAD context is dropped.
    #[cfg(test)]
    pub(crate) fn is_parked(&self) -> bool {
        self.ctx.is_none()
    }
}

impl Drop for TrafficKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}
