//! The process-wide revocation cache: per-certificate status entries and verified CRLs in
//! lock-free maps (papaya: readers never wait for writers), single-flight fetches on a
//! background runtime, and a refresh loop that keeps CRLs and hot OCSP answers current.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use super::cert::CertInfo;
use super::config::{CertIdHash, RevocationOrder, Source};
use super::crl::{self, Crl, CrlError};
use super::error::Reason;
use super::fetch::{FetchError, Fetched, Fetcher, Validators};
use super::flight::SingleFlight;
use super::metrics::{Metrics, MetricsSnapshot};
use super::now_secs;
use super::ocsp::{self, OcspAnswer, OcspError, OcspStatus};

/// How one listener fetches and judges status (shared by its cache entries for refresh).
#[derive(Debug)]
pub(crate) struct FetchCtx {
    pub fetcher: Fetcher,
    pub provider: Arc<CryptoProvider>,
    pub skew: i64,
    pub refresh: i64,
    pub hash: CertIdHash,
    pub nonce: bool,
    pub get: bool,
}

/// A verified CRL and how to refresh it.
#[derive(Debug)]
pub(crate) struct CrlState {
    pub crl: Arc<Crl>,
    pub url: String,
    pub issuer: Arc<[u8]>,
    pub validators: Validators,
    pub fetched_at: i64,
    retry_at: AtomicI64,
    pub ctx: Arc<FetchCtx>,
}

impl CrlState {
    fn is_due(&self, now: i64) -> bool {
        let life = (self.crl.next_update - self.crl.this_update).max(10);
        let margin = self.ctx.refresh.min(life / 10).max(1);
        now >= self.fetched_at + self.ctx.refresh || now >= self.crl.next_update - margin
    }
}

/// What an OCSP entry needs to be refreshed in the background.
#[derive(Debug)]
pub(crate) struct OcspTarget {
    pub url: String,
    pub cert: Arc<[u8]>,
    pub issuer: Arc<[u8]>,
    pub ctx: Arc<FetchCtx>,
}

/// A cached status of one (issuer, serial).
#[derive(Debug)]
pub(crate) struct StatusEntry {
    /// `Some(Reason::Revoked{..})` when revoked, `None` when good.
    pub revoked: Option<Reason>,
    pub source: Source,
    pub valid_until: i64,
    pub fetched_at: i64,
    /// For CRL-derived entries: the CRL epoch they were computed in.
    pub crl_epoch: Option<u64>,
    hit: AtomicBool,
    refetch: Option<Arc<OcspTarget>>,
    retry_at: AtomicI64,
}

impl StatusEntry {
    pub(crate) fn new(
        revoked: Option<Reason>,
        source: Source,
        valid_until: i64,
        crl_epoch: Option<u64>,
    ) -> Self {
        StatusEntry {
            revoked,
            source,
            valid_until,
            fetched_at: now_secs(),
            crl_epoch,
            hit: AtomicBool::new(false),
            refetch: None,
            retry_at: AtomicI64::new(0),
        }
    }
}

/// The key of a status entry: the issuer Name and the serial.
pub(crate) fn status_key(issuer: &[u8], serial: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + issuer.len() + serial.len());
    k.extend_from_slice(
        &u16::try_from(issuer.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    k.extend_from_slice(issuer);
    k.extend_from_slice(serial);
    k
}

/// The key of a CRL: its URL and the issuer's key.
pub(crate) fn crl_key(url: &str, issuer: &CertInfo<'_>) -> Vec<u8> {
    use sha2::Digest;
    let mut k = url.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&sha2::Sha256::digest(issuer.spki));
    k
}

/// A CRL held by the gateway (downloaded or a configured file), for `/metrics` and
/// `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlOverview {
    /// Its URL or file path.
    pub source: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}

type OcspResult = Result<OcspAnswer, Reason>;
type CrlResult = Result<Arc<CrlState>, Reason>;

/// One revocation cache per process, shared (via `Arc`) by every listener's checker and
/// every worker. Owns a background thread with its own tokio runtime for fetching.
pub struct RevocationCache {
    status: papaya::HashMap<Box<[u8]>, Arc<StatusEntry>>,
    crls: papaya::HashMap<Box<[u8]>, Arc<CrlState>>,
    crl_epoch: AtomicU64,
    ocsp_flights: SingleFlight<OcspResult>,
    crl_flights: SingleFlight<CrlResult>,
    pub(crate) metrics: Metrics,
    pub(crate) bg: Handle,
    max_entries: AtomicU64,
    _stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for RevocationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCache")
            .field("status_entries", &self.status.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl RevocationCache {
    /// Starts the cache and its background fetch thread (`revocation`).
    ///
    /// `max_entries` bounds the per-certificate entries (each checker may lower it).
    ///
    /// # Errors
    /// The I/O error if the thread or its runtime cannot be created.
    pub fn new(max_entries: usize) -> std::io::Result<Arc<Self>> {
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("revocation".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = htx.send(Err(e));
                        return;
                    }
                };
                let _ = htx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })?;
        let bg = hrx
            .recv()
            .map_err(|_| std::io::Error::other("revocation thread died at start"))??;
        let cache = Arc::new(RevocationCache {
            status: papaya::HashMap::new(),
            crls: papaya::HashMap::new(),
            crl_epoch: AtomicU64::new(1),
            ocsp_flights: SingleFlight::default(),
            crl_flights: SingleFlight::default(),
            metrics: Metrics::default(),
            bg,
            max_entries: AtomicU64::new(max_entries as u64),
            _stop: Mutex::new(Some(stop_tx)),
        });
        let weak = Arc::downgrade(&cache);
        cache.bg.spawn(refresh_loop(weak));
        Ok(cache)
    }

    /// The counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The live counters (histograms by source).
    pub fn live_metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Entries held: (per-certificate statuses, CRLs).
    pub fn entries(&self) -> (usize, usize) {
        (self.status.len(), self.crls.len())
    }

    /// The CRLs downloaded from distribution points, with their validity.
    pub fn crls(&self) -> Vec<CrlOverview> {
        self.crls
            .pin()
            .values()
            .map(|s| CrlOverview {
                source: s.url.clone(),
                issuer: super::cert::name_string(&s.crl.issuer),
                this_update: s.crl.this_update,
                next_update: s.crl.next_update,
            })
            .collect()
    }

    /// Logs the counters (one `info` line); call it on an interval.
    pub fn log_metrics(&self) {
        let m = self.metrics();
        tracing::info!(
            target: "gateway::revocation::metrics",
            hits = m.hits,
            misses = m.misses,
            ocsp_fetches = m.ocsp_fetches,
            crl_fetches = m.crl_fetches,
            crl_not_modified = m.crl_not_modified,
            flight_joins = m.flight_joins,
            fetch_failures = m.fetch_failures,
            fetch_mean_us = m.mean_fetch_us(),
            fetch_max_us = m.fetch_us_max,
            rejected_revoked = m.rejected_revoked,
            rejected_unavailable = m.rejected_unavailable,
            rejected_stale = m.rejected_stale,
            rejected_bad_signature = m.rejected_bad_signature,
            rejected_unknown = m.rejected_unknown,
            rejected_malformed = m.rejected_malformed,
            rejected_issuer_not_found = m.rejected_issuer_not_found,
            rejected_path = m.rejected_path,
            soft_fail_accepts = m.soft_fail_accepts,
            entries = self.status.len(),
            crls = self.crls.len(),
            "revocation cache"
        );
    }

    pub(crate) fn lower_max_entries(&self, n: usize) {
        self.max_entries.fetch_min(n as u64, Ordering::Relaxed);
    }

    /// A valid entry for `key` at `now`, acceptable under `order` (a revoked entry from any
    /// source is always returned). Lock-free.
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        now: i64,
        order: RevocationOrder,
    ) -> Option<Arc<StatusEntry>> {
        let g = self.status.pin();
        let e = g.get(key)?;
        if now > e.valid_until {
            return None;
        }
        if let Some(epoch) = e.crl_epoch {
            if epoch != self.crl_epoch.load(Ordering::Acquire) {
                return None;
            }
        }
        if e.revoked.is_none() && !order.allows(e.source) {
            return None;
        }
        if !e.hit.load(Ordering::Relaxed) {
            e.hit.store(true, Ordering::Relaxed);
        }
        Some(e.clone())
    }

    /// Invalidates every CRL-derived status entry (a CRL changed).
    pub(crate) fn bump_epoch(&self) {
        self.crl_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn current_epoch(&self) -> u64 {
        self.crl_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn insert(&self, key: &[u8], entry: StatusEntry) {
        let max = self.max_entries.load(Ordering::Relaxed) as usize;
        if self.status.len() >= max {
            self.evict(now_secs(), max);
        }
        self.status.pin().insert(key.into(), Arc::new(entry));
    }

    fn evict(&self, now: i64, max: usize) {
        let g = self.status.pin();
        g.retain(|_, e| e.valid_until >= now);
        let target = max - max / 10;
        let mut excess = g.len().saturating_sub(target);
        if excess > 0 {
            g.retain(|_, e| {
                if excess > 0 && !e.hit.load(Ordering::Relaxed) {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
            g.retain(|_, _| {
                if excess > 0 {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// A stored CRL (current or not).
    pub(crate) fn crl(&self, key: &[u8]) -> Option<Arc<CrlState>> {
        self.crls.pin().get(key).cloned()
    }

    /// Starts (or joins) the OCSP fetch for `key`. `refresh`: fetch even though a valid
    /// answer is cached (background refresh).
    pub(crate) fn ocsp_flight(
        self: &Arc<Self>,
        key: &[u8],
        target: Arc<OcspTarget>,
        now: i64,
        refresh: bool,
    ) -> watch::Receiver<Option<OcspResult>> {
        let cache = self.clone();
        let k = key.to_vec();
        let recheck = || {
            if refresh {
                return None;
            }
            let g = self.status.pin();
            let e = g.get(key)?;
            if e.source != Source::Ocsp || now > e.valid_until {
                return None;
            }
            let status = match &e.revoked {
                None => OcspStatus::Good,
                Some(Reason::Revoked { at, code, .. }) => OcspStatus::Revoked {
                    time: at.unwrap_or(0),
                    reason: *code,
                },
                Some(_) => return None,
            };
            Some(Ok(OcspAnswer {
                status,
                this_update: e.fetched_at,
                valid_until: e.valid_until,
            }))
        };
        let (rx, started) =
            self.ocsp_flights
                .join_or_start(&self.bg, key, recheck, move || async move {
                    let r = fetch_ocsp(&cache, &target, now).await;
                    match &r {
                        Ok(ans) => {
                            let revoked = match ans.status {
                                OcspStatus::Good => None,
                                OcspStatus::Revoked { time, reason } => Some(Reason::Revoked {
                                    source: Source::Ocsp,
                                    at: Some(time),
                                    code: reason,
                                }),
                            };
                            let mut e =
                                StatusEntry::new(revoked, Source::Ocsp, ans.valid_until, None);
                            e.refetch = Some(target.clone());
                            cache.insert(&k, e);
                        }
                        Err(_) => cache.metrics.fetch_failure(Source::Ocsp),
                    }
                    r
                });
        if !started {
            self.metrics.join();
        }
        rx
    }

    /// Starts (or joins) the download of a CRL (`refresh`: even if a current one is stored).
    pub(crate) fn crl_flight(
        self: &Arc<Self>,
        key: &[u8],
        url: String,
        issuer: Arc<[u8]>,
        ctx: Arc<FetchCtx>,
        now: i64,
        refresh: bool,
    ) -> watch::Receiver<Option<CrlResult>> {
        let cache = self.clone();
        let k = key.to_vec();
        let skew = ctx.skew;
        let recheck = || {
            if refresh {
                return None;
            }
            self.crl(key)
                .filter(|s| s.crl.is_current(now, skew) && s.fetched_at >= now)
                .map(Ok)
        };
        let (rx, started) =
            self.crl_flights
                .join_or_start(&self.bg, key, recheck, move || async move {
                    let r = fetch_crl(&cache, &k, url, issuer, ctx, now).await;
                    if r.is_err() {
                        cache.metrics.fetch_failure(Source::Crl);
                    }
                    r
                });
        if !started {
            self.metrics.join();
        }
        rx
    }

    fn refresh_due(self: &Arc<Self>, now: i64) {
        let due: Vec<(Box<[u8]>, Arc<CrlState>)> = {
            let g = self.crls.pin();
            g.iter()
                .filter(|(_, s)| s.is_due(now) && s.retry_at.load(Ordering::Relaxed) <= now)
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect()
        };
        for (k, s) in due {
            s.retry_at
                .store(now + s.ctx.refresh.clamp(1, 30), Ordering::Relaxed);
            let _ = self.crl_flight(
                &k,
                s.url.clone(),
                s.issuer.clone(),
                s.ctx.clone(),
                now,
                true,
            );
        }
        let due: Vec<(Box<[u8]>, Arc<OcspTarget>)> = {
            let g = self.status.pin();
            // Expired entries go, except hot OCSP answers about to be refreshed.
            g.retain(|_, e| {
                e.valid_until + 60 >= now
                    || (e.refetch.is_some()
                        && e.hit.load(Ordering::Relaxed)
                        && e.valid_until + 3600 >= now)
            });
            g.iter()
                .filter_map(|(k, e)| {
                    let t = e.refetch.as_ref()?;
                    let margin = t
                        .ctx
                        .refresh
                        .min(((e.valid_until - e.fetched_at) / 10).max(1));
                    let due = now >= e.fetched_at + t.ctx.refresh || now >= e.valid_until - margin;
                    let hot = e.hit.load(Ordering::Relaxed);
                    if !(due && hot && e.retry_at.load(Ordering::Relaxed) <= now) {
                        return None;
                    }
                    // A failing responder is retried at most every 30 s (or the interval).
                    e.retry_at
                        .store(now + t.ctx.refresh.clamp(1, 30), Ordering::Relaxed);
                    Some((k.clone(), t.clone()))
                })
                .collect()
        };
        for (k, t) in due {
            let _ = self.ocsp_flight(&k, t, now, true);
        }
    }
}

async fn refresh_loop(weak: Weak<RevocationCache>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = weak.upgrade() else { break };
        cache.refresh_due(now_secs());
    }
}

fn ocsp_reason(e: OcspError) -> Reason {
    let why = e.to_string();
    match e {
        OcspError::BadSignature(_) | OcspError::NotAuthorized(_) => Reason::BadSignature { why },
        OcspError::Unknown => Reason::Unknown,
        OcspError::Stale(_) | OcspError::NotYetValid(_) => Reason::Stale { why },
        OcspError::ResponderStatus(_) => Reason::Unavailable { why },
        OcspError::Encode(_)
        | OcspError::Malformed(_)
        | OcspError::NotBasic
        | OcspError::CertIdMismatch
        | OcspError::NonceMismatch => Reason::Malformed { why },
    }
}

pub(crate) fn crl_reason(e: CrlError, source: &str) -> Reason {
    let why = format!("{source}: {e}");
    match e {
        CrlError::WrongIssuer | CrlError::NoCrlSign | CrlError::BadSignature(_) => {
            Reason::BadSignature { why }
        }
        CrlError::Stale(_)
        | CrlError::NotYetValid(_)
        | CrlError::NoNextUpdate
        | CrlError::Older { .. } => Reason::Stale { why },
        CrlError::Encoding(_)
        | CrlError::Der(_)
        | CrlError::Unsupported(_)
        | CrlError::SerialTooLong(_) => Reason::Malformed { why },
    }
}

fn fetch_reason(e: FetchError) -> Reason {
    Reason::Unavailable { why: e.to_string() }
}

async fn fetch_ocsp(cache: &RevocationCache, t: &OcspTarget, now: i64) -> OcspResult {
    fetch_ocsp_raw(cache, t, now).await.map(|(a, _)| a)
}

/// Fetches and verifies an OCSP answer; also returns the DER response (for stapling).
pub(crate) async fn fetch_ocsp_raw(
    cache: &RevocationCache,
    t: &OcspTarget,
    now: i64,
) -> Result<(OcspAnswer, bytes::Bytes), Reason> {
    let malformed = |e: super::cert::CertError| Reason::Malformed { why: e.to_string() };
    let cert = CertInfo::parse(&t.cert).map_err(malformed)?;
    let issuer = CertInfo::parse(&t.issuer).map_err(malformed)?;
    let ctx = &t.ctx;
    let nonce = if ctx.nonce {
        let mut n = [0u8; 16];
        ctx.provider
            .secure_random
            .fill(&mut n)
            .map_err(|_| Reason::Unavailable {
                why: "no randomness for the OCSP nonce".into(),
            })?;
        Some(n)
    } else {
        None
    };
    let req = ocsp::build_request(&cert, &issuer, ctx.hash, nonce).map_err(ocsp_reason)?;
    cache.metrics.ocsp_fetch();
    let t0 = Instant::now();
    let get = if ctx.get && nonce.is_none() {
        ocsp::get_url(&t.url, &req)
    } else {
        None
    };
    let body = match get {
        Some(u) => ctx.fetcher.get_ocsp(&u).await,
        None => ctx.fetcher.post_ocsp(&t.url, req.der.clone()).await,
    };
    cache.metrics.latency(Source::Ocsp, t0.elapsed());
    let body = body.map_err(fetch_reason)?;
    let answer = ocsp::verify_response(
        &body,
        &cert,
        &issuer,
        &req,
        &ctx.provider,
        ocsp::Freshness {
            now,
            skew: ctx.skew,
            max_age: ctx.refresh,
        },
    )
    .map_err(|e| {
        let r = ocsp_reason(e);
        match r {
            Reason::Unknown => r,
            other => prefix(other, &format!("OCSP {}", t.url)),
        }
    })?;
    Ok((answer, body))
}

fn prefix(r: Reason, p: &str) -> Reason {
    match r {
        Reason::Unavailable { why } => Reason::Unavailable {
            why: format!("{p}: {why}"),
        },
        Reason::Stale { why } => Reason::Stale {
            why: format!("{p}: {why}"),
        },
        Reason::BadSignature { why } => Reason::BadSignature {
            why: format!("{p}: {why}"),
        },
        Reason::Malformed { why } => Reason::Malformed {
            why: format!("{p}: {why}"),
        },
        other => other,
    }
}

async fn fetch_crl(
    cache: &RevocationCache,
    key: &[u8],
    url: String,
    issuer: Arc<[u8]>,
    ctx: Arc<FetchCtx>,
    now: i64,
) -> CrlResult {
    let old = cache.crl(key);
    let validators = old
        .as_ref()
        .filter(|o| o.crl.is_current(now, ctx.skew))
        .map(|o| o.validators.clone())
        .unwrap_or_default();
    cache.metrics.crl_fetch();
    let t0 = Instant::now();
    let fetched = ctx.fetcher.get(&url, &validators).await;
    cache.metrics.latency(Source::Crl, t0.elapsed());
    let old_expiry = old.as_ref().map(|o| o.crl.next_update);
    let stale_old = |why: String| match old_expiry {
        Some(t) => Reason::Stale {
            why: format!(
                "CRL {url}: last good copy expired at {} and refresh failed: {why}",
                super::der::fmt_time(t)
            ),
        },
        None => Reason::Unavailable {
            why: format!("CRL {why}"),
        },
    };
    let (bytes, validators) = match fetched {
        Ok(Fetched::Body(b, v)) => (b, v),
        Ok(Fetched::NotModified) => {
            cache.metrics.crl_not_modified();
            return match old {
                Some(o) if o.crl.is_current(now, ctx.skew) => {
                    let s = Arc::new(CrlState {
                        crl: o.crl.clone(),
                        url: url.clone(),
                        issuer,
                        validators: o.validators.clone(),
                        fetched_at: now,
                        retry_at: AtomicI64::new(0),
                        ctx,
                    });
                    cache.crls.pin().insert(key.into(), s.clone());
                    Ok(s)
                }
                _ => Err(stale_old(format!(
                    "{url}: 304 Not Modified but no current copy"
                ))),
            };
        }
        Err(e) => {
            if let Some(o) = old.filter(|o| o.crl.is_current(now, ctx.skew)) {
                // Keep the last good CRL until its nextUpdate.
                tracing::warn!(url = %url, error = %e, "CRL refresh failed; keeping the last good copy");
                return Ok(o);
            }
            return Err(stale_old(e.to_string()));
        }
    };
    let src = url.clone();
    // Only the header is read here (bounded work, nothing built from unsigned data): the
    // signer and the entries are decided by CRL processing. Off the fetch runtime's thread.
    let parsed = tokio::task::spawn_blocking(move || {
        crl::to_der_owned(bytes)
            .and_then(Crl::parse_owned)
            .map_err(|e| crl_reason(e, &src))
    })
    .await
    .map_err(|e| Reason::Unavailable {
        why: format!("CRL parser task failed: {e}"),
    })?;
    let crl = match parsed {
        Ok(c) => c,
        Err(r) => {
            if let Some(o) = old.filter(|o| o.crl.is_current(now, ctx.skew)) {
                tracing::warn!(url = %url, error = %r, "new CRL rejected; keeping the last good copy");
                return Ok(o);
            }
            return Err(r);
        }
    };
    // A replayed older CRL must not replace a newer one (it could un-revoke).
    if let Some(o) = old.as_ref().filter(|o| crl.is_older_than(&o.crl)) {
        let e = crl.older_error();
        if o.crl.is_current(now, ctx.skew) {
            tracing::warn!(url = %url, error = %e, "older CRL served; keeping the newer copy");
            return Ok(o.clone());
        }
        return Err(crl_reason(e, &url));
    }
    let changed = old.as_ref().is_none_or(|o| o.crl.digest != crl.digest);
    tracing::debug!(url = %url, bytes = crl.der_len(), next_update = %super::der::fmt_time(crl.next_update), "CRL loaded");
    let s = Arc::new(CrlState {
        crl: Arc::new(crl),
        url,
        issuer,
        validators,
        fetched_at: now,
        retry_at: AtomicI64::new(0),
        ctx,
    });
    cache.crls.pin().insert(key.into(), s.clone());
    if changed {
        cache.crl_epoch.fetch_add(1, Ordering::AcqRel);
    }
    Ok(s)
}
