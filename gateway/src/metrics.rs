//! Counters of the data path. Each worker owns a cache-line-padded slot, so counting never
//! contends across cores; readers sum the slots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why a connection ended before reaching the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The TLS handshake failed on a certificate problem (untrusted, expired, revoked, ...).
    Certificate,
    /// The TLS handshake failed for another reason (protocol, suite, no certificate, ...).
    Handshake,
    /// The handshake did not complete within the deadline.
    HandshakeTimeout,
    /// The post-handshake status check refused the certificate.
    Status,
}

/// One worker's counters.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at accept because the source is on the blocklist.
    pub blocked: AtomicU64,
    /// Handshakes completed and admitted.
    pub handshakes_ok: AtomicU64,
    /// TLS 1.3/1.2 resumed handshakes.
    pub resumed: AtomicU64,
    /// Rejected at the certificate check.
    pub rejected_certificate: AtomicU64,
    /// Rejected for another handshake error.
    pub rejected_handshake: AtomicU64,
    /// Handshake deadline exceeded.
    pub handshake_timeouts: AtomicU64,
    /// Refused by the post-handshake status check.
    pub rejected_status: AtomicU64,
    /// HTTP requests proxied.
    pub requests: AtomicU64,
    /// Requests answered 502 because the backend failed.
    pub backend_errors: AtomicU64,
    /// Requests answered 504: backend connect or response-head deadline exceeded.
    pub backend_timeouts: AtomicU64,
    /// Requests answered 408: the request body stalled.
    pub request_timeouts: AtomicU64,
    /// Connections accepted and closed at once: `max_connections_per_worker` reached.
    pub over_capacity: AtomicU64,
    /// Accepted connections whose SO_INCOMING_CPU equals the worker's CPU.
    pub local_cpu: AtomicU64,
    /// Accepted connections processed by the kernel on another CPU.
    pub remote_cpu: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 5],
    /// Time from a request's head to its response's head (access decision + backend).
    pub request_seconds: Histogram,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            accepted: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            handshakes_ok: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            rejected_certificate: AtomicU64::new(0),
            rejected_handshake: AtomicU64::new(0),
            handshake_timeouts: AtomicU64::new(0),
            rejected_status: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            backend_timeouts: AtomicU64::new(0),
            request_timeouts: AtomicU64::new(0),
            over_capacity: AtomicU64::new(0),
            local_cpu: AtomicU64::new(0),
            remote_cpu: AtomicU64::new(0),
            responses: Default::default(),
            request_seconds: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl WorkerCounters {
    /// Counts a rejection.
    pub fn reject(&self, r: Rejection) {
        let c = match r {
            Rejection::Certificate => &self.rejected_certificate,
            Rejection::Handshake => &self.rejected_handshake,
            Rejection::HandshakeTimeout => &self.handshake_timeouts,
            Rejection::Status => &self.rejected_status,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Adds one to a counter.
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Counts a response and its latency.
    #[inline]
    pub fn response(&self, status: u16, took: std::time::Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
        self.request_seconds.observe(took);
    }
}

/// All workers' counters, the per-(listener, worker) slots, and collectors other modules
/// register for the admin endpoint's `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    workers: Arc<[WorkerCounters]>,
    listeners: Arc<std::sync::Mutex<Vec<ListenerSlot>>>,
    collectors: Arc<std::sync::Mutex<Vec<Arc<dyn prometheus_client::collector::Collector>>>>,
}

/// A summed snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// See [`WorkerCounters::accepted`].
    pub accepted: u64,
    /// See [`WorkerCounters::blocked`].
    pub blocked: u64,
    /// See [`WorkerCounters::handshakes_ok`].
    pub handshakes_ok: u64,
    /// See [`WorkerCounters::resumed`].
    pub resumed: u64,
    /// See [`WorkerCounters::rejected_certificate`].
    pub rejected_certificate: u64,
    /// See [`WorkerCounters::rejected_handshake`].
    pub rejected_handshake: u64,
    /// See [`WorkerCounters::handshake_timeouts`].
    pub handshake_timeouts: u64,
    /// See [`WorkerCounters::rejected_status`].
    pub rejected_status: u64,
    /// See [`WorkerCounters::requests`].
    pub requests: u64,
    /// See [`WorkerCounters::backend_errors`].
    pub backend_errors: u64,
    /// See [`WorkerCounters::backend_timeouts`].
    pub backend_timeouts: u64,
    /// See [`WorkerCounters::request_timeouts`].
    pub request_timeouts: u64,
    /// See [`WorkerCounters::over_capacity`].
    pub over_capacity: u64,
    /// See [`WorkerCounters::local_cpu`].
    pub local_cpu: u64,
    /// See [`WorkerCounters::remote_cpu`].
    pub remote_cpu: u64,
}

impl Metrics {
    /// Counters for `n` workers.
    pub fn new(n: usize) -> Self {
        Metrics {
            workers: (0..n).map(|_| WorkerCounters::default()).collect(),
            listeners: Arc::default(),
            collectors: Arc::default(),
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The counters slot of `listener` in `worker`, created on first use and kept across
    /// reloads (a listener keeps its counters while its name stays). Not for the hot path:
    /// called when a listener's runtime is built.
    pub fn listener_slot(&self, listener: &str, worker: usize) -> Arc<ListenerCounters> {
        let mut slots = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = slots
            .iter()
            .find(|s| s.worker == worker && &*s.listener == listener)
        {
            return s.counters.clone();
        }
        let counters = Arc::new(ListenerCounters::default());
        slots.push(ListenerSlot {
            listener: Arc::from(listener),
            worker,
            counters: counters.clone(),
        });
        counters
    }

    /// Every (listener, worker) slot.
    pub fn listener_slots(&self) -> Vec<ListenerSlot> {
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds a collector whose metrics `/metrics` exports next to the gateway's own (for
    /// counters that live in other modules: limits, abuse, audit...).
    pub fn register_collector(&self, c: Arc<dyn prometheus_client::collector::Collector>) {
        self.collectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c);
    }

    /// The registered collectors.
    pub fn collectors(&self) -> Vec<Arc<dyn prometheus_client::collector::Collector>> {
        self.collectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Per-worker counters, for the exporter.
    pub fn worker_slots(&self) -> &[WorkerCounters] {
        &self.workers
    }

    /// Worker `i`'s slot.
    pub fn worker(&self, i: usize) -> &WorkerCounters {
        &self.workers[i % self.workers.len()]
    }

    /// Sums all workers.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for w in self.workers.iter() {
            s.accepted += w.accepted.load(Relaxed);
            s.blocked += w.blocked.load(Relaxed);
            s.handshakes_ok += w.handshakes_ok.load(Relaxed);
            s.resumed += w.resumed.load(Relaxed);
            s.rejected_certificate += w.rejected_certificate.load(Relaxed);
            s.rejected_handshake += w.rejected_handshake.load(Relaxed);
            s.handshake_timeouts += w.handshake_timeouts.load(Relaxed);
            s.rejected_status += w.rejected_status.load(Relaxed);
            s.requests += w.requests.load(Relaxed);
            s.backend_errors += w.backend_errors.load(Relaxed);
            s.backend_timeouts += w.backend_timeouts.load(Relaxed);
            s.request_timeouts += w.request_timeouts.load(Relaxed);
            s.over_capacity += w.over_capacity.load(Relaxed);
            s.local_cpu += w.local_cpu.load(Relaxed);
            s.remote_cpu += w.remote_cpu.load(Relaxed);
        }
        s
    }
}

/// Why a connection was refused, as exported in `gateway_handshake_refusals_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The certificate is revoked (CRL or OCSP).
    Revoked,
    /// The certificate (or one in its chain) has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The chain does not lead to a trusted CA.
    Untrusted,
    /// A signature in the chain does not verify, or uses a refused algorithm.
    BadSignature,
    /// Weak key, SHA-1 or another key-policy violation.
    KeyPolicy,
    /// The clientAuth extended key usage is missing.
    Eku,
    /// A malformed or otherwise unacceptable certificate.
    BadCertificate,
    /// No client certificate on a SENSITIVE listener.
    NoCertificate,
    /// No current status could be had (unreachable, stale, unknown, bad signature...).
    NoCurrentStatus,
    /// Any other TLS failure (protocol version, suite, group, decode error, reset...).
    Protocol,
    /// The handshake did not complete within the deadline.
    Timeout,
}

impl Refusal {
    /// Every reason, in export order.
    pub const ALL: [Refusal; 12] = [
        Refusal::Revoked,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::Untrusted,
        Refusal::BadSignature,
        Refusal::KeyPolicy,
        Refusal::Eku,
        Refusal::BadCertificate,
        Refusal::NoCertificate,
        Refusal::NoCurrentStatus,
        Refusal::Protocol,
        Refusal::Timeout,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Untrusted => "untrusted",
            Refusal::BadSignature => "bad_signature",
            Refusal::KeyPolicy => "key_policy",
            Refusal::Eku => "eku",
            Refusal::BadCertificate => "bad_certificate",
            Refusal::NoCertificate => "no_certificate",
            Refusal::NoCurrentStatus => "no_current_status",
            Refusal::Protocol => "protocol",
            Refusal::Timeout => "timeout",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A histogram of durations with fixed bucket bounds, in relaxed atomics: recording is two
/// `fetch_add`s and a short scan, never a lock. One per worker (in a padded slot), so
/// recording never contends across cores; summed at scrape.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; the last one is the +Inf bucket.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// Bucket bounds (seconds) of the handshake and request duration histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    #[inline]
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Adds this histogram into `into`.
    pub fn add_to(&self, into: &mut HistogramSnapshot) {
        if into.counts.len() != self.counts.len() {
            into.bounds = self.bounds;
            into.counts = vec![0; self.counts.len()];
        }
        for (a, c) in into.counts.iter_mut().zip(self.counts.iter()) {
            *a += c.load(Relaxed);
        }
        into.sum_us += self.sum_us.load(Relaxed);
    }
}

/// Summed histogram counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, seconds.
    pub bounds: &'static [f64],
    /// Non-cumulative counts, one more than `bounds` (+Inf).
    pub counts: Vec<u64>,
    /// Sum of the observations, microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Total count.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Per-bucket (non-cumulative) `(upper bound, count)` pairs, `+Inf` last: what
    /// `prometheus-client` encodes (it accumulates them itself).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (self.bounds.get(i).copied().unwrap_or(f64::INFINITY), *c))
            .collect()
    }
}

/// One listener's counters in one worker (cache-line aligned; written only by that worker).
#[derive(Debug)]
#[repr(align(128))]
pub struct ListenerCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed (for any reason); active = accepted - closed.
    pub closed: AtomicU64,
    /// Full handshakes admitted.
    pub full: AtomicU64,
    /// Resumed handshakes admitted.
    pub resumed: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
    /// Duration from accept to handshake complete (admitted or not, timeouts excluded).
    pub handshake_seconds: Histogram,
}

impl Default for ListenerCounters {
    fn default() -> Self {
        ListenerCounters {
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            full: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            refusals: Default::default(),
            handshake_seconds: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl ListenerCounters {
    /// Counts a refusal.
    #[inline]
    pub fn refuse(&self, r: Refusal) {
        self.refusals[r.index()].fetch_add(1, Relaxed);
    }

    /// Refusals so far for `r`.
    pub fn refusals(&self, r: Refusal) -> u64 {
        self.refusals[r.index()].load(Relaxed)
    }
}

/// One (listener, worker) slot as the exporter sees it.
#[derive(Debug, Clone)]
pub struct ListenerSlot {
    /// Listener name.
    pub listener: Arc<str>,
    /// Worker index.
    pub worker: usize,
    /// The counters.
    pub counters: Arc<ListenerCounters>,
}
