//! The verified-chain cache: a returning client that presents the exact chain it presented
//! before skips path building, name chaining, constraint processing, the key policy and the
//! chain's signature checks; what remains is one SHA-256 over the presented chain and a
//! lock-free lookup.
//!
//! - **Key**: SHA-256 over the policy the path was validated under (minimum RSA size,
//!   required EKU, target kind, the provider's algorithm table, the certificate policy
//!   inputs: user-initial-policy-set and the three initial flags), the number of presented
//!   certificates and each one's SHA-256, in the order presented. Two different chains (or the same chain
//!   under another policy) never share a key short of a SHA-256 collision.
//! - **Scope**: each [`super::TrustAnchors`] owns its cache. A reload builds new anchors and
//!   so starts empty; the old cache goes with the old plan. No generation counter can go
//!   wrong.
//! - **Time**: an entry is used only while `time` lies inside every certificate's validity
//!   period (the path's and the anchor's): outside it the full validation runs and decides.
//!   The validity check is never skipped, it is the entry's window.
//! - **What is not cached**: refusals (each is validated again and logged with its reason),
//!   the handshake's CertificateVerify signature (rustls checks it every time), revocation
//!   status (the status cache has its own lifetimes).
//! - **Bounds**: at most [`MAX_ENTRIES`] entries per trust store (a few hundred bytes each:
//!   the path shares the parsed certificates of the process-wide certificate cache); when
//!   full it is cleared, so a flood of distinct valid chains costs at most one full
//!   validation each, as without the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::policy::PolicyInputs;
use super::validate::{PathPolicy, Target, ValidatedPath};
use crate::pki::keypolicy::{KeyPolicy, RequiredEku};

/// Entries kept per trust store before the cache is cleared.
pub const MAX_ENTRIES: usize = 8_192;

/// A cache key: SHA-256 of the policy and the presented chain.
pub type ChainKey = [u8; 32];

#[derive(Debug)]
struct Entry {
    path: ValidatedPath,
    /// The latest notBefore and earliest notAfter over the path and its anchor.
    not_before: i64,
    not_after: i64,
}

/// Hits and misses since start, for all trust stores (exported as metrics).
#[derive(Debug, Default)]
pub struct ChainCacheStats {
    /// Validations answered from a cache.
    pub hits: AtomicU64,
    /// Validations that ran in full (first sightings, refusals, entries outside their window).
    pub misses: AtomicU64,
}

/// The process-wide hit and miss counters.
pub fn stats() -> &'static ChainCacheStats {
    static STATS: ChainCacheStats = ChainCacheStats {
        hits: AtomicU64::new(0),
        misses: AtomicU64::new(0),
    };
    &STATS
}

/// Validated chains of one trust store.
#[derive(Debug, Default)]
pub struct ChainCache {
    map: papaya::HashMap<ChainKey, Arc<Entry>>,
}

/// The SHA-256 of each presented certificate (the parsed-certificate cache reuses them on a
/// miss, so no certificate is hashed twice).
pub fn digests(chain: &[CertificateDer<'_>]) -> Vec<[u8; 32]> {
    use sha2::Digest;
    chain
        .iter()
        .map(|c| sha2::Sha256::digest(c.as_ref()).into())
        .collect()
}

/// The key of `chain` (target first, as presented) validated under `policy`.
pub fn key(chain: &[CertificateDer<'_>], policy: &PathPolicy) -> ChainKey {
    key_of_digests(&digests(chain), policy)
}

/// The key of a chain given its certificates' [`digests`], in the order presented.
pub fn key_of_digests(digests: &[[u8; 32]], policy: &PathPolicy) -> ChainKey {
    use sha2::Digest;
    // Destructured so that a new policy field cannot be left out of the key unnoticed.
    let PathPolicy {
        key_policy: KeyPolicy { min_rsa_bits },
        eku,
        target,
        algs,
        ref policy_inputs,
    } = *policy;
    let mut h = sha2::Sha256::new();
    let eku = match eku {
        RequiredEku::ClientAuth => 1u8,
        RequiredEku::ServerAuth => 2,
        RequiredEku::None => 3,
    };
    let target = match target {
        Target::EndEntity => 1u8,
        Target::CrlSigner => 2,
        Target::Any => 3,
    };
    h.update(b"see-gateway chain v1");
    h.update((min_rsa_bits as u64).to_be_bytes());
    h.update([eku, target]);
    // The algorithm table is a `'static` slice of the provider: its address and length
    // name it (a policy allowing other algorithms is another table).
    h.update((algs.as_ptr() as usize as u64).to_be_bytes());
    h.update((algs.len() as u64).to_be_bytes());
    hash_policy_inputs(&mut h, policy_inputs);
    h.update((digests.len() as u64).to_be_bytes());
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

/// The certificate policy inputs into the key: the three flags, then the
/// user-initial-policy-set (absent, or its length and each OID length-prefixed).
fn hash_policy_inputs(h: &mut sha2::Sha256, inputs: &PolicyInputs) {
    use sha2::Digest;
    let PolicyInputs {
        initial_policy_set,
        initial_explicit_policy,
        initial_policy_mapping_inhibit,
        initial_any_policy_inhibit,
    } = inputs;
    h.update([
        u8::from(*initial_explicit_policy),
        u8::from(*initial_policy_mapping_inhibit),
        u8::from(*initial_any_policy_inhibit),
    ]);
    match initial_policy_set {
        None => h.update([0u8]),
        Some(set) => {
            h.update([1u8]);
            h.update((set.len() as u64).to_be_bytes());
            for oid in set.iter() {
                h.update((oid.as_der().len() as u64).to_be_bytes());
                h.update(oid.as_der());
            }
        }
    }
}

impl ChainCache {
    /// The path validated before for `key`, if `time` is inside its validity window.
    pub fn get(&self, key: &ChainKey, time: i64) -> Option<ValidatedPath> {
        let hit = self
            .map
            .pin()
            .get(key)
            .filter(|e| e.not_before <= time && time <= e.not_after)
            .map(|e| e.path.clone());
        let counter = if hit.is_some() {
            &stats().hits
        } else {
            &stats().misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Remembers that the chain of `key` validated to `path`.
    pub fn insert(&self, key: ChainKey, path: &ValidatedPath) {
        let certs = path.certs.iter().chain(std::iter::once(&path.anchor));
        let not_before = certs
            .clone()
            .map(|c| c.not_before)
            .max()
            .unwrap_or(i64::MAX);
        let not_after = certs.map(|c| c.not_after).min().unwrap_or(i64::MIN);
        let entry = Arc::new(Entry {
            path: path.clone(),
            not_before,
            not_after,
        });
        let g = self.map.pin();
        if g.len() >= MAX_ENTRIES {
            g.clear();
        }
        g.insert(key, entry);
    }

    /// How many chains are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
