//! Sealing of outgoing TLS records for [`crate::tls::session`].
//!
//! Sealing is done here rather than by the provider's TLS 1.3 sealing key (aws-lc's
//! `TlsRecordSealingKey`), which insists on starting at sequence number 0, while a session
//! taken over from rustls continues where rustls stopped (after the ticket). The
//! construction is the standard one:
//! - TLS 1.3 (RFC 8446 5.2-5.3): nonce = IV XOR (0^32 || seq), plaintext || content type,
//!   additional data = the record header (application_data, 0x0303, ciphertext length).
//! - TLS 1.2 AES-GCM (RFC 5288): nonce = salt || explicit, where the 8-byte explicit part is
//!   IV[4..12] XOR seq (as rustls makes it) and precedes the ciphertext; additional data =
//!   seq || type || 0x0303 || plaintext length.
//! - ChaCha20-Poly1305, only where configured: as TLS 1.3 in 1.3; in 1.2 (RFC 7905) the
//!   nonce is IV XOR seq and no explicit part is sent.

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::aead;
#[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
use ring::aead;

use rustls::crypto::cipher::OutboundChunks;
use rustls::{ConnectionTrafficSecrets, ContentType, Error};

use super::traffic_key::{Family, TrafficKey};

/// AEAD tag length (AES-GCM and ChaCha20-Poly1305).
pub(crate) const TAG: usize = 16;
/// TLS 1.2 AES-GCM explicit nonce length.
pub(crate) const EXPLICIT: usize = 8;

/// The TLS 1.2 additional data (RFC 5246 6.2.3.3): seq || type || version || plaintext length.
pub(crate) fn tls12_aad(seq: u64, typ: ContentType, plain_len: usize) -> Result<[u8; 13], Error> {
    let len = u16::try_from(plain_len).map_err(|_| Error::EncryptError)?;
    let mut aad = [0u8; 13];
    for (d, s) in aad.iter_mut().zip(
        seq.to_be_bytes()
            .into_iter()
            .chain([u8::from(typ), 3, 3])
            .chain(len.to_be_bytes()),
    ) {
        *d = s;
    }
    Ok(aad)
}

/// One direction's sealing key.
pub(crate) struct Sealer {
    /// The key (parked while the connection is idle: [`TrafficKey::park`]).
    pub(crate) key: TrafficKey,
}

impl Sealer {
    /// A sealer for `secrets` (AES-GCM; ChaCha20-Poly1305 where configured).
    pub(crate) fn new(secrets: &ConnectionTrafficSecrets, tls12: bool) -> Result<Self, Error> {
        TrafficKey::new(secrets, tls12)
            .map(|key| Sealer { key })
            .map_err(|_| Error::EncryptError)
    }

    /// The record (header included) sealing `payload` of type `typ` at sequence `seq`.
    pub(crate) fn seal(
        &mut self,
        typ: ContentType,
        payload: OutboundChunks<'_>,
        seq: u64,
    ) -> Result<Vec<u8>, Error> {
        let nonce = self.key.xor_nonce(seq);
        let plain_len = payload.len();
        if self.key.tls12() {
            // TLS 1.2 AES-GCM carries the explicit nonce; ChaCha20-Poly1305 (RFC 7905) not.
            let explicit = self.key.family() == Family::AesGcm;
            let ex_len = if explicit { EXPLICIT } else { 0 };
            let len = ex_len + plain_len + TAG;
            let mut rec = Vec::with_capacity(5 + len);
            rec.push(u8::from(typ));
            rec.extend_from_slice(&[3, 3]);
            rec.extend_from_slice(
                &u16::try_from(len)
                    .map_err(|_| Error::EncryptError)?
                    .to_be_bytes(),
            );
            if explicit {
                rec.extend_from_slice(nonce.get(4..).unwrap_or_default());
            }
            payload.copy_to_vec(&mut rec);
            let aad = tls12_aad(seq, typ, plain_len)?;
            self.seal_tail(&mut rec, 5 + ex_len, nonce, &aad)?;
            Ok(rec)
        } else {
            let len = plain_len + 1 + TAG;
            let len16 = u16::try_from(len)
                .map_err(|_| Error::EncryptError)?
                .to_be_bytes();
            let header = [23, 3, 3, len16[0], len16[1]];
            let mut rec = Vec::with_capacity(5 + len);
            rec.extend_from_slice(&header);
            payload.copy_to_vec(&mut rec);
            rec.push(u8::from(typ));
            self.seal_tail(&mut rec, 5, nonce, &header)?;
            Ok(rec)
        }
    }

    /// Seals `rec[from..]` in place and appends the tag.
    fn seal_tail(
        &mut self,
        rec: &mut Vec<u8>,
        from: usize,
        nonce: [u8; 12],
        aad: &[u8],
    ) -> Result<(), Error> {
        let body = rec.get_mut(from..).ok_or(Error::EncryptError)?;
        let tag = self
            .key
            .context()
            .map_err(|_| Error::EncryptError)?
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                body,
            )
            .map_err(|_| Error::EncryptError)?;
        rec.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, InboundOpaqueMessage, Iv};
    use rustls::ProtocolVersion;

    /// Our records open with the provider's own decrypter, at any sequence number, in both
    /// versions: the construction is the one rustls uses.
    #[test]
    #[allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::cast_possible_truncation
    )]
    fn records_open_with_rustls_decrypter() {
        let provider = crate::pki::compiled_in_provider();
        let key_bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 3);
        let iv_bytes: [u8; 12] = std::array::from_fn(|i| 200 - i as u8);
        for suite in provider.cipher_suites.iter().copied() {
            // AES-256 suites (an AES-128 `AeadKey` cannot be made outside rustls; the
            // loopback session tests negotiate those).
            if !format!("{:?}", suite.suite()).contains("AES_256_GCM") {
                continue;
            }
            let key = AeadKey::from(key_bytes);
            let secrets = ConnectionTrafficSecrets::Aes256Gcm {
                key: AeadKey::from(key_bytes),
                iv: Iv::new(iv_bytes),
            };
            let (tls12, mut dec) = match suite {
                rustls::SupportedCipherSuite::Tls13(s) => {
                    (false, s.aead_alg.decrypter(key, Iv::new(iv_bytes)))
                }
                rustls::SupportedCipherSuite::Tls12(s) => {
                    (true, s.aead_alg.decrypter(key, &iv_bytes[..4]))
                }
            };
            let mut sealer = Sealer::new(&secrets, tls12).unwrap();
            for seq in [0u64, 1, 7, 1 << 40] {
                let chunks: [&[u8]; 2] = [b"hello ", b"records"];
                let mut rec = sealer
                    .seal(
                        ContentType::ApplicationData,
                        OutboundChunks::new(&chunks),
                        seq,
                    )
                    .unwrap();
                let (hdr, body) = rec.split_at_mut(5);
                assert_eq!(
                    usize::from(u16::from_be_bytes([hdr[3], hdr[4]])),
                    body.len()
                );
                let msg = InboundOpaqueMessage::new(
                    ContentType::from(hdr[0]),
                    ProtocolVersion::TLSv1_2,
                    body,
                );
                let plain = dec.decrypt(msg, seq).unwrap();
                assert_eq!(plain.typ, ContentType::ApplicationData);
                assert_eq!(
                    plain.payload,
                    b"hello records",
                    "{:?} seq {seq}",
                    suite.suite()
                );
            }
        }
    }
}
