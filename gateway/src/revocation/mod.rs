//! Certificate status checking: CRLs and OCSP from the certificate itself, fail closed.
//!
//! - [`RevocationConfig`]: per-listener policy (default strict: OCSP then CRL, fail closed).
//! - [`RevocationCache`]: one per process; lock-free reads, single-flight fetches on a
//!   background thread, refresh ahead of nextUpdate.
//! - [`RevocationChecker`]: per listener; [`HandshakeStatusCheck`] inside the handshake
//!   (cache only) and [`RevocationChecker::check`] awaited before forwarding.
//!
//! [`HandshakeStatusCheck`]: crate::tls::client_verifier::HandshakeStatusCheck

pub mod cache;
pub mod cert;
pub mod checker;
pub mod config;
pub mod crl;
pub mod crl_status;
pub mod der;
pub mod error;
pub mod fetch;
mod flight;
mod local;
pub mod metrics;
pub mod ocsp;
pub mod serials;
pub mod staple;
pub mod upstream;
pub mod verify;

pub use cache::RevocationCache;
pub use checker::{CertStatus, CheckerError, RevocationChecker, Verdict};
pub use config::{CertIdHash, OcspResponderOverride, RevocationConfig, RevocationOrder, Source};
pub use error::{Reason, RevocationError};
pub use metrics::MetricsSnapshot;

/// The wall clock in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Builds the checker of listener number `index` (or `None` when its revocation checking is
/// disabled), sharing `cache`. What `server::prepare` calls for each listener.
///
/// # Errors
/// A [`ConfigError::Invalid`](crate::config::ConfigError) naming the key at fault.
pub fn checker_for_listener(
    index: usize,
    l: &crate::config::ListenerConfig,
    provider_name: &str,
    cache: &std::sync::Arc<RevocationCache>,
) -> Result<Option<std::sync::Arc<RevocationChecker>>, crate::config::ConfigError> {
    use crate::config::ConfigError;
    if !l.revocation.enabled {
        return Ok(None);
    }
    let key = |k: &str| format!("listener[{index}].{k}");
    let cas = crate::pki::load_ca_bundle(&l.trusted_cas)
        .map_err(|e| ConfigError::invalid(key("trusted_cas"), e.to_string()))?;
    let provider = crate::tls::policy::base_provider(provider_name)
        .map_err(|e| ConfigError::invalid("global.crypto_provider", e.to_string()))?;
    RevocationChecker::new(
        &l.revocation,
        &l.display_name(),
        &cas,
        std::sync::Arc::new(provider),
        cache.clone(),
    )
    .map(Some)
    .map_err(|e| match e {
        CheckerError::File { key: k, message } => {
            ConfigError::invalid(key(&format!("revocation.{k}")), message)
        }
        CheckerError::Anchors { message } => ConfigError::invalid(key("trusted_cas"), message),
    })
}

/// Starts OCSP stapling of listener `index`'s own certificate when `revocation.staple_ocsp`
/// is set: returns the resolver to build its `ServerConfig` with
/// (`.with_cert_resolver(resolver)` instead of `.with_single_cert(chain, key)`).
///
/// # Errors
/// A [`ConfigError::Invalid`](crate::config::ConfigError) naming the key at fault (e.g. a
/// server certificate without an OCSP URL, or a chain without the issuer).
pub fn stapling_for_listener(
    index: usize,
    l: &crate::config::ListenerConfig,
    provider_name: &str,
    cache: &std::sync::Arc<RevocationCache>,
) -> Result<Option<std::sync::Arc<staple::StaplingResolver>>, crate::config::ConfigError> {
    use crate::config::ConfigError;
    if !l.revocation.staple_ocsp {
        return Ok(None);
    }
    let key = |k: &str| format!("listener[{index}].{k}");
    let provider = crate::tls::policy::base_provider(provider_name)
        .map_err(|e| ConfigError::invalid("global.crypto_provider", e.to_string()))?;
    let chain = crate::pki::load_certs(&l.server_cert)
        .map_err(|e| ConfigError::invalid(key("server_cert"), e.to_string()))?;
    let private_key = crate::pki::load_key(&l.server_key)
        .map_err(|e| ConfigError::invalid(key("server_key"), e.to_string()))?;
    let ck = staple::certified_key(chain, private_key, &provider)
        .map_err(|e| ConfigError::invalid(key("server_key"), e.to_string()))?;
    staple::StaplingResolver::start(ck, &l.revocation, std::sync::Arc::new(provider), cache)
        .map(Some)
        .map_err(|e| ConfigError::invalid(key("revocation.staple_ocsp"), e.to_string()))
}
