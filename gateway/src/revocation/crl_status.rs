//! Certificate status from CRLs, RFC 5280 section 6.3.
//!
//! For each distribution point of the certificate (or the implicit one: the issuer's own
//! complete CRLs), every candidate CRL is checked for scope: issuer (the certificate's
//! issuer, or the cRLIssuer of the distribution point for an indirect CRL), the
//! issuingDistributionPoint name against the distribution point name (a relative name is
//! resolved against the CRL issuer), onlyContainsUserCerts/CACerts/AttributeCerts, reasons.
//! A CRL in scope must be current, complete (delta CRLs are not applied), free of
//! unrecognized critical extensions, and signed by a key whose own path validates to the
//! same trust anchor with cRLSign (a separate CRL-signing key, a rollover certificate) and
//! whose status is good in turn. The certificate is good only when the CRLs in scope cover
//! every reason code; it is revoked when any of them lists it (every CRL in scope is
//! consulted, so a configured file saying "good" cannot hide a distribution-point CRL saying
//! "revoked"). Delta CRLs are not applied to complete a base CRL: a (verified, current)
//! delta CRL listing the certificate still makes it revoked, fail closed.

use std::sync::Arc;

use super::crl::Crl;
use crate::pki::path::cert::{ku, DistPoint, ParsedCert};
use crate::pki::path::names::GenName;
use crate::pki::path::validate::{build, PathPolicy, Target, TrustAnchors};

/// All reason codes (x509-parser's ReasonFlags layout: bits 1 to 8).
pub const ALL_REASONS: u16 = 0x1fe;
/// CRL signer paths are followed at most this deep (a CRL signer's status needs CRLs too).
const MAX_SIGNER_DEPTH: usize = 2;

/// What CRLs say about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlStatus {
    /// Not listed; the CRLs in scope cover all reasons, valid until the earliest nextUpdate.
    Good {
        /// Earliest nextUpdate of the CRLs used.
        until: i64,
    },
    /// Listed by a CRL in scope.
    Revoked {
        /// Which CRL (issuer, thisUpdate).
        by: String,
    },
    /// No determination: why (each CRL considered and what was wrong with it), and the
    /// kind of problem when all CRLs considered failed the same way.
    Undetermined(String, Problem),
}

/// The kind of problem that left a certificate's status undetermined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No CRL in scope (or several different problems).
    NoCrl,
    /// CRLs in scope, but stale or not yet valid.
    Stale,
    /// CRLs in scope, but not signed by an acceptable key.
    BadSignature,
    /// CRLs in scope, but malformed or using unsupported features.
    Malformed,
}

/// Everything CRL processing needs besides the certificate.
#[derive(Debug, Clone)]
pub struct CrlContext<'a> {
    /// Candidate CRLs (configured files and fetched distribution points).
    pub crls: &'a [Arc<Crl>],
    /// Certificates that may be CRL signers or their issuers (the presented chain).
    pub pool: &'a [Arc<ParsedCert>],
    /// The trust anchors.
    pub anchors: &'a TrustAnchors,
    /// The anchor the certificate's path ends at: CRL signer paths must end there too.
    pub anchor: &'a Arc<ParsedCert>,
    /// Evaluation time.
    pub time: i64,
    /// Allowance on thisUpdate/nextUpdate.
    pub skew: i64,
    /// Key policy and algorithms for CRL signer paths.
    pub policy: PathPolicy,
    /// How deep in CRL-signer checks this is.
    pub depth: usize,
}

/// Determines `cert`'s status (issued by `issuer`) from the CRLs of `ctx`.
pub fn crl_status(cert: &ParsedCert, issuer: &Arc<ParsedCert>, ctx: &CrlContext<'_>) -> CrlStatus {
    let implicit = [DistPoint {
        name: None,
        reasons: None,
        crl_issuer: Vec::new(),
    }];
    let dps: &[DistPoint] = if cert.cdp.is_empty() {
        &implicit
    } else {
        &cert.cdp
    };
    let mut mask = 0u16;
    let mut until = i64::MAX;
    let mut notes: Vec<String> = Vec::new();
    let mut problems: Vec<Problem> = Vec::new();
    for dp in dps {
        for crl in ctx.crls {
            match in_scope(cert, dp, crl) {
                Scope::Other => continue,
                Scope::No(why) => {
                    notes.push(describe(crl, &why));
                    problems.push(Problem::NoCrl);
                    continue;
                }
                Scope::Yes(interim) => {
                    if !crl.is_current(ctx.time, ctx.skew) {
                        let why = if crl.this_update > ctx.time + ctx.skew {
                            "thisUpdate is in the future".to_string()
                        } else {
                            format!(
                                "stale (nextUpdate {})",
                                crate::pki::path::fmt_time(crl.next_update)
                            )
                        };
                        notes.push(describe(crl, &why));
                        problems.push(Problem::Stale);
                        continue;
                    }
                    if let Some(oid) = &crl.unsupported {
                        notes.push(describe(
                            crl,
                            &format!("unrecognized critical extension {oid}"),
                        ));
                        problems.push(Problem::Malformed);
                        continue;
                    }
                    let signer = match crl_signer(crl, cert, issuer, ctx) {
                        Ok(s) => s,
                        Err(why) => {
                            notes.push(describe(crl, &why));
                            problems.push(Problem::BadSignature);
                            continue;
                        }
                    };
                    let entries = match crl.verified_entries(&signer, ctx.policy.algs) {
                        Ok(e) => e,
                        Err(e) => {
                            notes.push(describe(crl, &e.to_string()));
                            problems.push(match e {
                                super::crl::CrlError::BadSignature(_) => Problem::BadSignature,
                                _ => Problem::Malformed,
                            });
                            continue;
                        }
                    };
                    if entries.contains(&cert.issuer, cert.serial()) {
                        return CrlStatus::Revoked {
                            by: describe(
                                crl,
                                if crl.delta {
                                    "a delta CRL lists it"
                                } else {
                                    "lists it"
                                },
                            ),
                        };
                    }
                    if crl.delta {
                        // Delta CRLs are not applied to complete a base CRL: an entry in one
                        // still counts (fail closed), its absence proves nothing.
                        notes.push(describe(
                            crl,
                            "a delta CRL: only complete CRLs establish a good status",
                        ));
                        problems.push(Problem::Malformed);
                        continue;
                    }
                    mask |= interim;
                    until = until.min(crl.next_update);
                }
            }
        }
    }
    if mask & ALL_REASONS == ALL_REASONS {
        return CrlStatus::Good { until };
    }
    let covered = if mask == 0 {
        "no usable CRL covers it".to_string()
    } else {
        format!("the usable CRLs cover only some revocation reasons (mask {mask:#05x})")
    };
    let problem = match problems.split_first() {
        Some((first, rest)) if mask == 0 && rest.iter().all(|p| p == first) => *first,
        _ => Problem::NoCrl,
    };
    if notes.is_empty() {
        CrlStatus::Undetermined(covered, problem)
    } else {
        CrlStatus::Undetermined(format!("{covered}; {}", notes.join("; ")), problem)
    }
}

fn describe(crl: &Crl, why: &str) -> String {
    format!(
        "CRL of {} (thisUpdate {}): {why}",
        crate::pki::path::cert::name_string(&crl.issuer),
        crate::pki::path::fmt_time(crl.this_update)
    )
}

enum Scope {
    /// Not a CRL of this issuer/distribution point at all.
    Other,
    /// Of this issuer, but out of scope for the certificate (why).
    No(String),
    /// In scope, for these reasons.
    Yes(u16),
}

/// RFC 5280 6.3.3 (b) and (d).
fn in_scope(cert: &ParsedCert, dp: &DistPoint, crl: &Crl) -> Scope {
    let indirect = crl.idp.as_ref().is_some_and(|i| i.indirect);
    let dp_crl_issuers: Vec<&crate::pki::path::name::NormName> = dp
        .crl_issuer
        .iter()
        .filter_map(|g| match g {
            GenName::Dir(n) => Some(n),
            _ => None,
        })
        .collect();
    // (b)(1) the CRL issuer.
    if !dp.crl_issuer.is_empty() {
        if !dp_crl_issuers.contains(&&crl.issuer_name) {
            return Scope::Other;
        }
        if !indirect {
            return Scope::No(
                "the distribution point names it as cRLIssuer but it is not an indirect CRL".into(),
            );
        }
    } else if crl.issuer_name != cert.issuer {
        return Scope::Other;
    }
    // (b)(2)(i) distribution point names.
    if let Some(idp) = &crl.idp {
        if let Some(idp_name) = &idp.name {
            let idp_names = idp_name.resolve(&crl.issuer_name);
            let matched = match &dp.name {
                Some(dpn) => {
                    let base = dp_crl_issuers.first().copied().unwrap_or(&cert.issuer);
                    let cert_names = dpn.resolve(base);
                    cert_names.iter().any(|n| idp_names.contains(n))
                }
                None if !dp.crl_issuer.is_empty() => {
                    dp.crl_issuer.iter().any(|n| idp_names.contains(n))
                }
                None => false,
            };
            if !matched {
                return Scope::No(
                    "its issuingDistributionPoint names another distribution point than the certificate"
                        .into(),
                );
            }
        }
        // (b)(2)(ii)-(iv)
        if idp.only_user && cert.is_ca() {
            return Scope::No("onlyContainsUserCerts, and the certificate is a CA".into());
        }
        if idp.only_ca && !cert.is_ca() {
            return Scope::No("onlyContainsCACerts, and the certificate is not a CA".into());
        }
        if idp.only_attr {
            return Scope::No("onlyContainsAttributeCerts".into());
        }
    }
    // (d) reasons.
    let interim = crl
        .idp
        .as_ref()
        .and_then(|i| i.reasons)
        .unwrap_or(ALL_REASONS)
        & dp.reasons.unwrap_or(ALL_REASONS)
        & ALL_REASONS;
    if interim == 0 {
        return Scope::No("covers none of the distribution point's reasons".into());
    }
    Scope::Yes(interim)
}

/// RFC 5280 6.3.3 (f)-(g): the certificate whose key signed the CRL, with a validated path
/// to the same trust anchor, cRLSign, and (for anything but the certificate's own issuer)
/// a good status of its own.
fn crl_signer(
    crl: &Crl,
    cert: &ParsedCert,
    issuer: &Arc<ParsedCert>,
    ctx: &CrlContext<'_>,
) -> Result<Arc<ParsedCert>, String> {
    let algs = ctx.policy.algs;
    // The certificate's own issuer (already validated as part of its path).
    if crl.issuer_name == issuer.subject && crl.verify_signature(issuer, algs).is_ok() {
        if !issuer.allows(ku::CRL_SIGN) {
            return Err("signed by the issuer, whose keyUsage lacks cRLSign".into());
        }
        return Ok(issuer.clone());
    }
    if crl.issuer_name == ctx.anchor.subject && crl.verify_signature(ctx.anchor, algs).is_ok() {
        if !ctx.anchor.allows(ku::CRL_SIGN) {
            return Err("signed by the trust anchor, whose keyUsage lacks cRLSign".into());
        }
        return Ok(ctx.anchor.clone());
    }
    let mut why = "no certificate of its issuer with a key that verifies its signature".to_string();
    for cand in ctx.pool.iter().filter(|c| c.subject == crl.issuer_name) {
        if crl.verify_signature(cand, algs).is_err() {
            continue;
        }
        if cand.digest == cert.digest {
            // A CRL signer whose own status is on a CRL it signed (an indirect CRL issuer
            // covering itself): its path is being validated by the caller already.
            if ctx.depth >= 1 && cand.allows(ku::CRL_SIGN) {
                return Ok(cand.clone());
            }
            continue;
        }
        if ctx.depth >= MAX_SIGNER_DEPTH {
            why = "the CRL signer's path is too deep to follow".into();
            continue;
        }
        let policy = PathPolicy {
            target: Target::CrlSigner,
            ..ctx.policy.clone()
        };
        let path = match build(
            cand.clone(),
            ctx.pool,
            ctx.anchors,
            Some(&ctx.anchor.digest),
            ctx.time,
            &policy,
        ) {
            Ok(p) => p,
            Err(e) => {
                why = format!("CRL signer {}: {e}", cand.subject_string());
                continue;
            }
        };
        let deeper = CrlContext {
            depth: ctx.depth + 1,
            ..ctx.clone()
        };
        let mut bad = None;
        for (i, c) in path.certs.iter().enumerate() {
            match crl_status(c, path.issuer_of(i), &deeper) {
                CrlStatus::Good { .. } => {}
                CrlStatus::Revoked { by } => {
                    bad = Some(format!(
                        "CRL signer {} is revoked: {by}",
                        c.subject_string()
                    ));
                    break;
                }
                CrlStatus::Undetermined(w, _) => {
                    bad = Some(format!(
                        "status of CRL signer {} unknown: {w}",
                        c.subject_string()
                    ));
                    break;
                }
            }
        }
        match bad {
            None => return Ok(cand.clone()),
            Some(b) => why = b,
        }
    }
    Err(why)
}
