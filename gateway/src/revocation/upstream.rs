//! The revocation checker as the [`ChainStatusCheck`] of upstream TLS and `gateway probe`:
//! the gateway as a S.E.E. client drops a backend whose certificate is revoked or whose
//! current status cannot be had (14.2.11-14.2.12), with the same CRL/OCSP machinery.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::cert::CertInfo;
use super::{RevocationCache, RevocationChecker, RevocationConfig, Verdict};
use crate::upstream::{
    CertStatus as Status, CertStatusReport, ChainStatusCheck, StatusFactory, StatusFuture,
};

fn describe(der: &[u8]) -> (String, String) {
    match CertInfo::parse(der) {
        Ok(c) => (c.subject_string(), c.serial_hex()),
        Err(_) => ("<unparsable certificate>".into(), String::new()),
    }
}

impl ChainStatusCheck for RevocationChecker {
    fn check_chain<'a>(
        &'a self,
        presented: &'a [CertificateDer<'static>],
        _anchors: &'a [CertificateDer<'static>],
    ) -> StatusFuture<'a> {
        Box::pin(async move {
            let Some((leaf, rest)) = presented.split_first() else {
                return Vec::new();
            };
            let verdict = self.check(leaf, rest).await;
            presented
                .iter()
                .map(|der| {
                    let (subject, serial) = describe(der);
                    let (status, source, freshness) = match &verdict {
                        Ok(Verdict::Good(list)) => match list.iter().find(|s| s.serial == serial) {
                            Some(s) => (
                                Status::Good,
                                match (&s.source, &s.soft_failed) {
                                    (Some(src), _) => src.to_string(),
                                    (None, Some(why)) => format!("soft-fail ({why})"),
                                    (None, None) => "unknown source".into(),
                                },
                                format!(
                                    "valid until {}{}",
                                    s.valid_until,
                                    if s.cached { ", cached" } else { "" }
                                ),
                            ),
                            // Not part of the validated path (a root or an unrelated
                            // certificate sent along): no status is needed for it.
                            None => (
                                Status::Good,
                                "not part of the validated path".into(),
                                String::new(),
                            ),
                        },
                        Ok(Verdict::NotChecked) => (
                            Status::Unknown {
                                reason: "revocation checking is disabled".into(),
                            },
                            String::new(),
                            String::new(),
                        ),
                        Err(e) if e.serial == serial && e.is_revoked() => (
                            Status::Revoked {
                                reason: e.reason.to_string(),
                            },
                            String::new(),
                            String::new(),
                        ),
                        Err(e) if e.serial == serial => (
                            Status::Unknown {
                                reason: e.reason.to_string(),
                            },
                            String::new(),
                            String::new(),
                        ),
                        Err(e) => (
                            Status::Unknown {
                                reason: format!("chain refused: {e}"),
                            },
                            String::new(),
                            String::new(),
                        ),
                    };
                    CertStatusReport {
                        subject,
                        status,
                        source,
                        freshness,
                    }
                })
                .collect()
        })
    }
}

/// A factory making a checker per trust-anchor set (one per `https://` backend, or the
/// probe's CAs) under `cfg`, sharing `cache`. `None` when `cfg` disables checking or there
/// is no cache (then `upstream.revocation = "require"` refuses to start).
pub fn status_factory(
    cfg: &RevocationConfig,
    name: &str,
    provider_name: &str,
    cache: Option<&Arc<RevocationCache>>,
) -> Option<Box<StatusFactory>> {
    if !cfg.enabled {
        return None;
    }
    let cache = cache?.clone();
    let provider = Arc::new(crate::tls::policy::base_provider(provider_name).ok()?);
    // `require` means the whole chain: every certificate of the validated path, whatever
    // the listener's `check_intermediates` says about client chains.
    let mut cfg = cfg.clone();
    cfg.check_intermediates = true;
    let name = name.to_string();
    Some(Box::new(move |anchors: &[CertificateDer<'static>]| {
        RevocationChecker::new(&cfg, &name, anchors, provider.clone(), cache.clone())
            .map(|c| c as Arc<dyn ChainStatusCheck>)
            .map_err(|e| e.to_string())
    }))
}
