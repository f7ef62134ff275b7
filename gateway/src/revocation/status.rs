//! The revocation checker as the one [`StatusCheck`](crate::status::StatusCheck): the
//! awaited chain check used after a client handshake, by upstream TLS (the gateway as a
//! S.E.E. client drops a backend whose certificate is revoked or whose current status
//! cannot be had, 14.2.11-14.2.12) and by `gateway probe`, with the same CRL/OCSP machinery.
//! The in-handshake, cache-only half lives next to the cache in `checker`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

use super::cert::CertInfo;
use super::error::Reason;
use super::{RevocationCache, RevocationChecker, RevocationConfig, Verdict};
use crate::status::{CertReport, CertStatus, ChainStatus, StatusCheck, StatusFactory};

/// Subject, issuer and serial of a presented certificate, for the report. A certificate of a
/// validated path is in the process-wide parsed-certificate cache with its names formatted
/// once; others (unparsable for path validation) are read here.
fn describe(der: &[u8]) -> (String, String, String) {
    if let Ok(p) = crate::pki::path::parse_cached(der) {
        return (
            p.subject_string(),
            p.issuer_string(),
            hex::encode(super::der::normalize_serial(p.serial())),
        );
    }
    match CertInfo::parse(der) {
        Ok(c) => (c.subject_string(), c.issuer_string(), c.serial_hex()),
        Err(_) => ("<unparsable certificate>".into(), "?".into(), String::new()),
    }
}

/// The structured verdict of a [`Reason`] that refused a certificate.
pub(crate) fn reason_status(r: &Reason) -> CertStatus {
    match r {
        Reason::Revoked { source, at, code } => CertStatus::Revoked {
            source: *source,
            time: *at,
            code: *code,
        },
        other => CertStatus::Unavailable {
            reason: other.to_string().into(),
        },
    }
}

/// Checks `presented` (leaf first) under the checker's policy and reports every certificate.
pub(crate) async fn chain_status(
    checker: &RevocationChecker,
    presented: &[CertificateDer<'static>],
) -> ChainStatus {
    let Some((leaf, rest)) = presented.split_first() else {
        return ChainStatus {
            certs: vec![CertReport {
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                status: CertStatus::Unavailable {
                    reason: "no client certificate".into(),
                },
                detail: String::new(),
            }],
        };
    };
    let verdict = checker.check(leaf, rest).await;
    let certs = presented
        .iter()
        .map(|der| {
            let (subject, issuer, serial) = describe(der);
            let (status, detail) = match &verdict {
                Ok(Verdict::Good(list)) => match list.iter().find(|s| s.serial == serial) {
                    Some(s) => (
                        CertStatus::Good { source: s.source },
                        match (&s.source, &s.soft_failed) {
                            (None, Some(why)) => format!("soft-fail ({why})"),
                            _ => format!(
                                "valid until {}{}",
                                s.valid_until,
                                if s.cached { ", cached" } else { "" }
                            ),
                        },
                    ),
                    // Not part of the validated path (a root or an unrelated certificate
                    // sent along), or `check_intermediates = false` for a client chain.
                    None => (
                        CertStatus::Good { source: None },
                        "not checked: not part of the validated path, or check_intermediates = false".into(),
                    ),
                },
                // Fail closed: a checker exists only where checking is enabled.
                Ok(Verdict::NotChecked) => (
                    CertStatus::Unavailable {
                        reason: "revocation checking is disabled".into(),
                    },
                    String::new(),
                ),
                Err(e) if e.serial == serial => (reason_status(&e.reason), String::new()),
                Err(e) => (
                    CertStatus::Unavailable {
                        reason: format!("chain refused: {e}").into(),
                    },
                    String::new(),
                ),
            };
            CertReport {
                subject,
                issuer,
                serial,
                status,
                detail,
            }
        })
        .collect();
    ChainStatus { certs }
}

/// A factory making a checker per trust-anchor set (one per `https://` backend, or the
/// probe's CAs) under `cfg`, sharing `cache`. `None` when `cfg` disables checking or there
/// is no cache (then `upstream.revocation = "require"` refuses to start).
pub fn status_factory(
    cfg: &RevocationConfig,
    name: &str,
    provider: Arc<CryptoProvider>,
    cache: Option<&Arc<RevocationCache>>,
) -> Option<Box<StatusFactory>> {
    if !cfg.enabled {
        return None;
    }
    let cache = cache?.clone();
    // `require` means the whole chain: every certificate of the validated path, whatever
    // the listener's `check_intermediates` says about client chains.
    let mut cfg = cfg.clone();
    cfg.check_intermediates = true;
    let name = name.to_string();
    Some(Box::new(move |anchors: &[CertificateDer<'static>]| {
        RevocationChecker::new(&cfg, &name, anchors, provider.clone(), cache.clone())
            .map(|c| c as Arc<dyn StatusCheck>)
            .map_err(|e| e.to_string())
    }))
}
