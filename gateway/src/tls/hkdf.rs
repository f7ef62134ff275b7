//! TLS 1.3's key schedule (HKDF) over HMAC keys set up once: rustls' own `HkdfUsingHmac`
//! with the RustCrypto `hmac` + `sha2` crates (SHA-NI where the CPU has it) in place of the
//! provider's HKDF.
//!
//! Why: aws-lc's HKDF (what rustls' aws-lc-rs provider uses) sets up the HMAC key (two
//! compressions of the padded key) through its EVP layer on every expansion, and a TLS 1.3
//! handshake expands some twenty times, most secrets twice or more (traffic secrets, key,
//! IV, finished keys). Here a key's inner and outer hash states are made once, when rustls
//! makes the expander, and each expansion clones them: two compressions per label. The
//! algorithm is unchanged (RFC 5869 over HMAC, RFC 2104), and the tests check every output
//! against the provider's own HKDF and the RFC 4231 / RFC 5869 vectors.
//!
//! Only the TLS 1.3 suites' `hkdf_provider` changes; hashing of the transcript, the AEAD, the
//! TLS 1.2 PRF and everything else stay the provider's.
//!
//! One difference from aws-lc: a prepared key's hash states are not zeroed when dropped
//! (the RustCrypto types have no zeroize support; ring's HMAC keys are not zeroed either).
//! They are handshake secrets' HMAC states, freed when the handshake ends; the traffic keys
//! the session keeps are zeroed (`tls::traffic_key`).

use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

use hmac::digest::{KeyInit, OutputSizeUser};
use hmac::{Hmac, Mac};
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::{SupportedCipherSuite, Tls13CipherSuite};
use sha2::{Sha256, Sha384};

/// HMAC with a key whose padded-key states are already computed.
struct PreparedKey<M>(M);

impl<M: Mac + Clone + Send + Sync> Key for PreparedKey<M> {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for m in middle {
            mac.update(m);
        }
        mac.update(last);
        Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        <M as OutputSizeUser>::output_size()
    }
}

/// HMAC over one hash (`M` is `Hmac<Sha256>` or `Hmac<Sha384>`).
struct PreparedHmac<M>(PhantomData<fn() -> M>);

impl<M: Mac + KeyInit + Clone + Send + Sync + 'static> rustls::crypto::hmac::Hmac
    for PreparedHmac<M>
{
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        // HMAC takes keys of any length (RFC 2104: longer ones are hashed first), so this
        // cannot fail; if it ever did, the keys made would not be the peer's and the
        // handshake would fail (closed), never succeed with a weak key.
        let mac = <M as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <M as KeyInit>::new(&Default::default()));
        Box::new(PreparedKey(mac))
    }

    fn hash_output_len(&self) -> usize {
        <M as OutputSizeUser>::output_size()
    }
}

static HMAC_SHA256: PreparedHmac<Hmac<Sha256>> = PreparedHmac(PhantomData);
static HMAC_SHA384: PreparedHmac<Hmac<Sha384>> = PreparedHmac(PhantomData);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// The suites made so far: (the provider's suite, ours). At most one per suite a provider
/// offers, made once for the process (a reload finds them here).
static MADE: Mutex<Vec<(usize, &'static Tls13CipherSuite)>> = Mutex::new(Vec::new());

/// `suite` with this module's HKDF when it is a TLS 1.3 suite over SHA-256 or SHA-384;
/// anything else unchanged.
pub(crate) fn with_prepared_hkdf(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    let SupportedCipherSuite::Tls13(base) = suite else {
        return suite;
    };
    let hkdf: &'static dyn rustls::crypto::tls13::Hkdf = match base.common.hash_provider.algorithm()
    {
        HashAlgorithm::SHA256 => &HKDF_SHA256,
        HashAlgorithm::SHA384 => &HKDF_SHA384,
        _ => return suite,
    };
    if std::ptr::eq(base.hkdf_provider, hkdf) {
        return suite;
    }
    let id = std::ptr::from_ref(base) as usize;
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ours)) = made.iter().find(|(b, _)| *b == id) {
        return SupportedCipherSuite::Tls13(ours);
    }
    let ours: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
        common: rustls::CipherSuiteCommon {
            suite: base.common.suite,
            hash_provider: base.common.hash_provider,
            confidentiality_limit: base.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: base.aead_alg,
        quic: base.quic,
    }));
    made.push((id, ours));
    SupportedCipherSuite::Tls13(ours)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rustls::crypto::hmac::Hmac as _;
    use rustls::crypto::tls13::Hkdf;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 test cases 1 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let k = HMAC_SHA256.with_key(&[0x0b; 20]);
        assert_eq!(
            k.sign(&[b"Hi There"]).as_ref(),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        let k = HMAC_SHA384.with_key(&[0x0b; 20]);
        assert_eq!(
            k.sign(&[b"Hi ", b"There"]).as_ref(),
            hex("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")
        );
        let k = HMAC_SHA256.with_key(&[0xaa; 131]);
        assert_eq!(
            k.sign(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])
                .as_ref(),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
        // The same key signs twice alike (the prepared states are cloned, not consumed).
        let k = HMAC_SHA256.with_key(b"key");
        assert_eq!(k.sign(&[b"a", b"b"]).as_ref(), k.sign(&[b"ab"]).as_ref());
    }

    /// RFC 5869 test case 1 (SHA-256): PRK and OKM.
    #[test]
    fn hkdf_matches_rfc_5869() {
        let ikm = [0x0b; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        // HKDF-Extract is HMAC(salt, IKM).
        let prk = HMAC_SHA256.with_key(&salt).sign(&[&ikm]).as_ref().to_vec();
        assert_eq!(
            prk,
            hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        );
        let mut okm = [0u8; 42];
        HKDF_SHA256
            .extract_from_secret(Some(&salt), &ikm)
            .expand_slice(&[&info], &mut okm)
            .unwrap();
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    /// Every suite of every compiled-in provider: the same outputs as the provider's own
    /// HKDF, for extraction from a secret and from zeroes, expansion to a block and to other
    /// lengths, and the Finished HMAC.
    #[test]
    #[allow(
        clippy::vec_init_then_push,
        reason = "one push per compiled-in provider"
    )]
    fn the_key_schedule_is_the_providers() {
        let mut providers = Vec::new();
        #[cfg(feature = "aws-lc-rs")]
        providers.push(rustls::crypto::aws_lc_rs::default_provider());
        #[cfg(feature = "ring")]
        providers.push(rustls::crypto::ring::default_provider());
        let mut checked = 0;
        for p in providers {
            for s in p.cipher_suites {
                let (SupportedCipherSuite::Tls13(base), SupportedCipherSuite::Tls13(ours)) =
                    (s, with_prepared_hkdf(s))
                else {
                    continue;
                };
                assert!(!std::ptr::eq(base, ours));
                // Made once: the same suite again is the same static.
                let SupportedCipherSuite::Tls13(again) = with_prepared_hkdf(s) else {
                    panic!("not TLS 1.3");
                };
                assert!(std::ptr::eq(ours, again));
                let (a, b) = (base.hkdf_provider, ours.hkdf_provider);
                for (salt, secret) in [
                    (None, &[7u8; 32][..]),
                    (Some(&[1u8; 48][..]), &[9u8; 48][..]),
                    (Some(&b"s"[..]), &b""[..]),
                ] {
                    let (ea, eb) = (
                        a.extract_from_secret(salt, secret),
                        b.extract_from_secret(salt, secret),
                    );
                    let info: [&[u8]; 3] = [b"\x00\x20", b"tls13 c hs traffic", &[3u8; 32]];
                    let (ka, kb) = (ea.expand_block(&info), eb.expand_block(&info));
                    assert_eq!(ka.as_ref(), kb.as_ref());
                    for len in [12, 16, 32, 100] {
                        let (mut oa, mut ob) = (vec![0u8; len], vec![0u8; len]);
                        ea.expand_slice(&info, &mut oa).unwrap();
                        eb.expand_slice(&info, &mut ob).unwrap();
                        assert_eq!(oa, ob);
                    }
                    assert_eq!(
                        a.extract_from_zero_ikm(salt).expand_block(&info).as_ref(),
                        b.extract_from_zero_ikm(salt).expand_block(&info).as_ref()
                    );
                    assert_eq!(
                        a.expander_for_okm(&ka).expand_block(&info).as_ref(),
                        b.expander_for_okm(&kb).expand_block(&info).as_ref()
                    );
                    assert_eq!(
                        a.hmac_sign(&ka, b"transcript hash").as_ref(),
                        b.hmac_sign(&kb, b"transcript hash").as_ref()
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 2, "no TLS 1.3 suite checked");
    }
}
