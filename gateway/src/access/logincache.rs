//! A short-lived cache of successful password checks.
//!
//! Browsers send Basic credentials with every request; without a cache every request would
//! cost an argon2id verification (tens of milliseconds and ~19 MiB). A successful check is
//! remembered for `ttl` under HMAC-SHA-256 of `user NUL password` (the key is random per
//! cache, so the table reveals nothing about passwords and cannot be precomputed). Only
//! successes are cached: a wrong password always pays the full argon2 cost. The cache
//! belongs to one listener plan: a reload loads the password file into a new plan, with a
//! new, empty cache. It is bounded (when full, expired entries go first, then everything:
//! the cost of a miss is one argon2 check).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::access::password::PasswordUser;

/// Cache of successful logins for one listener.
#[derive(Debug)]
pub struct LoginCache {
    /// HMAC-SHA-256 keyed with a random 64-byte key (one block), ready to clone per use.
    mac: Hmac<Sha256>,
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<[u8; 32], (PasswordUser, Instant)>>,
}

impl LoginCache {
    /// A cache keeping successes for `ttl` (zero disables it), at most `max` entries.
    pub fn new(ttl: Duration, max: usize) -> Self {
        let mut key = [0u8; 64];
        OsRng.fill_bytes(&mut key);
        LoginCache {
            mac: <Hmac<Sha256> as hmac::digest::KeyInit>::new(&key.into()),
            ttl,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(user.as_bytes());
        mac.update(&[0u8]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The cached user for these credentials, if a check succeeded within the TTL.
    pub fn get(&self, user: &str, password: &str, now: Instant) -> Option<PasswordUser> {
        if self.ttl.is_zero() {
            return None;
        }
        let d = self.digest(user, password);
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&d) {
            Some((u, until)) if *until > now => Some(u.clone()),
            _ => None,
        }
    }

    /// Remembers a successful check.
    pub fn put(&self, password: &str, user: &PasswordUser, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let d = self.digest(&user.name, password);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(d, (user.clone(), now + self.ttl));
    }

    /// Entries held, for metrics and tests.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> PasswordUser {
        PasswordUser {
            name: "alice".into(),
            groups: vec!["staff".into()],
        }
    }

    #[test]
    fn remembers_successes_until_ttl() {
        let c = LoginCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(c.get("alice", "pw", t0).is_none());
        c.put("pw", &alice(), t0);
        assert_eq!(c.get("alice", "pw", t0), Some(alice()));
        assert!(
            c.get("alice", "pW", t0).is_none(),
            "another password is a miss"
        );
        assert!(
            c.get("alice\0pw", "", t0).is_none(),
            "no ambiguity between fields"
        );
        assert!(c.get("alice", "pw", t0 + Duration::from_secs(61)).is_none());
        let other = LoginCache::new(Duration::from_secs(60), 10);
        assert_ne!(
            c.digest("alice", "pw"),
            other.digest("alice", "pw"),
            "keyed per cache"
        );
    }

    #[test]
    fn bounded_and_disableable() {
        let c = LoginCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            c.put(&format!("pw{i}"), &alice(), t0);
            assert!(c.len() <= 3);
        }
        let off = LoginCache::new(Duration::ZERO, 3);
        off.put("pw", &alice(), t0);
        assert!(off.get("alice", "pw", t0).is_none());
    }
}
