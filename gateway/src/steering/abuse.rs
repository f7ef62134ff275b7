//! Abuse blocking: counts failed handshakes per source in a sliding window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::config::AbuseConfig;

/// Per-source failure windows. Not on the hot path: only failed handshakes touch it.
#[derive(Debug)]
pub(crate) struct AbuseTracker {
    max_failures: usize,
    window: Duration,
    cooldown: Duration,
    max_tracked: usize,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    blocked: HashMap<IpAddr, Instant>,
}

impl AbuseTracker {
    pub(crate) fn new(cfg: &AbuseConfig) -> Self {
        Self {
            max_failures: cfg.max_failures.max(1) as usize,
            window: Duration::from_secs(cfg.window_secs),
            cooldown: Duration::from_secs(cfg.cooldown_secs),
            max_tracked: cfg.max_tracked.max(1),
            failures: HashMap::new(),
            blocked: HashMap::new(),
        }
    }

    /// Records one failure at `now`; returns true when `ip` must now be blocked.
    pub(crate) fn record(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.blocked.contains_key(&ip) {
            return false;
        }
        if self.failures.len() >= self.max_tracked && !self.failures.contains_key(&ip) {
            let window = self.window;
            self.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.failures.len() >= self.max_tracked {
                // Still full of active sources: forget an arbitrary one.
                if let Some(k) = self.failures.keys().next().copied() {
                    self.failures.remove(&k);
                }
            }
        }
        let q = self.failures.entry(ip).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        q.push_back(now);
        if q.len() >= self.max_failures {
            self.failures.remove(&ip);
            self.blocked.insert(ip, now + self.cooldown);
            return true;
        }
        false
    }

    /// Removes and returns the sources whose cooldown ended by `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<IpAddr> {
        let done: Vec<IpAddr> = self
            .blocked
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &done {
            self.blocked.remove(ip);
        }
        let window = self.window;
        self.failures
            .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        done
    }

    /// Sources currently blocked.
    #[cfg(test)]
    pub(crate) fn blocked(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.blocked.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_n_failures_in_window_then_expires() {
        let cfg = AbuseConfig {
            enabled: true,
            max_failures: 3,
            window_secs: 10,
            cooldown_secs: 5,
            max_tracked: 4,
        };
        let mut t = AbuseTracker::new(&cfg);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        assert!(!t.record(ip, t0));
        assert!(!t.record(ip, t0 + Duration::from_secs(1)));
        // Both earlier failures left the window: this is the first of a new count.
        assert!(!t.record(ip, t0 + Duration::from_secs(20)));
        assert!(!t.record(ip, t0 + Duration::from_secs(21)));
        let t0 = t0 + Duration::from_secs(10);
        assert!(t.record(ip, t0 + Duration::from_secs(12)));
        assert_eq!(t.blocked().count(), 1);
        assert!(t.expire(t0 + Duration::from_secs(13)).is_empty());
        assert_eq!(t.expire(t0 + Duration::from_secs(17)), vec![ip]);
        for i in 0..10u8 {
            t.record(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert!(t.failures.len() <= 4);
    }
}
