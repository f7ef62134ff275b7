//! The per-listener revocation checker: cache-only status inside the handshake, and the
//! awaited check before any byte is forwarded.

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::cache::{crl_key, status_key, FetchCtx, OcspTarget, RevocationCache, StatusEntry};
use super::cert::CertInfo;
use super::config::{RevocationConfig, Source};
use super::crl::Crl;
use super::crl_status::{crl_status, CrlContext, CrlStatus, Problem};
use super::der::normalize_serial;
use super::error::{Reason, RevocationError};
use super::fetch::Fetcher;
use super::flight::wait;
use super::local::{self, LocalCrl, LocalListing};
use super::now_secs;
use super::ocsp::OcspStatus;
use crate::pki::path::validate::{PathPolicy, Target, TrustAnchors, ValidatedPath};
use crate::pki::path::ParsedCert;
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
    /// A trusted CA certificate cannot be used as a trust anchor.
    #[error("trusted CA: {message}")]
    Anchors {
        /// What is wrong.
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
    trust: TrustAnchors,
    local: ArcSwap<Vec<LocalCrl>>,
    responders: Vec<(Vec<u8>, Vec<u8>, String)>,
    ctx: Arc<FetchCtx>,
    provider: Arc<CryptoProvider>,
    offline: bool,
    /// The listener's certificate policy inputs: the path whose status is checked is one
    /// the handshake's validation accepts (CRL-signer paths keep the defaults).
    policy_inputs: crate::pki::path::PolicyInputs,
}

impl RevocationChecker {
    /// The configured CRL files currently loaded (for `/metrics` and `/readyz`).
    pub fn local_crls(&self) -> Vec<super::cache::CrlOverview> {
        self.local
            .load()
            .iter()
            .map(|l| match &l.crl {
                Ok(c) => super::cache::CrlOverview {
                    source: l.path.display().to_string(),
                    issuer: super::cert::name_string(&c.issuer),
                    this_update: c.this_update,
                    next_update: c.next_update,
                },
                // An unusable file is never current.
                Err(why) => super::cache::CrlOverview {
                    source: l.path.display().to_string(),
                    issuer: format!("<unusable: {why}>"),
                    this_update: 0,
                    next_update: 0,
                },
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
        let trust = TrustAnchors::new(anchors).map_err(|e| CheckerError::Anchors {
            message: e.to_string(),
        })?;
        let local = local::load(&cfg.crl_files, None)?;
        local::verify_with_anchors(
            &local,
            &trust,
            provider.signature_verification_algorithms.all,
        );
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
            trust,
            local: ArcSwap::from_pointee(local),
            responders,
            ctx,
            provider,
            offline: false,
            policy_inputs: crate::pki::path::PolicyInputs::default(),
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

    /// The same checker validating client paths under the listener's certificate policy
    /// inputs (`[listener.pki]`), so that the path whose status is checked is one the
    /// handshake accepts. Call right after construction.
    ///
    /// # Errors
    /// [`CheckerError`] if the checker is already shared.
    pub fn with_policy_inputs(
        self: Arc<Self>,
        inputs: crate::pki::path::PolicyInputs,
    ) -> Result<Arc<Self>, CheckerError> {
        let mut c = Arc::try_unwrap(self).map_err(|_| CheckerError::File {
            key: "crl_files",
            message: "internal: checker shared during construction".into(),
        })?;
        c.policy_inputs = inputs;
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

    /// As [`RevocationChecker::check`], judging freshness at `now`.
    ///
    /// The chain is validated again (RFC 5280 6.1 at `now`: a resumed session whose
    /// certificate has expired since is refused here) to learn each certificate's issuer,
    /// then the leaf and, with `check_intermediates` (the default), every intermediate is
    /// checked.
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
        let path = match self.path(end_entity, intermediates, now) {
            Ok(p) => p,
            Err(e) => {
                let (issuer, serial) = match crate::pki::path::parse_cached(end_entity) {
                    Ok(c) => (c.issuer_string(), hex::encode(normalize_serial(c.serial()))),
                    Err(_) => ("?".into(), "?".into()),
                };
                let e = RevocationError {
                    reason: if e.step == crate::pki::path::Step::NameChaining {
                        Reason::IssuerNotFound
                    } else {
                        Reason::Path { why: e.to_string() }
                    },
                    issuer,
                    serial,
                };
                self.cache.metrics.rejected(&e.reason);
                tracing::warn!(listener = %self.listener, reason = %e.reason, "client certificate refused: certification path no longer valid");
                return Err(e);
            }
        };
        let n = if self.cfg.check_intermediates {
            path.certs.len()
        } else {
            1
        };
        // CRL signers may be among the presented certificates outside the path.
        let mut pool: Vec<Arc<ParsedCert>> = path.certs.clone();
        for c in intermediates {
            if let Ok(p) = crate::pki::path::parse_cached(c) {
                if !pool.iter().any(|x| x.digest == p.digest) {
                    pool.push(p);
                }
            }
        }
        let mut out = Vec::new();
        for i in 0..n {
            match self.check_one(&path, &pool, i, now).await {
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

    /// The policy used to find issuers for status checking (the verifier has applied the
    /// listener's full policy already).
    fn path_policy(&self) -> PathPolicy {
        PathPolicy {
            key_policy: crate::pki::keypolicy::KeyPolicy { min_rsa_bits: 2048 },
            eku: crate::pki::keypolicy::RequiredEku::None,
            target: Target::Any,
            algs: self.provider.signature_verification_algorithms.all,
            policy_inputs: crate::pki::path::PolicyInputs::default(),
        }
    }

    fn path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<ValidatedPath, crate::pki::path::PathError> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let policy = PathPolicy {
            policy_inputs: self.policy_inputs.clone(),
            ..self.path_policy()
        };
        crate::pki::path::validate_path(&chain, &self.trust, now, &policy)
    }

    async fn check_one(
        &self,
        path: &ValidatedPath,
        pool: &[Arc<ParsedCert>],
        i: usize,
        now: i64,
    ) -> Result<CheckedCert, RevocationError> {
        let cert = &path.certs[i];
        let issuer_cert = path.issuer_of(i);
        let serial_hex = hex::encode(normalize_serial(cert.serial()));
        let err = |reason: Reason| RevocationError {
            reason,
            issuer: cert.issuer_string(),
            serial: serial_hex.clone(),
        };
        let key = status_key(cert.issuer_raw(), cert.serial());
        let listing = local::listing(
            &self.local.load(),
            cert,
            now,
            self.cfg.clock_skew_secs as i64,
        );
        if let LocalListing::Revoked = listing {
            return Err(err(Reason::Revoked {
                source: Source::Crl,
                at: None,
                code: None,
            }));
        }
        // A configured CRL file not verified yet: decide on the slow path, not the cache.
        let cached = match listing {
            LocalListing::Unverified => None,
            _ => self.cache.lookup(&key, now, self.cfg.order),
        };
        if let Some(e) = cached {
            self.cache.metrics.hit();
            if let Some(r) = &e.revoked {
                return Err(err(r.clone()));
            }
            return Ok(CheckedCert {
                serial: serial_hex.clone(),
                source: Some(e.source),
                valid_until: e.valid_until,
                cached: true,
                soft_failed: None,
            });
        }
        self.cache.metrics.miss();
        let info = CertInfo::parse(cert.der())
            .map_err(|e| err(Reason::Malformed { why: e.to_string() }))?;
        let issuer_der: Arc<[u8]> = issuer_cert.der_arc().clone();
        let issuer = CertInfo::parse(&issuer_der)
            .map_err(|e| err(Reason::Malformed { why: e.to_string() }))?;

        let mut failures: Vec<Reason> = Vec::new();
        let good = |source, valid_until| CheckedCert {
            serial: serial_hex.clone(),
            source: Some(source),
            valid_until,
            cached: false,
            soft_failed: None,
        };
        let revoked_by = |source| Reason::Revoked {
            source,
            at: None,
            code: None,
        };
        // CRLs are always consulted when configured files exist (a revoked there wins over
        // a good OCSP answer); otherwise in the configured order.
        let has_local = !self.local.load().is_empty();
        let mut crl_verdict: Option<CrlStatus> = None;
        if has_local {
            let v = self.crl_verdict(path, pool, i, now).await;
            if let CrlStatus::Revoked { .. } = v {
                self.remember(
                    &key,
                    true,
                    Source::Crl,
                    now + self.cfg.refresh_interval_secs as i64,
                );
                return Err(err(revoked_by(Source::Crl)));
            }
            crl_verdict = Some(v);
        }
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
                        return Err(err(r));
                    }
                    Err(r) => failures.push(r),
                },
                Source::Crl => {
                    let v = match crl_verdict.take() {
                        Some(v) => v,
                        None => self.crl_verdict(path, pool, i, now).await,
                    };
                    match v {
                        CrlStatus::Good { until } => {
                            self.remember(&key, false, Source::Crl, until);
                            return Ok(good(Source::Crl, until));
                        }
                        CrlStatus::Revoked { .. } => {
                            self.remember(
                                &key,
                                true,
                                Source::Crl,
                                now + self.cfg.refresh_interval_secs as i64,
                            );
                            return Err(err(revoked_by(Source::Crl)));
                        }
                        CrlStatus::Undetermined(why, problem) => {
                            let why = format!("CRL: {why}");
                            failures.push(match problem {
                                Problem::Stale => Reason::Stale { why },
                                Problem::BadSignature => Reason::BadSignature { why },
                                Problem::Malformed => Reason::Malformed { why },
                                Problem::NoCrl => Reason::Unavailable { why },
                            })
                        }
                    }
                }
            }
        }
        Err(err(combine(failures)))
    }

    /// Caches a CRL-derived status, tagged with the current CRL epoch (a CRL change makes it
    /// stale).
    fn remember(&self, key: &[u8], revoked: bool, source: Source, until: i64) {
        let epoch = self.cache.current_epoch();
        let entry = StatusEntry::new(
            revoked.then_some(Reason::Revoked {
                source,
                at: None,
                code: None,
            }),
            source,
            until,
            Some(epoch),
        );
        self.cache.insert(key, entry);
    }

    /// RFC 5280 6.3 over the configured CRL files and (online) the certificate's
    /// distribution points.
    async fn crl_verdict(
        &self,
        path: &ValidatedPath,
        pool: &[Arc<ParsedCert>],
        i: usize,
        now: i64,
    ) -> CrlStatus {
        let cert = &path.certs[i];
        let issuer = path.issuer_of(i);
        let mut crls: Vec<Arc<Crl>> = local::usable(&self.local.load());
        let mut fetch_failures: Vec<Reason> = Vec::new();
        if !self.offline {
            for url in &cert.crl_urls {
                match self.fetch_crl(url, issuer, now).await {
                    Ok(c) => crls.push(c),
                    Err(r) => fetch_failures.push(r),
                }
            }
        } else if !cert.crl_urls.is_empty() && self.local.load().is_empty() {
            fetch_failures.push(Reason::Unavailable {
                why: "CRL: distribution points are not fetched offline (use --online)".into(),
            });
        }
        let ctx = CrlContext {
            crls: &crls,
            pool,
            anchors: &self.trust,
            anchor: &path.anchor,
            time: now,
            skew: self.cfg.clock_skew_secs as i64,
            policy: PathPolicy {
                target: Target::CrlSigner,
                ..self.path_policy()
            },
            depth: 0,
        };
        match crl_status(cert, issuer, &ctx) {
            // Nothing fetched or configured could be used: the fetch failure is the reason.
            CrlStatus::Undetermined(..) if crls.is_empty() && fetch_failures.len() == 1 => {
                let r = fetch_failures.remove(0);
                let why = r.to_string();
                CrlStatus::Undetermined(
                    why,
                    match r {
                        Reason::Stale { .. } => Problem::Stale,
                        Reason::BadSignature { .. } => Problem::BadSignature,
                        Reason::Malformed { .. } => Problem::Malformed,
                        _ => Problem::NoCrl,
                    },
                )
            }
            CrlStatus::Undetermined(why, p) if !fetch_failures.is_empty() => {
                let more: Vec<String> = fetch_failures.iter().map(|r| r.to_string()).collect();
                CrlStatus::Undetermined(format!("{why}; {}", more.join("; ")), p)
            }
            v => v,
        }
    }

    /// One distribution point's CRL: from the cache when current, else fetched
    /// (single-flight, deadline). Parsed only: its signer is decided by CRL processing.
    async fn fetch_crl(
        &self,
        url: &str,
        issuer: &ParsedCert,
        now: i64,
    ) -> Result<Arc<Crl>, Reason> {
        let skew = self.cfg.clock_skew_secs as i64;
        let info =
            CertInfo::parse(issuer.der()).map_err(|e| Reason::Malformed { why: e.to_string() })?;
        let ck = crl_key(url, &info);
        if let Some(s) = self.cache.crl(&ck).filter(|s| s.crl.is_current(now, skew)) {
            return Ok(s.crl.clone());
        }
        let rx = self.cache.crl_flight(
            &ck,
            url.to_string(),
            issuer.der_arc().clone(),
            self.ctx.clone(),
            now,
            false,
        );
        match wait(rx, self.deadline()).await {
            Some(Ok(s)) => Ok(s.crl.clone()),
            Some(Err(r)) => Err(r),
            None => Err(Reason::Unavailable {
                why: format!(
                    "CRL {url}: no answer within {} ms",
                    self.cfg.fetch_timeout_ms
                ),
            }),
        }
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
        let held = c.local.load_full();
        match tokio::task::spawn_blocking(move || local::load(&paths, Some(&held))).await {
            Ok(Ok(fresh)) => {
                local::verify_with_anchors(
                    &fresh,
                    &c.trust,
                    c.provider.signature_verification_algorithms.all,
                );
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
            let Ok(cert) = crate::pki::path::parse_cached(der) else {
                all_known = false;
                continue;
            };
            let revoked = match local::listing(
                &self.local.load(),
                &cert,
                now,
                self.cfg.clock_skew_secs as i64,
            ) {
                LocalListing::Revoked => Some(Reason::Revoked {
                    source: Source::Crl,
                    at: None,
                    code: None,
                }),
                LocalListing::Unverified => {
                    all_known = false;
                    None
                }
                LocalListing::Clear => {
                    match self.cache.lookup(
                        &status_key(cert.issuer_raw(), cert.serial()),
                        now,
                        self.cfg.order,
                    ) {
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
                    listener = %self.listener, issuer = %cert.issuer_string(), serial = %hex::encode(normalize_serial(cert.serial())),
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
