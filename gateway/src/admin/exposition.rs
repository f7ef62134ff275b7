//! `/metrics`: the gateway's counters in the Prometheus text format, read at scrape time.
//!
//! Nothing here runs on the data path: the workers only bump their own relaxed atomics
//! ([`crate::metrics`]); a scrape sums the per-worker slots and encodes them with
//! `prometheus-client`.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::metrics::{HistogramSnapshot, Refusal};
use crate::revocation::Source;

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Renders every metric (the gateway's and the registered collectors') as Prometheus text.
pub fn render(state: &std::sync::Arc<AdminState>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GatewayCollector(state.clone())));
    for c in state.metrics.collectors() {
        registry.register_collector(Box::new(Shared(c)));
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

#[derive(Debug)]
struct Shared(std::sync::Arc<dyn Collector>);

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

#[derive(Debug)]
struct GatewayCollector(std::sync::Arc<AdminState>);

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        let fam = m.encode_family(labels)?;
        ConstCounter::new(*v).encode(fam)?;
    }
    Ok(())
}

fn gauge_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        let fam = m.encode_family(labels)?;
        ConstGauge::new(*v).encode(fam)?;
    }
    Ok(())
}

fn histogram_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, HistogramSnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        let mut fam = m.encode_family(labels)?;
        fam.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_us as f64 / 1e6,
            h.count(),
            &h.buckets(),
            None,
        )?;
    }
    Ok(())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Collector for GatewayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &*self.0;
        let slots = st.metrics.listener_slots();
        let lw = |s: &crate::metrics::ListenerSlot| -> Labels<'static> {
            vec![
                ("listener", Cow::Owned(s.listener.to_string())),
                ("worker", Cow::Owned(s.worker.to_string())),
            ]
        };

        // Connections per listener and worker.
        let rows: Vec<_> = slots
            .iter()
            .map(|s| (lw(s), s.counters.accepted.load(Relaxed)))
            .collect();
        counter_family(
            &mut enc,
            "gateway_connections_accepted",
            "TCP connections accepted",
            &rows,
        )?;
        let rows: Vec<_> = slots
            .iter()
            .map(|s| (lw(s), s.counters.closed.load(Relaxed)))
            .collect();
        counter_family(
            &mut enc,
            "gateway_connections_closed",
            "Connections closed (refused, finished or dropped)",
            &rows,
        )?;
        let rows: Vec<_> = slots
            .iter()
            .map(|s| {
                let a = s.counters.accepted.load(Relaxed);
                let c = s.counters.closed.load(Relaxed);
                (lw(s), a.saturating_sub(c) as f64)
            })
            .collect();
        gauge_family(
            &mut enc,
            "gateway_connections_active",
            "Connections open now",
            &rows,
        )?;

        // Handshakes by result, refusals by reason (per listener, summed over workers).
        let mut listeners: Vec<std::sync::Arc<str>> =
            slots.iter().map(|s| s.listener.clone()).collect();
        listeners.sort();
        listeners.dedup();
        let sum = |name: &str, f: &dyn Fn(&crate::metrics::ListenerCounters) -> u64| -> u64 {
            slots
                .iter()
                .filter(|s| &*s.listener == name)
                .map(|s| f(&s.counters))
                .sum()
        };
        let mut rows = Vec::new();
        for l in &listeners {
            let full = sum(l, &|c| c.full.load(Relaxed));
            let resumed = sum(l, &|c| c.resumed.load(Relaxed));
            let refused: u64 = Refusal::ALL
                .iter()
                .map(|r| sum(l, &|c| c.refusals(*r)))
                .sum();
            for (result, v) in [("full", full), ("resumed", resumed), ("refused", refused)] {
                rows.push((
                    vec![
                        ("listener", Cow::Owned(l.to_string())),
                        ("result", Cow::Borrowed(result)),
                    ],
                    v,
                ));
            }
        }
        counter_family(
            &mut enc,
            "gateway_handshakes",
            "TLS handshakes by result: full or resumed (admitted), refused",
            &rows,
        )?;
        let mut rows = Vec::new();
        for l in &listeners {
            for r in Refusal::ALL {
                rows.push((
                    vec![
                        ("listener", Cow::Owned(l.to_string())),
                        ("reason", Cow::Borrowed(r.label())),
                    ],
                    sum(l, &|c| c.refusals(r)),
                ));
            }
        }
        counter_family(
            &mut enc,
            "gateway_handshake_refusals",
            "Connections refused at or right after the handshake, by reason",
            &rows,
        )?;
        let rows: Vec<_> = listeners
            .iter()
            .map(|l| {
                let mut h = HistogramSnapshot::default();
                for s in slots.iter().filter(|s| &s.listener == l) {
                    s.counters.handshake_seconds.add_to(&mut h);
                }
                (vec![("listener", Cow::Owned(l.to_string()))], h)
            })
            .collect();
        histogram_family(
            &mut enc,
            "gateway_handshake_duration_seconds",
            "Time from accept to the end of the TLS handshake",
            &rows,
        )?;
        let rows: Vec<_> = listeners
            .iter()
            .map(|l| {
                let full = sum(l, &|c| c.full.load(Relaxed));
                let resumed = sum(l, &|c| c.resumed.load(Relaxed));
                let ratio = if full + resumed == 0 {
                    0.0
                } else {
                    resumed as f64 / (full + resumed) as f64
                };
                (vec![("listener", Cow::Owned(l.to_string()))], ratio)
            })
            .collect();
        gauge_family(
            &mut enc,
            "gateway_handshake_resumed_ratio",
            "Resumed share of the admitted handshakes since start",
            &rows,
        )?;

        // Requests (per worker slots summed).
        let workers = st.metrics.worker_slots();
        let rows: Vec<_> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .enumerate()
            .map(|(i, class)| {
                (
                    vec![("class", Cow::Borrowed(*class))],
                    workers.iter().map(|w| w.responses[i].load(Relaxed)).sum(),
                )
            })
            .collect();
        counter_family(
            &mut enc,
            "gateway_http_responses",
            "HTTP responses by status class",
            &rows,
        )?;
        let mut h = HistogramSnapshot::default();
        for w in workers {
            w.request_seconds.add_to(&mut h);
        }
        histogram_family(
            &mut enc,
            "gateway_upstream_response_seconds",
            "Time from a request's head to its response's head (access decision and backend)",
            &[(Vec::new(), h)],
        )?;
        let rows = vec![(
            Vec::new(),
            workers.iter().map(|w| w.backend_errors.load(Relaxed)).sum(),
        )];
        counter_family(
            &mut enc,
            "gateway_backend_errors",
            "Requests answered 502 because the backend failed",
            &rows,
        )?;
        for (name, help, pick) in [
            (
                "gateway_backend_timeouts",
                "Requests answered 504: backend connect or response-head deadline exceeded",
                (|w: &crate::metrics::WorkerCounters| &w.backend_timeouts)
                    as fn(&crate::metrics::WorkerCounters) -> &std::sync::atomic::AtomicU64,
            ),
            (
                "gateway_request_timeouts",
                "Requests answered 408: the request body stalled",
                |w| &w.request_timeouts,
            ),
            (
                "gateway_connections_over_capacity",
                "Connections accepted and closed at once: max_connections_per_worker reached",
                |w| &w.over_capacity,
            ),
        ] {
            let rows = vec![(
                Vec::new(),
                workers.iter().map(|w| pick(w).load(Relaxed)).sum(),
            )];
            counter_family(&mut enc, name, help, &rows)?;
        }
        let rows = vec![(
            Vec::new(),
            workers.iter().map(|w| w.blocked.load(Relaxed)).sum(),
        )];
        counter_family(
            &mut enc,
            "gateway_connections_blocked",
            "Connections closed at accept: source on the blocklist",
            &rows,
        )?;

        // Password authentication.
        let p = &crate::access::listener::PASSWORD_STATS;
        let rows: Vec<_> = [
            ("ok", p.ok.load(Relaxed)),
            ("failed", p.failed.load(Relaxed)),
            ("cached", p.cached.load(Relaxed)),
        ]
        .into_iter()
        .map(|(o, v)| (vec![("outcome", Cow::Borrowed(o))], v))
        .collect();
        counter_family(
            &mut enc,
            "gateway_password_checks",
            "Password checks by outcome (cached: login cache, no argon2 run)",
            &rows,
        )?;
        counter_family(
            &mut enc,
            "gateway_password_rate_limited",
            "Password attempts refused by the failure rate limit (429)",
            &[(Vec::new(), p.rate_limited.load(Relaxed))],
        )?;

        // Verified-chain cache (returning clients skip path validation).
        let cc = crate::pki::path::chain_cache::stats();
        counter_family(
            &mut enc,
            "gateway_chain_cache_lookups",
            "Certificate path validations by result (hit: answered by the verified-chain cache)",
            &[
                (
                    vec![("result", Cow::Borrowed("hit"))],
                    cc.hits.load(Relaxed),
                ),
                (
                    vec![("result", Cow::Borrowed("miss"))],
                    cc.misses.load(Relaxed),
                ),
            ],
        )?;

        // Revocation.
        let plan = st.plan.load();
        if let Some(cache) = &plan.revocation_cache {
            let m = cache.metrics();
            counter_family(
                &mut enc,
                "gateway_revocation_cache_lookups",
                "Status lookups by result",
                &[
                    (vec![("result", Cow::Borrowed("hit"))], m.hits),
                    (vec![("result", Cow::Borrowed("miss"))], m.misses),
                ],
            )?;
            let (statuses, crls) = cache.entries();
            gauge_family(
                &mut enc,
                "gateway_revocation_cache_entries",
                "Entries in the revocation cache",
                &[
                    (vec![("kind", Cow::Borrowed("status"))], statuses as f64),
                    (vec![("kind", Cow::Borrowed("crl"))], crls as f64),
                ],
            )?;
            let live_m = cache.live_metrics();
            let ocsp_fail = live_m.fetch_failures(Source::Ocsp);
            let crl_fail = live_m.fetch_failures(Source::Crl);
            counter_family(
                &mut enc,
                "gateway_revocation_fetches",
                "CRL downloads and OCSP requests by source and outcome",
                &[
                    (
                        vec![
                            ("source", Cow::Borrowed("ocsp")),
                            ("outcome", Cow::Borrowed("ok")),
                        ],
                        m.ocsp_fetches.saturating_sub(ocsp_fail),
                    ),
                    (
                        vec![
                            ("source", Cow::Borrowed("ocsp")),
                            ("outcome", Cow::Borrowed("failed")),
                        ],
                        ocsp_fail,
                    ),
                    (
                        vec![
                            ("source", Cow::Borrowed("crl")),
                            ("outcome", Cow::Borrowed("ok")),
                        ],
                        m.crl_fetches
                            .saturating_sub(crl_fail)
                            .saturating_sub(m.crl_not_modified),
                    ),
                    (
                        vec![
                            ("source", Cow::Borrowed("crl")),
                            ("outcome", Cow::Borrowed("not_modified")),
                        ],
                        m.crl_not_modified,
                    ),
                    (
                        vec![
                            ("source", Cow::Borrowed("crl")),
                            ("outcome", Cow::Borrowed("failed")),
                        ],
                        crl_fail,
                    ),
                ],
            )?;
            histogram_family(
                &mut enc,
                "gateway_revocation_fetch_duration_seconds",
                "Latency of CRL downloads and OCSP requests",
                &[
                    (
                        vec![("source", Cow::Borrowed("ocsp"))],
                        live_m.fetch_seconds(Source::Ocsp),
                    ),
                    (
                        vec![("source", Cow::Borrowed("crl"))],
                        live_m.fetch_seconds(Source::Crl),
                    ),
                ],
            )?;
            counter_family(
                &mut enc,
                "gateway_revocation_flight_joins",
                "Status waiters that joined a fetch already in flight",
                &[(Vec::new(), m.flight_joins)],
            )?;
        }
        let now = now_unix();
        let crl_rows: Vec<_> = super::all_crls(&plan)
            .into_iter()
            .map(|c| {
                (
                    vec![
                        ("crl", Cow::Owned(c.source)),
                        ("issuer", Cow::Owned(c.issuer)),
                    ],
                    (c.next_update - now) as f64,
                )
            })
            .collect();
        gauge_family(
            &mut enc,
            "gateway_crl_next_update_seconds",
            "Seconds until the CRL's nextUpdate (negative: expired, clients of its CA are refused)",
            &crl_rows,
        )?;

        // Steering.
        if let Some(steering) = &st.steering {
            let c = steering.counters();
            for (name, v) in c.pairs() {
                let full = format!("gateway_{name}");
                match full.strip_suffix("_total") {
                    Some(base) => counter_family(
                        &mut enc,
                        base,
                        "Kernel steering counter",
                        &[(Vec::new(), v)],
                    )?,
                    None => gauge_family(
                        &mut enc,
                        &full,
                        "Kernel steering gauge",
                        &[(Vec::new(), v as f64)],
                    )?,
                }
            }
        }

        // Reloads.
        let r = &st.reloads;
        counter_family(
            &mut enc,
            "gateway_reloads",
            "Configuration reloads by outcome",
            &[
                (vec![("outcome", Cow::Borrowed("ok"))], r.ok.load(Relaxed)),
                (
                    vec![("outcome", Cow::Borrowed("failed"))],
                    r.failed.load(Relaxed),
                ),
            ],
        )?;
        gauge_family(
            &mut enc,
            "gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful (re)load",
            &[(Vec::new(), r.last_success_unix.load(Relaxed) as f64)],
        )?;
        gauge_family(
            &mut enc,
            "gateway_config_last_reload_failed",
            "1 when the last reload was refused (the previous configuration keeps serving)",
            &[(
                Vec::new(),
                if r.last_failed.load(Relaxed) {
                    1.0
                } else {
                    0.0
                },
            )],
        )?;
        gauge_family(
            &mut enc,
            "gateway_ready",
            "1 when /readyz answers 200",
            &[(
                Vec::new(),
                if super::readiness(st).is_ok() {
                    1.0
                } else {
                    0.0
                },
            )],
        )?;
        Ok(())
    }
}
