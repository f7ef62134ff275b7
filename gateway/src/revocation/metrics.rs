//! Counters of the revocation cache and fetchers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::config::Source;
use super::error::Reason;
use crate::metrics::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

/// Live counters (relaxed atomics; cheap on the hot path).
#[derive(Debug)]
pub struct Metrics {
    /// Fetch latency by source (OCSP, CRL).
    fetch_seconds: [Histogram; 2],
    /// Failed fetches by source (OCSP, CRL).
    source_failures: [AtomicU64; 2],
    hits: AtomicU64,
    misses: AtomicU64,
    ocsp_fetches: AtomicU64,
    crl_fetches: AtomicU64,
    crl_not_modified: AtomicU64,
    flight_joins: AtomicU64,
    fetch_failures: AtomicU64,
    fetch_us_total: AtomicU64,
    fetch_us_max: AtomicU64,
    rejected: [AtomicU64; 8],
    soft_fail_accepts: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Status answered from the cache.
    pub hits: u64,
    /// Status not in the cache (a source had to be consulted).
    pub misses: u64,
    /// OCSP requests sent.
    pub ocsp_fetches: u64,
    /// CRL downloads attempted.
    pub crl_fetches: u64,
    /// Conditional CRL GETs answered 304.
    pub crl_not_modified: u64,
    /// Waiters that joined a fetch already in flight.
    pub flight_joins: u64,
    /// Fetches that failed (transport, HTTP, verification).
    pub fetch_failures: u64,
    /// Sum of fetch latencies, microseconds.
    pub fetch_us_total: u64,
    /// Largest fetch latency, microseconds.
    pub fetch_us_max: u64,
    /// Rejections: revoked.
    pub rejected_revoked: u64,
    /// Rejections: unavailable.
    pub rejected_unavailable: u64,
    /// Rejections: stale.
    pub rejected_stale: u64,
    /// Rejections: bad signature or unauthorized signer.
    pub rejected_bad_signature: u64,
    /// Rejections: OCSP unknown.
    pub rejected_unknown: u64,
    /// Rejections: malformed.
    pub rejected_malformed: u64,
    /// Rejections: issuer not found.
    pub rejected_issuer_not_found: u64,
    /// Rejections: certification path no longer valid (e.g. expired since the session).
    pub rejected_path: u64,
    /// Certificates accepted without status under `soft_fail`.
    pub soft_fail_accepts: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            fetch_seconds: [
                Histogram::new(LATENCY_BUCKETS),
                Histogram::new(LATENCY_BUCKETS),
            ],
            source_failures: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            ocsp_fetches: AtomicU64::new(0),
            crl_fetches: AtomicU64::new(0),
            crl_not_modified: AtomicU64::new(0),
            flight_joins: AtomicU64::new(0),
            fetch_failures: AtomicU64::new(0),
            fetch_us_total: AtomicU64::new(0),
            fetch_us_max: AtomicU64::new(0),
            rejected: Default::default(),
            soft_fail_accepts: AtomicU64::new(0),
        }
    }
}

fn source_index(s: Source) -> usize {
    match s {
        Source::Ocsp => 0,
        Source::Crl => 1,
    }
}

fn reason_index(r: &Reason) -> usize {
    match r {
        Reason::Revoked { .. } => 0,
        Reason::Unavailable { .. } => 1,
        Reason::Stale { .. } => 2,
        Reason::BadSignature { .. } => 3,
        Reason::Unknown => 4,
        Reason::Malformed { .. } => 5,
        Reason::IssuerNotFound => 6,
        Reason::Path { .. } => 7,
    }
}

impl Metrics {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn ocsp_fetch(&self) {
        self.ocsp_fetches.fetch_add(1, Relaxed);
    }
    pub(crate) fn crl_fetch(&self) {
        self.crl_fetches.fetch_add(1, Relaxed);
    }
    pub(crate) fn crl_not_modified(&self) {
        self.crl_not_modified.fetch_add(1, Relaxed);
    }
    pub(crate) fn join(&self) {
        self.flight_joins.fetch_add(1, Relaxed);
    }
    pub(crate) fn fetch_failure(&self, src: Source) {
        self.fetch_failures.fetch_add(1, Relaxed);
        self.source_failures[source_index(src)].fetch_add(1, Relaxed);
    }
    pub(crate) fn latency(&self, src: Source, d: std::time::Duration) {
        self.fetch_seconds[source_index(src)].observe(d);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.fetch_us_total.fetch_add(us, Relaxed);
        self.fetch_us_max.fetch_max(us, Relaxed);
    }
    pub(crate) fn rejected(&self, r: &Reason) {
        self.rejected[reason_index(r)].fetch_add(1, Relaxed);
    }
    pub(crate) fn soft_fail(&self) {
        self.soft_fail_accepts.fetch_add(1, Relaxed);
    }

    /// Fetch latencies of one source.
    pub fn fetch_seconds(&self, src: Source) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        self.fetch_seconds[source_index(src)].add_to(&mut h);
        h
    }

    /// Failed fetches of one source (transport, HTTP, verification).
    pub fn fetch_failures(&self, src: Source) -> u64 {
        self.source_failures[source_index(src)].load(Relaxed)
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |i: usize| self.rejected[i].load(Relaxed);
        MetricsSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            ocsp_fetches: self.ocsp_fetches.load(Relaxed),
            crl_fetches: self.crl_fetches.load(Relaxed),
            crl_not_modified: self.crl_not_modified.load(Relaxed),
            flight_joins: self.flight_joins.load(Relaxed),
            fetch_failures: self.fetch_failures.load(Relaxed),
            fetch_us_total: self.fetch_us_total.load(Relaxed),
            fetch_us_max: self.fetch_us_max.load(Relaxed),
            rejected_revoked: r(0),
            rejected_unavailable: r(1),
            rejected_stale: r(2),
            rejected_bad_signature: r(3),
            rejected_unknown: r(4),
            rejected_malformed: r(5),
            rejected_issuer_not_found: r(6),
            rejected_path: r(7),
            soft_fail_accepts: self.soft_fail_accepts.load(Relaxed),
        }
    }
}

impl MetricsSnapshot {
    /// Mean fetch latency in microseconds.
    pub fn mean_fetch_us(&self) -> u64 {
        let n = self.ocsp_fetches + self.crl_fetches;
        self.fetch_us_total.checked_div(n).unwrap_or(0)
    }
}
