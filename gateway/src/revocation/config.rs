//! Per-listener revocation settings. The default is the strict, fail-closed policy.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which status sources are acceptable, and in which order they are consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationOrder {
    /// OCSP first (the freshest source); the CRL when OCSP gives no current answer.
    #[default]
    OcspFirst,
    /// CRL first; OCSP when no current CRL can be had.
    CrlFirst,
    /// OCSP only.
    OcspOnly,
    /// CRLs only.
    CrlOnly,
}

impl RevocationOrder {
    /// The sources in the order they are consulted.
    pub fn sources(self) -> &'static [Source] {
        match self {
            RevocationOrder::OcspFirst => &[Source::Ocsp, Source::Crl],
            RevocationOrder::CrlFirst => &[Source::Crl, Source::Ocsp],
            RevocationOrder::OcspOnly => &[Source::Ocsp],
            RevocationOrder::CrlOnly => &[Source::Crl],
        }
    }

    /// Whether `source` is acceptable under this order.
    pub fn allows(self, source: Source) -> bool {
        self.sources().contains(&source)
    }
}

pub use crate::status::Source;

/// Hash algorithm of the OCSP CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertIdHash {
    /// SHA-1, what deployed responders expect (RFC 5019).
    #[default]
    Sha1,
    /// SHA-256.
    Sha256,
}

/// An OCSP responder used for the certificates of one issuer instead of the AIA URL.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OcspResponderOverride {
    /// PEM (or DER) file with the issuing CA's certificate.
    pub issuer_cert: PathBuf,
    /// `http://` URL of the responder.
    pub url: String,
}

/// Per-listener revocation settings (`[listener.revocation]`).
///
/// The default is strict: checking on, OCSP first then CRL, fail closed.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Check certificate status at all. `false` is a relaxation, logged at start-up.
    pub enabled: bool,
    /// `ocsp-first` (default), `crl-first`, `ocsp-only` or `crl-only`.
    pub order: RevocationOrder,
    /// Also check the intermediates of the chain (default `true`: every certificate of the
    /// validated path but the trust anchor; `false` checks the leaf only, a relaxation).
    pub check_intermediates: bool,
    /// CRL files (DER or PEM) consulted in addition to the distribution points.
    pub crl_files: Vec<PathBuf>,
    /// Responders configured per issuer, overriding the certificate's AIA OCSP URL.
    pub ocsp_responders: Vec<OcspResponderOverride>,
    /// Deadline of one fetch (connect, request and whole body), milliseconds.
    pub fetch_timeout_ms: u64,
    /// Largest accepted CRL or OCSP response, bytes.
    pub max_response_bytes: usize,
    /// Allowance for clock differences when judging thisUpdate/nextUpdate, seconds.
    pub clock_skew_secs: u64,
    /// CRLs are re-fetched (conditional GET) at least this often, and hot OCSP answers
    /// refreshed, seconds.
    pub refresh_interval_secs: u64,
    /// Hash algorithm of the OCSP CertID (`sha1` default, `sha256`).
    pub ocsp_cert_id_hash: CertIdHash,
    /// Send a nonce in OCSP requests and require it echoed.
    pub ocsp_nonce: bool,
    /// Use HTTP GET for OCSP requests short enough (RFC 5019), POST otherwise.
    pub ocsp_get: bool,
    /// Accept a certificate whose status cannot be had. A relaxation, logged at start-up.
    pub soft_fail: bool,
    /// Upper bound on per-certificate status cache entries. The cache is process-wide
    /// (shared by every listener and upstream checker): with several listeners the smallest
    /// value among those that check status bounds it for all.
    pub cache_max_entries: usize,
    /// Staple OCSP responses for the listener's own server certificate (fetched from its
    /// AIA responder, refreshed ahead of nextUpdate, stapled only while current and good).
    pub staple_ocsp: bool,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            enabled: true,
            order: RevocationOrder::OcspFirst,
            check_intermediates: true,
            crl_files: Vec::new(),
            ocsp_responders: Vec::new(),
            fetch_timeout_ms: 3000,
            max_response_bytes: 64 << 20,
            clock_skew_secs: 300,
            refresh_interval_secs: 3600,
            ocsp_cert_id_hash: CertIdHash::Sha1,
            ocsp_nonce: false,
            ocsp_get: true,
            soft_fail: false,
            cache_max_entries: 200_000,
            staple_ocsp: false,
        }
    }
}

impl RevocationConfig {
    /// Resolves relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.crl_files.iter_mut().for_each(fix);
        for r in &mut self.ocsp_responders {
            fix(&mut r.issuer_cert);
        }
    }

    /// Validates values; `Err((key, message))` names the key below `revocation.`.
    ///
    /// # Errors
    /// The first bad key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        if !(50..=60_000).contains(&self.fetch_timeout_ms) {
            return bad(
                "fetch_timeout_ms",
                format!("{} is outside 50..=60000", self.fetch_timeout_ms),
            );
        }
        if !(1024..=(1 << 30)).contains(&self.max_response_bytes) {
            return bad(
                "max_response_bytes",
                format!("{} is outside 1024..=1073741824", self.max_response_bytes),
            );
        }
        if self.clock_skew_secs > 3600 {
            return bad(
                "clock_skew_secs",
                format!("{} is above the limit of 3600", self.clock_skew_secs),
            );
        }
        if !(1..=7 * 86_400).contains(&self.refresh_interval_secs) {
            return bad(
                "refresh_interval_secs",
                format!("{} is outside 1..=604800", self.refresh_interval_secs),
            );
        }
        if self.cache_max_entries < 16 {
            return bad(
                "cache_max_entries",
                format!("{} is below the minimum of 16", self.cache_max_entries),
            );
        }
        for (i, r) in self.ocsp_responders.iter().enumerate() {
            if !r.url.starts_with("http://") {
                return bad(
                    &format!("ocsp_responders[{i}].url"),
                    format!("{:?}: only http:// responder URLs are supported", r.url),
                );
            }
        }
        if self.order == RevocationOrder::OcspOnly && !self.crl_files.is_empty() {
            return bad(
                "crl_files",
                "CRL files are configured but order = \"ocsp-only\" never consults them".into(),
            );
        }
        Ok(())
    }

    /// Relaxations of the fail-closed policy, for the start-up log.
    pub fn relaxations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            out.push(
                "revocation.enabled = false: certificate status is NOT checked (revoked certificates are accepted)"
                    .to_string(),
            );
            return out;
        }
        if self.soft_fail {
            out.push(
                "revocation.soft_fail = true: certificates are accepted when no current CRL or OCSP status can be had"
                    .to_string(),
            );
        }
        if !self.check_intermediates {
            out.push(
                "revocation.check_intermediates = false: a revoked intermediate CA is not noticed (only the leaf's status is checked)"
                    .to_string(),
            );
        }
        if self.clock_skew_secs > 600 {
            out.push(format!(
                "revocation.clock_skew_secs = {}: stale status tolerated for more than 10 minutes",
                self.clock_skew_secs
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_strict() {
        let c = RevocationConfig::default();
        assert!(c.enabled && !c.soft_fail);
        assert!(
            c.check_intermediates,
            "intermediates are checked by default"
        );
        assert_eq!(c.order, RevocationOrder::OcspFirst);
        assert!(c.relaxations().is_empty());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn relaxations_listed_and_keys_named() {
        let c: RevocationConfig = toml::from_str("soft_fail = true").unwrap();
        assert_eq!(c.relaxations().len(), 1);
        let c: RevocationConfig = toml::from_str("enabled = false").unwrap();
        assert!(c.relaxations()[0].contains("NOT checked"));
        let c: RevocationConfig = toml::from_str("fetch_timeout_ms = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "fetch_timeout_ms");
        let c: RevocationConfig =
            toml::from_str("ocsp_responders = [{ issuer_cert = \"a.pem\", url = \"https://x\" }]")
                .unwrap();
        assert_eq!(c.validate().unwrap_err().0, "ocsp_responders[0].url");
        assert!(toml::from_str::<RevocationConfig>("bogus = 1").is_err());
        let c: RevocationConfig = toml::from_str("order = \"crl-only\"").unwrap();
        assert_eq!(c.order, RevocationOrder::CrlOnly);
    }
}
