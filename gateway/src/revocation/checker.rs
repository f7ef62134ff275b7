//! The per-listener revocation checker: cache-only status inside the handshake, and the
//! awaited check before any byte is forwarded.

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::cache::{
    crl_key, crl_reason, status_key, FetchCtx, OcspTarget, RevocationCache, StatusEntry,
};
use super::cert::{issuer_and_serial, name_string, CertInfo};
use super::config::{RevocationConfig, Source};
use super::crl;
use super::error::{Reason, RevocationError};
use super::fetch::Fetcher;
use super::flight::wait;
use super::local::{self, LocalCrl, LocalListing};
use super::now_secs;
use super::ocsp::OcspStatus;
use crate::status::{BoxFuture, CertStatus, ChainStatus, StatusCheck};

/// Errors building a checker.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    /// A configured file cannot be used.
    #[error("revocation.{key}: {message}")]
    File {
        /// The config key.
        key: &'static str,
        /// What is wrong (names the file).
        message: String,
    },
}

/// The status of one certificate the checker accepted, with its provenance (the
/// [`StatusCheck`] reports it as [`CertStatus::Good`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCert {
    /// Serial, hex.
    pub serial: String,
    /// The source of the `good` answer; `None` when accepted by soft-fail.
    pub source: Option<Source>,
    /// Until when the answer is valid (Unix seconds).
    pub valid_until: i64,
    /// Answered from the cache.
    pub cached: bool,
    /// The reason the status was unavailable, when accepted by soft-fail.
    pub soft_failed: Option<Reason>,
}

/// The outcome of an accepted check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Revocation checking is disabled for this listener (`enabled = false`).
    NotChecked,
    /// Every checked certificate (leaf first) is not revoked.
    Good(Vec<CheckedCert>),
}

/// Checks certificate status under one listener's policy. Shared (`Arc`) by all workers.
#[derive(Debug)]
pub struct RevocationChecker {
    cfg: RevocationConfig,
    listener: String,
    cache: Arc<RevocationCache>,
    anchors: Vec<CertificateDer<'static>>,
    local: ArcSwap<Vec<LocalCrl>>,
    responders: Vec<(Vec<u8>, Vec<u8>, String)>,
    ctx: Arc<FetchCtx>,
    provider: Arc<CryptoProvider>,
    offline: bool,
}

impl RevocationChecker {
    /// The configured CRL files currently loaded (for `/metrics` and `/readyz`).
    pub fn local_crls(&self) -> Vec<super::cache::CrlOverview> {
        self.local
            .load()
            .iter()
            .map(|l| super::cache::CrlOverview {
                source: l.path.display().to_string(),
                issuer: super::cert::name_string(&l.crl.issuer),
                this_update: l.crl.this_update,
                next_update: l.crl.next_update,
            })
            .collect()
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// Builds the checker of listener `listener` trusting `anchors` (the listener's trusted
    /// CAs: a leaf's issuer may be a trust anchor the client does not send).
    ///
    /// Loads the configured CRL files (signatures are checked against the issuer when first
    /// used) and per-issuer responder certificates.
    ///
    /// # Errors
    /// [`CheckerError`] naming the config key and file.
    pub fn new(
        cfg: &RevocationConfig,
        listener: &str,
        anchors: &[CertificateDer<'static>],
        provider: Arc<CryptoProvider>,
        cache: Arc<RevocationCache>,
    ) -> Result<Arc<Self>, CheckerError> {
        cache.lower_max_entries(cfg.cache_max_entries);
        let local = local::load(&cfg.crl_files)?;
        local::verify_with_anchors(&local, anchors, &provider);
        let mut responders = Vec::new();
        for r in &cfg.ocsp_responders {
            let file = |m: String| CheckerError::File {
                key: "ocsp_responders",
                message: format!("{}: {m}", r.issuer_cert.display()),
            };
            let certs = crate::pki::load_certs(&r.issuer_cert).map_err(|e| file(e.to_string()))?;
            let der = certs.first().ok_or_else(|| file("no certificate".into()))?;
            let info = CertInfo::parse(der).map_err(|e| file(e.to_string()))?;
            responders.push((
                info.subject.to_vec(),
                info.public_key.to_vec(),
                r.url.clone(),
            ));
        }
        let timeout = Duration::from_millis(cfg.fetch_timeout_ms);
        let ctx = Arc::new(FetchCtx {
            fetcher: Fetcher::new(timeout, cfg.max_response_bytes),
            provider: provider.clone(),
            skew: cfg.clock_skew_secs as i64,
            refresh: cfg.refresh_interval_secs as i64,
            hash: cfg.ocsp_cert_id_hash,
            nonce: cfg.ocsp_nonce,
            get: cfg.ocsp_get,
        });
        let checker = Arc::new(RevocationChecker {
            cfg: cfg.clone(),
            listener: listener.to_string(),
            cache,
            anchors: anchors.to_vec(),
            local: ArcSwap::from_pointee(local),
            responders,
            ctx,
            provider,
            offline: false,
        });
        if !cfg.crl_files.is_empty() {
            checker
                .cache
                .bg
                .spawn(reload_local_crls(Arc::downgrade(&checker)));
        }
        Ok(checker)
    }

    /// As [`RevocationChecker::new`], but never fetching: only the configured CRL files
    /// (and what is already cached) answer. For `gateway verify` without `--online`.
    ///
    /// # Errors
    /// [`CheckerError`].
    pub fn new_offline(
        cfg: &RevocationConfig,
        listener: &str,
        anchors: &[CertificateDer<'static>],
        provider: Arc<CryptoProvider>,
        cache: Arc<RevocationCache>,
    ) -> Result<Arc<Self>, CheckerError> {
        let c = Self::new(cfg, listener, anchors, provider, cache)?;
        let mut c = Arc::try_unwrap(c).map_err(|_| CheckerError::File {
            key: "crl_files",
            message: "internal: checker shared during construction".into(),
        })?;
        c.offline = true;
        Ok(Arc::new(c))
    }

    /// The shared cache.
    pub fn cache(&self) -> &Arc<RevocationCache> {
        &self.cache
    }

    /// Checks the status of a verified client chain now: answered from the cache when
    /// possible, else from OCSP/CRLs under the listener's order, awaited with the fetch
    /// deadline (fetches run on the cache's background runtime; the caller's thread never
    /// blocks). Call it after the handshake (full or resumed) and before forwarding a byte.
    ///
    /// # Errors
    /// [`RevocationError`] when the certificate must be refused; every refusal is logged.
    pub async fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<Verdict, RevocationError> {
        self.check_at(end_entity, intermediates, now_secs()).await
    }

    /// As [`RevocationChecker::check`], judging freshness at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`RevocationError`].
    pub async fn check_at(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<Verdict, RevocationError> {
        if !self.cfg.enabled {
            return Ok(Verdict::NotChecked);
        }
        let mut out = Vec::new();
        let mut chain: Vec<&[u8]> = vec![end_entity.as_ref()];
        if self.cfg.check_intermediates {
            chain.extend(intermediates.iter().map(|c| c.as_ref()));
        }
        for der in chain {
            if let Ok((iss, _)) = issuer_and_serial(der) {
                // A self-issued certificate in the chain (a root sent along) has no status.
                if !out.is_empty() && CertInfo::parse(der).is_ok_and(|c| c.subject == iss) {
                    continue;
                }
            }
            match self.check_one(der, intermediates, now).await {
                Ok(s) => out.push(s),
                Err(e) => {
                    self.cache.metrics.rejected(&e.reason);
                    if self.cfg.soft_fail && !e.is_revoked() {
                        self.cache.metrics.soft_fail();
                        tracing::warn!(
                            listener = %self.listener, issuer = %e.issuer, serial = %e.serial,
                            reason = %e.reason, "revocation status unavailable; accepted by soft_fail"
                        );
                        out.push(CheckedCert {
                            serial: e.serial,
                            source: None,
                            valid_until: now,
                            cached: false,
                            soft_failed: Some(e.reason),
                        });
                        continue;
                    }
                    tracing::warn!(
                        listener = %self.listener, issuer = %e.issuer, serial = %e.serial,
                        kind = e.reason.label(), reason = %e.reason,
                        "client certificate refused by revocation check"
                    );
                    return Err(e);
                }
            }
        }
        Ok(Verdict::Good(out))
    }

    async fn check_one(
        &self,
        der: &[u8],
        pool: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<CheckedCert, RevocationError> {
        let err = |reason: Reason, issuer: &[u8], serial: &[u8]| RevocationError {
            reason,
            issuer: name_string(issuer),
            serial: hex::encode(serial),
        };
        let (iss, serial) = issuer_and_serial(der).map_err(|e| RevocationError {
            reason: Reason::Malformed { why: e.to_string() },
            issuer: "?".into(),
            serial: "?".into(),
        })?;
        let key = status_key(iss, serial);
        let local = self.local_listing(iss, serial, now);
        if let LocalListing::Revoked(r) = local {
            return Err(err(r, iss, serial));
        }
        // A not yet verified CRL file listing the serial: decide on the slow path.
        let cached = match local {
            LocalListing::Unverified => None,
            _ => self.cache.lookup(&key, now, self.cfg.order),
        };
        if let Some(e) = cached {
            self.cache.metrics.hit();
            if let Some(r) = &e.revoked {
                return Err(err(r.clone(), iss, serial));
            }
            return Ok(CheckedCert {
                serial: hex::encode(serial),
                source: Some(e.source),
                valid_until: e.valid_until,
                cached: true,
                soft_failed: None,
            });
        }
        self.cache.metrics.miss();
        let info = CertInfo::parse(der)
            .map_err(|e| err(Reason::Malformed { why: e.to_string() }, iss, serial))?;
        let issuer_der = self
            .find_issuer(&info, pool)
            .ok_or_else(|| err(Reason::IssuerNotFound, iss, serial))?;
        let issuer = CertInfo::parse(&issuer_der)
            .map_err(|e| err(Reason::Malformed { why: e.to_string() }, iss, serial))?;

        let mut failures: Vec<Reason> = Vec::new();
        // Configured CRL files are local and cheap: always consulted (revoked wins).
        let mut local_good: Option<i64> = None;
        let local = self.local.load();
        for l in local.iter().filter(|l| l.crl.issuer == info.issuer) {
            match self.local_check(l, &issuer, now) {
                Ok(()) => {
                    if l.crl.is_revoked(info.serial) {
                        let r = Reason::Revoked {
                            source: Source::Crl,
                            at: None,
                            code: None,
                        };
                        return Err(err(r, iss, serial));
                    }
                    local_good =
                        Some(local_good.map_or(l.crl.next_update, |g| g.min(l.crl.next_update)));
                }
                Err(r) => failures.push(r),
            }
        }
        let good = |source, valid_until| CheckedCert {
            serial: hex::encode(serial),
            source: Some(source),
            valid_until,
            cached: false,
            soft_failed: None,
        };
        for &source in self.cfg.order.sources() {
            match source {
                Source::Ocsp => match self
                    .resolve_ocsp(&info, &issuer, &issuer_der, &key, now)
                    .await
                {
                    Ok((OcspStatus::Good, until)) => return Ok(good(Source::Ocsp, until)),
                    Ok((OcspStatus::Revoked { time, reason }, _)) => {
                        let r = Reason::Revoked {
                            source: Source::Ocsp,
                            at: Some(time),
                            code: reason,
                        };
                        return Err(err(r, iss, serial));
                    }
                    Err(r) => failures.push(r),
                },
                Source::Crl => {
                    if let Some(until) = local_good {
                        let epoch = self.cache.current_epoch();
                        self.cache.insert(
                            &key,
                            StatusEntry::new(None, Source::Crl, until, Some(epoch)),
                        );
                        return Ok(good(Source::Crl, until));
                    }
                    if info.crl_urls.is_empty() && !failures.is_empty() && !local.is_empty() {
                        continue;
                    }
                    match self
                        .resolve_crl(&info, &issuer_der, &issuer, &key, now)
                        .await
                    {
                        Ok((false, until)) => return Ok(good(Source::Crl, until)),
                        Ok((true, _)) => {
                            let r = Reason::Revoked {
                                source: Source::Crl,
                                at: None,
                                code: None,
                            };
                            return Err(err(r, iss, serial));
                        }
                        Err(r) => failures.push(r),
                    }
                }
            }
        }
        Err(err(combine(failures), iss, serial))
    }

    /// Finds the certificate that issued `info` among `pool` and the trust anchors (name
    /// match and signature check).
    fn find_issuer(&self, info: &CertInfo<'_>, pool: &[CertificateDer<'_>]) -> Option<Arc<[u8]>> {
        pool.iter()
            .map(|c| c.as_ref())
            .chain(self.anchors.iter().map(|c| c.as_ref()))
            .find(|c| CertInfo::parse(c).is_ok_and(|cand| info.is_issued_by(&cand, &self.provider)))
            .map(Arc::from)
    }

    fn local_check(&self, l: &LocalCrl, issuer: &CertInfo<'_>, now: i64) -> Result<(), Reason> {
        l.check(issuer, &self.provider, now, self.cfg.clock_skew_secs as i64)
    }

    fn local_listing(&self, iss: &[u8], serial: &[u8], now: i64) -> LocalListing {
        local::listing(
            &self.local.load(),
            iss,
            serial,
            now,
            self.cfg.clock_skew_secs as i64,
        )
    }

    async fn resolve_ocsp(
        &self,
        info: &CertInfo<'_>,
        issuer: &CertInfo<'_>,
        issuer_der: &Arc<[u8]>,
        key: &[u8],
        now: i64,
    ) -> Result<(OcspStatus, i64), Reason> {
        if self.offline {
            return Err(Reason::Unavailable {
                why: "OCSP: not consulted offline (use --online)".into(),
            });
        }
        let url = self
            .responders
            .iter()
            .find(|(s, k, _)| s.as_slice() == issuer.subject && k.as_slice() == issuer.public_key)
            .map(|(_, _, u)| u.clone())
            .or_else(|| info.ocsp_urls.iter().find(|u| u.starts_with("http://")).cloned())
            .ok_or_else(|| Reason::Unavailable {
                why: "OCSP: the certificate has no http:// AIA OCSP URL and no responder is configured for its issuer".into(),
            })?;
        let target = Arc::new(OcspTarget {
            url: url.clone(),
            cert: Arc::from(info.der),
            issuer: issuer_der.clone(),
            ctx: self.ctx.clone(),
        });
        let rx = self.cache.ocsp_flight(key, target, now, false);
        match wait(rx, self.deadline()).await {
            Some(Ok(ans)) => Ok((ans.status, ans.valid_until)),
            Some(Err(r)) => Err(r),
            None => Err(Reason::Unavailable {
                why: format!(
                    "OCSP {url}: no answer within {} ms",
                    self.cfg.fetch_timeout_ms
                ),
            }),
        }
    }

    async fn resolve_crl(
        &self,
        info: &CertInfo<'_>,
        issuer_der: &Arc<[u8]>,
        issuer: &CertInfo<'_>,
        key: &[u8],
        now: i64,
    ) -> Result<(bool, i64), Reason> {
        if self.offline {
            return Err(Reason::Unavailable {
                why: "CRL: no given CRL file covers the issuer, and distribution points are not fetched offline (use --online)".into(),
            });
        }
        let urls: Vec<&String> = info
            .crl_urls
            .iter()
            .filter(|u| u.starts_with("http://"))
            .collect();
        if urls.is_empty() {
            return Err(Reason::Unavailable {
                why: "CRL: the certificate has no http:// CRL distribution point and no configured CRL file covers its issuer".into(),
            });
        }
        let skew = self.cfg.clock_skew_secs as i64;
        let mut failures = Vec::new();
        for url in urls {
            let ck = crl_key(url, issuer);
            let state = match self.cache.crl(&ck).filter(|s| s.crl.is_current(now, skew)) {
                Some(s) => s,
                None => {
                    let rx = self.cache.crl_flight(
                        &ck,
                        url.clone(),
                        issuer_der.clone(),
                        self.ctx.clone(),
                        now,
                        false,
                    );
                    match wait(rx, self.deadline()).await {
                        Some(Ok(s)) => s,
                        Some(Err(r)) => {
                            failures.push(r);
                            continue;
                        }
                        None => {
                            failures.push(Reason::Unavailable {
                                why: format!(
                                    "CRL {url}: no answer within {} ms",
                                    self.cfg.fetch_timeout_ms
                                ),
                            });
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = crl::check_times(&state.crl, now, skew) {
                failures.push(crl_reason(e, url));
                continue;
            }
            let revoked = state.crl.is_revoked(info.serial);
            // Tag the entry with the epoch current *after* this CRL was installed (loading a
            // CRL bumps the epoch); if a newer CRL replaced it meanwhile, cache nothing.
            let epoch = self.cache.current_epoch();
            let still_current = self.cache.crl(&ck).is_some_and(|s| Arc::ptr_eq(&s, &state));
            if !still_current {
                return Ok((revoked, state.crl.next_update));
            }
            let entry = StatusEntry::new(
                revoked.then_some(Reason::Revoked {
                    source: Source::Crl,
                    at: None,
                    code: None,
                }),
                Source::Crl,
                state.crl.next_update,
                Some(epoch),
            );
            self.cache.insert(key, entry);
            return Ok((revoked, state.crl.next_update));
        }
        Err(combine(failures))
    }

    fn deadline(&self) -> Duration {
        // The fetch has its own deadline; waiters allow for a little scheduling slack.
        Duration::from_millis(self.cfg.fetch_timeout_ms + 250)
    }
}

/// Re-reads the configured CRL files when one changes (checked every refresh interval, at
/// most every 5 s). A file that no longer loads keeps its last good copy until nextUpdate.
async fn reload_local_crls(me: std::sync::Weak<RevocationChecker>) {
    loop {
        let every = match me.upgrade() {
            Some(c) => c.cfg.refresh_interval_secs.clamp(1, 5),
            None => return,
        };
        tokio::time::sleep(Duration::from_secs(every)).await;
        let Some(c) = me.upgrade() else { return };
        let changed = c
            .local
            .load()
            .iter()
            .any(|l| std::fs::metadata(&l.path).and_then(|m| m.modified()).ok() != l.modified);
        if !changed {
            continue;
        }
        let paths = c.cfg.crl_files.clone();
        match tokio::task::spawn_blocking(move || local::load(&paths)).await {
            Ok(Ok(fresh)) => {
                local::verify_with_anchors(&fresh, &c.anchors, &c.provider);
                tracing::info!(listener = %c.listener, "configured CRL files reloaded");
                c.local.store(Arc::new(fresh));
                c.cache.bump_epoch();
            }
            Ok(Err(e)) => {
                tracing::warn!(listener = %c.listener, error = %e, "CRL file reload failed; keeping the last good copy");
            }
            Err(e) => tracing::warn!(error = %e, "CRL file reload task failed"),
        }
    }
}

fn combine(mut failures: Vec<Reason>) -> Reason {
    match failures.len() {
        0 => Reason::Unavailable {
            why: "no status source is configured or applicable".into(),
        },
        1 => failures.remove(0),
        _ => Reason::Unavailable {
            why: failures
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

impl StatusCheck for RevocationChecker {
    /// Cache-only: reports a certificate whose revocation is already known (the verifier
    /// sends alert `certificate_revoked`); a miss is left to [`StatusCheck::check_chain`].
    fn in_handshake(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> CertStatus {
        if !self.cfg.enabled {
            return CertStatus::Good { source: None };
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let n = if self.cfg.check_intermediates {
            intermediates.len()
        } else {
            0
        };
        let mut known_good = None;
        let mut all_known = true;
        for der in std::iter::once(end_entity).chain(intermediates.iter().take(n)) {
            let Ok((iss, serial)) = issuer_and_serial(der) else {
                all_known = false;
                continue;
            };
            let revoked = match self.local_listing(iss, serial, now) {
                LocalListing::Revoked(r) => Some(r),
                LocalListing::Unverified => {
                    all_known = false;
                    None
                }
                LocalListing::Clear => {
                    match self
                        .cache
                        .lookup(&status_key(iss, serial), now, self.cfg.order)
                    {
                        Some(e) => {
                            known_good = Some(e.source);
                            e.revoked.clone()
                        }
                        None => {
                            all_known = false;
                            None
                        }
                    }
                }
            };
            if let Some(r) = revoked {
                self.cache.metrics.hit();
                self.cache.metrics.rejected(&r);
                tracing::warn!(
                    listener = %self.listener, issuer = %name_string(iss), serial = %hex::encode(serial),
                    reason = %r, "client certificate refused in handshake: revoked"
                );
                return super::status::reason_status(&r);
            }
        }
        match (all_known, known_good) {
            (true, Some(source)) => CertStatus::Good {
                source: Some(source),
            },
            _ => CertStatus::Unavailable {
                reason: "not known yet: checked after the handshake".into(),
            },
        }
    }

    /// The awaited check of a chain (leaf first): every client connection (full or resumed
    /// handshake) before any byte is forwarded, upstream backends, `gateway probe`.
    fn check_chain<'a>(
        &'a self,
        chain: &'a [CertificateDer<'static>],
    ) -> BoxFuture<'a, ChainStatus> {
        Box::pin(super::status::chain_status(self, chain))
    }
}
