//! OCSP stapling of the gateway's own certificate: fetched from its AIA responder on the
//! revocation cache's background runtime, refreshed ahead of nextUpdate, and stapled only
//! while current and `good`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::cache::{fetch_ocsp_raw, FetchCtx, OcspTarget, RevocationCache};
use super::cert::CertInfo;
use super::config::RevocationConfig;
use super::der::fmt_time;
use super::fetch::Fetcher;
use super::now_secs;
use super::ocsp::OcspStatus;

/// Why stapling cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StaplingError {
    /// The chain has no issuer certificate after the leaf.
    #[error("the server certificate chain must hold the leaf's issuer right after the leaf")]
    NoIssuer,
    /// No responder to ask.
    #[error("the server certificate has no http:// AIA OCSP URL")]
    NoOcspUrl,
    /// The certificate or key is unusable.
    #[error("server certificate: {0}")]
    Cert(String),
}

/// A certificate resolver that serves one certificate with a current OCSP staple when one
/// can be had (and without a staple otherwise). Plug it in with
/// `ServerConfig::builder()...with_cert_resolver(resolver)`.
pub struct StaplingResolver {
    current: ArcSwap<CertifiedKey>,
    stapled_until: AtomicI64,
    url: String,
}

impl std::fmt::Debug for StaplingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaplingResolver")
            .field("url", &self.url)
            .field("stapled_until", &self.stapled_until())
            .finish()
    }
}

/// Builds the `CertifiedKey` of a chain and key with `provider` (checks that they match).
///
/// # Errors
/// The rustls error.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, provider)
}

impl StaplingResolver {
    /// Starts stapling `key` (whose chain is leaf, issuer, ...): fetches now and then ahead
    /// of each answer's nextUpdate (at most every `refresh_interval_secs`), using the
    /// fetch settings of `cfg`.
    ///
    /// # Errors
    /// [`StaplingError`] if the chain lacks the issuer or the leaf has no OCSP URL.
    pub fn start(
        key: CertifiedKey,
        cfg: &RevocationConfig,
        provider: Arc<CryptoProvider>,
        cache: &Arc<RevocationCache>,
    ) -> Result<Arc<Self>, StaplingError> {
        let leaf = key.cert.first().ok_or(StaplingError::NoIssuer)?;
        let issuer = key.cert.get(1).ok_or(StaplingError::NoIssuer)?;
        let info = CertInfo::parse(leaf).map_err(|e| StaplingError::Cert(e.to_string()))?;
        let iss = CertInfo::parse(issuer).map_err(|e| StaplingError::Cert(e.to_string()))?;
        if !info.is_issued_by(&iss, &provider) {
            return Err(StaplingError::NoIssuer);
        }
        let url = info
            .ocsp_urls
            .iter()
            .find(|u| u.starts_with("http://"))
            .cloned()
            .ok_or(StaplingError::NoOcspUrl)?;
        let timeout = Duration::from_millis(cfg.fetch_timeout_ms);
        let ctx = Arc::new(FetchCtx {
            fetcher: Fetcher::new(timeout, cfg.max_response_bytes),
            provider,
            skew: cfg.clock_skew_secs as i64,
            refresh: cfg.refresh_interval_secs as i64,
            hash: cfg.ocsp_cert_id_hash,
            nonce: false,
            get: cfg.ocsp_get,
        });
        let target = OcspTarget {
            url: url.clone(),
            cert: Arc::from(leaf.as_ref()),
            issuer: Arc::from(issuer.as_ref()),
            ctx,
        };
        let me = Arc::new(StaplingResolver {
            current: ArcSwap::from_pointee(key),
            stapled_until: AtomicI64::new(0),
            url,
        });
        cache
            .bg
            .spawn(refresh(Arc::downgrade(&me), cache.clone(), target));
        Ok(me)
    }

    /// The certificate served now (with `ocsp` set while a current staple exists).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Until when the current staple is valid (Unix seconds), if there is one.
    pub fn stapled_until(&self) -> Option<i64> {
        let t = self.stapled_until.load(Ordering::Acquire);
        (t > 0).then_some(t)
    }

    fn set(&self, ocsp: Option<Vec<u8>>, until: i64) {
        let cur = self.current.load();
        if cur.ocsp.is_none() && ocsp.is_none() {
            return;
        }
        let mut next = CertifiedKey::clone(&cur);
        next.ocsp = ocsp;
        self.current.store(Arc::new(next));
        self.stapled_until.store(until, Ordering::Release);
    }
}

impl ResolvesServerCert for StaplingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = now_secs();
        if self.stapled_until().is_some_and(|t| t < now) {
            // Never staple an expired answer, even between refreshes.
            self.set(None, 0);
        }
        Some(self.current.load_full())
    }
}

async fn refresh(me: Weak<StaplingResolver>, cache: Arc<RevocationCache>, target: OcspTarget) {
    let retry = target.ctx.refresh.clamp(1, 60);
    loop {
        let now = now_secs();
        let result = fetch_ocsp_raw(&cache, &target, now).await;
        let Some(r) = me.upgrade() else { return };
        let wait = match result {
            Ok((ans, der)) if ans.status == OcspStatus::Good => {
                r.set(Some(der.to_vec()), ans.valid_until);
                tracing::debug!(url = %target.url, until = %fmt_time(ans.valid_until), "OCSP staple refreshed");
                ((ans.valid_until - now) / 2).clamp(1, target.ctx.refresh.max(1))
            }
            Ok((_, _)) => {
                tracing::error!(url = %target.url, "the gateway's own certificate is REVOKED: not stapling");
                r.set(None, 0);
                retry
            }
            Err(e) => {
                tracing::warn!(url = %target.url, error = %e, "OCSP staple refresh failed");
                if r.stapled_until().is_some_and(|t| t < now) {
                    r.set(None, 0);
                }
                let left = r.stapled_until().map_or(retry, |t| (t - now).max(1));
                retry.min(left)
            }
        };
        drop(r);
        tokio::time::sleep(Duration::from_secs(u64::try_from(wait).unwrap_or(1))).await;
    }
}
