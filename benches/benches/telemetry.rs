//! What the metrics (#11) add to one connection and one request on the data path: the
//! per-(listener, worker) counters, the handshake-duration histogram (atomic buckets), the
//! closed-connection guard and the two clock reads; and per request the status-class counter
//! and the latency histogram. Compare with `mtls_handshake_server` (handshake.rs): the
//! bookkeeping must stay in the noise of a handshake.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::metrics::{ListenerCounters, Metrics, WorkerCounters};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new(2);
    let slot: Arc<ListenerCounters> = metrics.listener_slot("edge", 0);
    let mut g = c.benchmark_group("telemetry");
    g.bench_function("per_connection", |b| {
        b.iter(|| {
            // As conn::serve_connection: accepted, closed guard, timing, admitted full.
            let lc = std::hint::black_box(&slot);
            WorkerCounters::inc(&lc.accepted);
            let guard = lc.clone();
            let started = Instant::now();
            lc.handshake_seconds.observe(started.elapsed());
            WorkerCounters::inc(&lc.full);
            WorkerCounters::inc(&guard.closed);
            drop(guard);
        })
    });
    let w = metrics.worker(0);
    g.bench_function("per_request", |b| {
        b.iter(|| {
            let t0 = Instant::now();
            w.response(std::hint::black_box(200), t0.elapsed());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
