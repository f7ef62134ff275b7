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
#[derive(Debug, Default)]
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
}

/// All workers' counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    workers: Arc<[WorkerCounters]>,
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
        }
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
