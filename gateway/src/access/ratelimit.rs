//! Rate limiting of failed password attempts, per source address and per user name.
//!
//! Each key (a source address, IPv6 by its /64 *and* by its /48, or a user name) has a token
//! bucket of failures. The /48 aggregate exists because one site usually holds a whole /48:
//! without it, its 65,536 /64s would each get a full budget and could keep the argon2 pool
//! busy. Buckets: `burst` failures are allowed at once and one more every `60 / per_minute`
//! seconds. While a key's bucket is empty, attempts are refused *before* the password is
//! checked (no argon2 work, no oracle). Successful logins do not refill a bucket, so an
//! attacker cannot interleave a good account to keep guessing.
//!
//! Memory is bounded: the table is split into shards, each holding at most
//! `max_tracked / SHARDS` keys. A full shard first drops keys whose buckets have refilled
//! (forgotten keys start full, so this changes nothing); if still full it drops the key with
//! the most tokens left (the least suspicious). Shards are plain mutexes held for a few
//! hundred nanoseconds, and only on the password path: the certificate path never touches
//! them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

const SHARDS: usize = 16;

/// Rate limit settings, `[listener.access.rate_limit]`.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Failed attempts allowed at once from one source (IPv4 address or IPv6 /64).
    pub per_source_burst: u32,
    /// Failed attempts per minute from one source, sustained.
    pub per_source_per_minute: u32,
    /// Failed attempts allowed at once from all the /64s of one IPv6 /48 together.
    pub per_ipv6_48_burst: u32,
    /// Failed attempts per minute from one IPv6 /48, sustained.
    pub per_ipv6_48_per_minute: u32,
    /// Failed attempts allowed at once for one user name.
    pub per_user_burst: u32,
    /// Failed attempts per minute for one user name, sustained.
    pub per_user_per_minute: u32,
    /// Most keys remembered per table (sources and users each).
    pub max_tracked: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_source_burst: 10,
            per_source_per_minute: 10,
            per_ipv6_48_burst: 40,
            per_ipv6_48_per_minute: 40,
            per_user_burst: 5,
            per_user_per_minute: 5,
            max_tracked: 65_536,
        }
    }
}

impl RateLimitConfig {
    /// Validates values; `Err((key, message))` names the key below `rate_limit.`.
    ///
    /// # Errors
    /// A zero rate or burst, or a table too small.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (k, v) in [
            ("per_source_burst", self.per_source_burst),
            ("per_source_per_minute", self.per_source_per_minute),
            ("per_ipv6_48_burst", self.per_ipv6_48_burst),
            ("per_ipv6_48_per_minute", self.per_ipv6_48_per_minute),
            ("per_user_burst", self.per_user_burst),
            ("per_user_per_minute", self.per_user_per_minute),
        ] {
            if v == 0 {
                return Err((k.into(), "must be at least 1".into()));
            }
        }
        if self.max_tracked < SHARDS {
            return Err(("max_tracked".into(), format!("must be at least {SHARDS}")));
        }
        Ok(())
    }
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// Too many failures from this source.
    Source {
        /// Retry after this long.
        retry_after: Duration,
    },
    /// Too many failures from the IPv6 /48 of this source.
    Prefix48 {
        /// Retry after this long.
        retry_after: Duration,
    },
    /// Too many failures for this user name.
    User {
        /// Retry after this long.
        retry_after: Duration,
    },
}

impl Limited {
    /// How long until one more attempt is allowed.
    pub fn retry_after(&self) -> Duration {
        match self {
            Limited::Source { retry_after }
            | Limited::Prefix48 { retry_after }
            | Limited::User { retry_after } => *retry_after,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct Table<K> {
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
    burst: f64,
    per_sec: f64,
    shard_cap: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(burst: u32, per_minute: u32, max: usize) -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            shard_cap: (max / SHARDS).max(1),
        }
    }

    fn shard(&self, k: &K) -> &Mutex<HashMap<K, Bucket>> {
        let i = (self.hasher.hash_one(k) as usize) % SHARDS;
        &self.shards[i]
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + dt * self.per_sec).min(self.burst);
        b.updated = now;
    }

    /// `Err(retry_after)` if the key's bucket holds less than one token.
    fn check(&self, k: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get_mut(k) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }

    fn fail(&self, k: &K, now: Instant) {
        let mut map = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(k) && map.len() >= self.shard_cap {
            map.retain(|_, b| {
                let mut b2 = *b;
                self.refill(&mut b2, now);
                b2.tokens < self.burst
            });
            if map.len() >= self.shard_cap {
                let victim = map
                    .iter()
                    .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
                    .map(|(k, _)| k.clone());
                if let Some(v) = victim {
                    map.remove(&v);
                }
            }
        }
        let b = map.entry(k.clone()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

/// The key of a source address: an IPv4 address, or the /64 of an IPv6 address (one host
/// usually owns a whole /64). IPv4-mapped IPv6 addresses count as IPv4.
fn source_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_ipv6_mapped().octets(),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                o
            }
        },
    }
}

/// The /48 of an IPv6 source (not an IPv4 or IPv4-mapped one): the aggregate key.
fn prefix48_key(ip: IpAddr) -> Option<[u8; 6]> {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let o = v6.octets();
            Some([o[0], o[1], o[2], o[3], o[4], o[5]])
        }
        _ => None,
    }
}

/// Rate limiter of failed password attempts for one listener.
#[derive(Debug)]
pub struct FailureLimiter {
    sources: Table<[u8; 16]>,
    prefixes48: Table<[u8; 6]>,
    users: Table<String>,
}

impl FailureLimiter {
    /// A limiter with the given settings.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        FailureLimiter {
            sources: Table::new(
                cfg.per_source_burst,
                cfg.per_source_per_minute,
                cfg.max_tracked,
            ),
            prefixes48: Table::new(
                cfg.per_ipv6_48_burst,
                cfg.per_ipv6_48_per_minute,
                cfg.max_tracked,
            ),
            users: Table::new(cfg.per_user_burst, cfg.per_user_per_minute, cfg.max_tracked),
        }
    }

    /// Whether an attempt from `ip` for `user` may be checked now.
    ///
    /// # Errors
    /// [`Limited`] naming the limit that refused it.
    pub fn check(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Result<(), Limited> {
        self.sources
            .check(&source_key(ip), now)
            .map_err(|retry_after| Limited::Source { retry_after })?;
        if let Some(p) = prefix48_key(ip) {
            self.prefixes48
                .check(&p, now)
                .map_err(|retry_after| Limited::Prefix48 { retry_after })?;
        }
        if let Some(u) = user {
            self.users
                .check(&u.to_string(), now)
                .map_err(|retry_after| Limited::User { retry_after })?;
        }
        Ok(())
    }

    /// Records a failed attempt (bad password, unknown user, malformed credentials).
    pub fn record_failure(&self, ip: IpAddr, user: Option<&str>, now: Instant) {
        self.sources.fail(&source_key(ip), now);
        if let Some(p) = prefix48_key(ip) {
            self.prefixes48.fail(&p, now);
        }
        if let Some(u) = user {
            self.users.fail(&u.to_string(), now);
        }
    }

    /// Keys currently remembered (sources, users), for metrics.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.users.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            per_source_burst: 3,
            per_source_per_minute: 60,
            per_ipv6_48_burst: 5,
            per_ipv6_48_per_minute: 60,
            per_user_burst: 2,
            per_user_per_minute: 6,
            max_tracked: 64,
        }
    }

    #[test]
    fn source_limit_kicks_in_and_refills() {
        let l = FailureLimiter::new(&cfg());
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check(ip, None, t0).is_ok(), "attempt {i}");
            l.record_failure(ip, None, t0);
        }
        let e = l.check(ip, None, t0).expect_err("limited after burst");
        assert!(matches!(e, Limited::Source { .. }));
        assert!(e.retry_after() <= Duration::from_secs(1));
        // One per second refills.
        assert!(l.check(ip, None, t0 + Duration::from_millis(1001)).is_ok());
        // Another source is unaffected.
        assert!(l.check("192.0.2.8".parse().expect("ip"), None, t0).is_ok());
    }

    #[test]
    fn user_limit_spans_sources() {
        let l = FailureLimiter::new(&cfg());
        let t0 = Instant::now();
        l.record_failure("198.51.100.1".parse().expect("ip"), Some("alice"), t0);
        l.record_failure("198.51.100.2".parse().expect("ip"), Some("alice"), t0);
        let e = l
            .check("198.51.100.3".parse().expect("ip"), Some("alice"), t0)
            .expect_err("user limited");
        assert!(matches!(e, Limited::User { .. }), "{e:?}");
        assert!(l
            .check("198.51.100.3".parse().expect("ip"), Some("bob"), t0)
            .is_ok());
        assert!(l
            .check(
                "198.51.100.3".parse().expect("ip"),
                Some("alice"),
                t0 + Duration::from_secs(10)
            )
            .is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = FailureLimiter::new(&cfg());
        let t0 = Instant::now();
        for i in 1..=3u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            l.record_failure(ip, None, t0);
        }
        assert!(l
            .check("2001:db8:1:2::ffff".parse().expect("ip"), None, t0)
            .is_err());
        assert!(l
            .check("2001:db8:1:3::1".parse().expect("ip"), None, t0)
            .is_ok());
    }

    /// A /48 holds 65,536 /64s; each must not get its own full budget.
    #[test]
    fn ipv6_aggregates_per_48() {
        let l = FailureLimiter::new(&cfg());
        let t0 = Instant::now();
        // Five /64s of one /48, one failure each: every /64 still has budget left...
        for i in 1..=5u16 {
            let ip: IpAddr = format!("2001:db8:7:{i:x}::1").parse().expect("ip");
            assert!(l.check(ip, None, t0).is_ok(), "/64 number {i}");
            l.record_failure(ip, None, t0);
        }
        // ...but a sixth /64 of the same /48 is refused by the /48 bucket.
        let e = l
            .check("2001:db8:7:ffff::1".parse().expect("ip"), None, t0)
            .expect_err("the /48 is exhausted");
        assert!(matches!(e, Limited::Prefix48 { .. }), "{e:?}");
        // Another /48 and IPv4 are unaffected.
        assert!(l
            .check("2001:db8:8::1".parse().expect("ip"), None, t0)
            .is_ok());
        assert!(l.check("192.0.2.1".parse().expect("ip"), None, t0).is_ok());
        // IPv4 sources never touch the /48 table.
        for i in 0..10u8 {
            l.record_failure(IpAddr::from([192, 0, 2, i]), None, t0);
        }
        assert!(l
            .check("192.0.2.200".parse().expect("ip"), None, t0)
            .is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let l = FailureLimiter::new(&cfg());
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.record_failure(ip, Some(&format!("user{i}")), t0);
        }
        let (s, u) = l.tracked();
        assert!(s <= 64 && u <= 64, "{s} {u}");
    }
}
