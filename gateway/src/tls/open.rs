//! Opening of incoming TLS records for [`crate::tls::session`], in place in the read buffer.
//!
//! The mirror of [`crate::tls::seal`], with the same nonces and additional data (the
//! constructions rustls uses, RFC 8446 5.2-5.4, RFC 5288, RFC 7905): the tag is checked by
//! the provider's AEAD before any plaintext is looked at, and a record that fails is
//! `DecryptError` (alert bad_record_mac). Kept here rather than in rustls'
//! `MessageDecrypter` so the key can be parked while the connection is idle
//! ([`crate::tls::traffic_key`]).

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::aead;
#[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
use ring::aead;

use rustls::{ConnectionTrafficSecrets, ContentType, Error, PeerMisbehaved};

use super::seal::{tls12_aad, EXPLICIT, TAG};
use super::traffic_key::{Family, TrafficKey};

/// An opened record: its (inner) content type and where its plaintext lies in the payload
/// given to [`Opener::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The content type (TLS 1.3: the inner type).
    pub typ: ContentType,
    /// The plaintext: `payload[start..end]`.
    pub start: usize,
    /// End of the plaintext.
    pub end: usize,
}

/// One direction's opening key.
pub(crate) struct Opener {
    /// The key (parked while the connection is idle: [`TrafficKey::park`]).
    pub(crate) key: TrafficKey,
}

impl Opener {
    /// An opener for `secrets`.
    pub(crate) fn new(secrets: &ConnectionTrafficSecrets, tls12: bool) -> Result<Self, Error> {
        TrafficKey::new(secrets, tls12)
            .map(|key| Opener { key })
            .map_err(|_| Error::DecryptError)
    }

    /// Opens the record of outer type `typ` whose payload (everything after the 5-byte
    /// header) is `payload`, at sequence `seq`, in place.
    pub(crate) fn open(
        &mut self,
        typ: ContentType,
        payload: &mut [u8],
        seq: u64,
    ) -> Result<Opened, Error> {
        let len = payload.len();
        if self.key.tls12() {
            let explicit = self.key.family() == Family::AesGcm;
            let ex_len = if explicit { EXPLICIT } else { 0 };
            let plain_len = len.checked_sub(ex_len + TAG).ok_or(Error::DecryptError)?;
            let nonce = if explicit {
                // salt (IV[0..4]) || the explicit nonce the record carries.
                let mut n = [0u8; 12];
                let (salt, rest) = n.split_at_mut(4);
                salt.copy_from_slice(self.key.iv().get(..4).unwrap_or_default());
                rest.copy_from_slice(payload.get(..EXPLICIT).ok_or(Error::DecryptError)?);
                n
            } else {
                self.key.xor_nonce(seq)
            };
            let aad = tls12_aad(seq, typ, plain_len).map_err(|_| Error::DecryptError)?;
            let body = payload.get_mut(ex_len..).ok_or(Error::DecryptError)?;
            self.open_in_place(nonce, &aad, body)?;
            Ok(Opened {
                typ,
                start: ex_len,
                end: ex_len + plain_len,
            })
        } else {
            if len < TAG + 1 {
                return Err(Error::DecryptError);
            }
            let len16 = u16::try_from(len)
                .map_err(|_| Error::DecryptError)?
                .to_be_bytes();
            let header = [u8::from(typ), 3, 3, len16[0], len16[1]];
            let nonce = self.key.xor_nonce(seq);
            let plain = self.open_in_place(nonce, &header, payload)?;
            // TLSInnerPlaintext: content || type || zeros (RFC 8446 5.4).
            let Some(at) = plain.iter().rposition(|&b| b != 0) else {
                return Err(Error::PeerMisbehaved(
                    PeerMisbehaved::IllegalTlsInnerPlaintext,
                ));
            };
            let inner = plain.get(at).copied().ok_or(Error::DecryptError)?;
            Ok(Opened {
                typ: ContentType::from(inner),
                start: 0,
                end: at,
            })
        }
    }

    /// Checks the tag and decrypts `body` (ciphertext || tag) in place; the plaintext.
    fn open_in_place<'a>(
        &mut self,
        nonce: [u8; 12],
        aad: &[u8],
        body: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        self.key
            .context()
            .map_err(|_| Error::DecryptError)?
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                body,
            )
            .map_err(|_| Error::DecryptError)
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "test vectors: fixed-size records"
)]
mod tests {
    use super::super::seal::Sealer;
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv, OutboundChunks, OutboundPlainMessage};
    use rustls::ProtocolVersion;

    fn secrets(key: [u8; 32], iv: [u8; 12]) -> ConnectionTrafficSecrets {
        ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from(key),
            iv: Iv::new(iv),
        }
    }

    /// Records sealed by the provider's own encrypter (rustls' construction) open here, at
    /// any sequence number and in both versions, and a flipped bit anywhere is refused.
    #[test]
    fn opens_rustls_records_and_refuses_tampering() {
        let provider = crate::pki::compiled_in_provider();
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 5 + 1);
        let iv: [u8; 12] = std::array::from_fn(|i| 90 + i as u8);
        let mut tested = 0;
        for suite in provider.cipher_suites.iter().copied() {
            // AES-256 suites (an AES-128 `AeadKey` cannot be made outside rustls; the
            // loopback session tests negotiate those).
            if !format!("{:?}", suite.suite()).contains("AES_256_GCM") {
                continue;
            }
            let (tls12, mut enc) = match suite {
                rustls::SupportedCipherSuite::Tls13(s) => {
                    (false, s.aead_alg.encrypter(AeadKey::from(key), Iv::new(iv)))
                }
                rustls::SupportedCipherSuite::Tls12(s) => (
                    true,
                    s.aead_alg.encrypter(AeadKey::from(key), &iv[..4], &iv[4..]),
                ),
            };
            let mut opener = Opener::new(&secrets(key, iv), tls12).unwrap();
            // aws-lc's TLS 1.3 record key starts at 0 and counts up.
            for seq in 0u64..4 {
                let chunks: [&[u8]; 2] = [b"hello ", b"opener"];
                let msg = OutboundPlainMessage {
                    typ: ContentType::ApplicationData,
                    version: ProtocolVersion::TLSv1_2,
                    payload: OutboundChunks::new(&chunks),
                };
                let rec = enc.encrypt(msg, seq).unwrap().encode();
                let typ = ContentType::from(rec[0]);
                let mut payload = rec[5..].to_vec();
                let got = opener.open(typ, &mut payload, seq).unwrap();
                assert_eq!(got.typ, ContentType::ApplicationData, "{:?}", suite.suite());
                assert_eq!(&payload[got.start..got.end], b"hello opener");
                // Tampering: any flipped bit, or the wrong sequence number, fails.
                for i in [0, rec.len() / 2 - 5, rec.len() - 6] {
                    let mut bad = rec[5..].to_vec();
                    bad[i] ^= 0x01;
                    assert_eq!(opener.open(typ, &mut bad, seq), Err(Error::DecryptError));
                }
                let mut other = rec[5..].to_vec();
                assert_eq!(
                    opener.open(typ, &mut other, seq + 1),
                    Err(Error::DecryptError)
                );
                // Parked between records: made again on the next one.
                opener.key.park();
                assert!(opener.key.is_parked());
            }
            tested += 1;
        }
        assert!(tested >= 1, "no AES-256-GCM suite to test");
    }

    /// Our own sealed records open, a parked pair included; short and all-padding records
    /// are refused.
    #[test]
    fn round_trip_parked_keys_and_malformed_records() {
        let key: [u8; 32] = std::array::from_fn(|i| 255 - i as u8);
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        for tls12 in [false, true] {
            let mut sealer = Sealer::new(&secrets(key, iv), tls12).unwrap();
            let mut opener = Opener::new(&secrets(key, iv), tls12).unwrap();
            for seq in [0u64, 9, 1 << 50] {
                sealer.key.park();
                assert!(sealer.key.is_parked());
                let rec = sealer
                    .seal(
                        ContentType::Handshake,
                        OutboundChunks::Single(b"\x18\x00\x00\x01\x01"),
                        seq,
                    )
                    .unwrap();
                let mut payload = rec[5..].to_vec();
                let got = opener
                    .open(ContentType::from(rec[0]), &mut payload, seq)
                    .unwrap();
                assert_eq!(got.typ, ContentType::Handshake);
                assert_eq!(&payload[got.start..got.end], b"\x18\x00\x00\x01\x01");
                opener.key.park();
            }
            // Shorter than a tag.
            assert_eq!(
                opener.open(ContentType::ApplicationData, &mut [0u8; 10], 0),
                Err(Error::DecryptError)
            );
        }
        // TLS 1.3: a record that is all padding has no content type.
        let mut sealer = Sealer::new(&secrets(key, iv), false).unwrap();
        let mut opener = Opener::new(&secrets(key, iv), false).unwrap();
        let rec = sealer
            .seal(ContentType::from(0u8), OutboundChunks::Single(&[]), 3)
            .unwrap();
        let mut payload = rec[5..].to_vec();
        assert_eq!(
            opener.open(ContentType::ApplicationData, &mut payload, 3),
            Err(Error::PeerMisbehaved(
                PeerMisbehaved::IllegalTlsInnerPlaintext
            ))
        );
    }
}
