//! `gateway verify`: would this certificate chain get in, and if not, why. Runs every check
//! of a listener's policy (trust, validity, key policy, EKU, revocation) and prints each.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail};

use crate::config::{Config, TlsConfig};
use crate::pki::keypolicy::{KeyPolicy, KeyPolicyError, RequiredEku};
use crate::revocation::der::{fmt_time, parse_rfc3339};
use crate::revocation::{
    now_secs, RevocationCache, RevocationChecker, RevocationConfig, RevocationOrder, Verdict,
};

/// Arguments of `gateway verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// PEM file with the client certificate chain (leaf first, then intermediates).
    pub chain: PathBuf,
    /// Configuration file whose listener policy applies (default: the strict defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listener name or index in the configuration (default: the first).
    #[arg(long)]
    pub listener: Option<String>,
    /// Trusted CA file(s), in addition to the listener's `trusted_cas`.
    #[arg(long = "ca")]
    pub cas: Vec<PathBuf>,
    /// CRL file(s), DER or PEM, in addition to the listener's `crl_files`.
    #[arg(long = "crl")]
    pub crls: Vec<PathBuf>,
    /// Also consult the CRL distribution points and OCSP responders named in the
    /// certificates (network). Without it only CRL files answer.
    #[arg(long)]
    pub online: bool,
    /// Evaluate at this time (RFC 3339, e.g. 2027-01-01T00:00:00Z) instead of now.
    #[arg(long)]
    pub at: Option<String>,
}

struct Report {
    ok: bool,
}

impl Report {
    fn line(&mut self, pass: bool, what: &str, detail: impl AsRef<str>) {
        self.ok &= pass;
        let tag = if pass { "ok  " } else { "FAIL" };
        println!("[{tag}] {what}: {}", detail.as_ref());
    }
}

/// Runs the checks and prints them; `Ok(true)` when the chain would be accepted.
///
/// # Errors
/// Unreadable files, a bad `--at`, or an unknown listener.
pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<bool> {
    let at = match &args.at {
        Some(s) => parse_rfc3339(s)
            .ok_or_else(|| anyhow!("--at {s:?}: expected RFC 3339, e.g. 2027-01-01T00:00:00Z"))?,
        None => now_secs(),
    };
    let (tls, mut rev, mut ca_files, provider_name, listener, pki) = match &args.config {
        Some(path) => {
            let cfg = Config::load(path)?;
            let idx = match &args.listener {
                None => 0,
                Some(l) => cfg
                    .listeners
                    .iter()
                    .position(|x| x.display_name() == *l || x.name.as_deref() == Some(l))
                    .or_else(|| l.parse::<usize>().ok().filter(|i| *i < cfg.listeners.len()))
                    .ok_or_else(|| anyhow!("no listener {l:?} in {}", path.display()))?,
            };
            let l = cfg
                .listeners
                .get(idx)
                .ok_or_else(|| anyhow!("no listener {idx} in {}", path.display()))?;
            (
                l.tls.clone(),
                l.revocation.clone(),
                l.trusted_cas.clone(),
                cfg.global.crypto_provider.clone(),
                l.display_name(),
                l.pki.clone(),
            )
        }
        None => (
            TlsConfig::default(),
            RevocationConfig::default(),
            Vec::new(),
            if cfg!(feature = "aws-lc-rs") {
                "aws-lc-rs"
            } else {
                "ring"
            }
            .to_string(),
            "defaults".to_string(),
            crate::config::PkiConfig::default(),
        ),
    };
    ca_files.extend(args.cas.iter().cloned());
    if ca_files.is_empty() {
        bail!("no trusted CA: give --ca FILE or --config with a listener's trusted_cas");
    }
    rev.crl_files.extend(args.crls.iter().cloned());
    if !args.online && rev.order == RevocationOrder::OcspOnly && !rev.crl_files.is_empty() {
        rev.order = RevocationOrder::CrlOnly;
    }
    let chain = crate::pki::load_certs(&args.chain)?;
    let cas = crate::pki::load_ca_bundle(&ca_files)?;
    let provider =
        Arc::new(crate::tls::policy::base_provider(&provider_name).map_err(|e| anyhow!("{e}"))?);
    let (leaf, inter) = chain
        .split_first()
        .ok_or_else(|| anyhow!("{}: no certificate", args.chain.display()))?;
    let mut r = Report { ok: true };
    let parsed: Vec<_> = chain
        .iter()
        .map(|c| crate::pki::path::parse_cached(c))
        .collect();
    match parsed.first() {
        Some(Ok(c)) => println!(
            "certificate: {} (serial {}), issued by {}",
            c.subject_string(),
            hex::encode(c.serial()),
            c.issuer_string()
        ),
        _ => println!("certificate: {} (does not parse)", args.chain.display()),
    }
    println!("policy: listener {listener}; evaluated at {}", fmt_time(at));

    // Every certificate must parse: a malformed one is a refusal, not an error.
    for (i, p) in parsed.iter().enumerate() {
        if let Err(e) = p {
            r.line(
                false,
                "syntax",
                format!("certificate #{} of {}: {e}", i + 1, args.chain.display()),
            );
        }
    }
    if !r.ok {
        println!("verdict: REJECTED");
        return Ok(false);
    }
    let parsed: Vec<_> = parsed.into_iter().flatten().collect();

    // Validity of every certificate in the chain.
    for c in &parsed {
        let pass = c.not_before <= at && at <= c.not_after;
        r.line(
            pass,
            "validity",
            format!(
                "{}: {} .. {}{}",
                c.subject_string(),
                fmt_time(c.not_before),
                fmt_time(c.not_after),
                if pass {
                    ""
                } else {
                    " (not valid at the evaluation time)"
                }
            ),
        );
    }

    // Key policy (keys, curves, signature algorithms) and EKU.
    let policy = KeyPolicy {
        min_rsa_bits: tls.min_rsa_bits,
    };
    let kp = std::iter::once(leaf)
        .chain(inter)
        .try_for_each(|c| policy.check(c, RequiredEku::None));
    r.line(
        kp.is_ok(),
        "key policy",
        match &kp {
            Ok(()) => format!(
                "keys and signatures allowed (RSA >= {} bits, P-256/P-384, no SHA-1)",
                tls.min_rsa_bits
            ),
            Err(e) => e.to_string(),
        },
    );
    if tls.require_client_auth_eku {
        let eku = match policy.check(leaf, RequiredEku::ClientAuth) {
            Err(e @ KeyPolicyError::MissingEku(_)) => Err(e),
            _ => Ok(()),
        };
        r.line(
            eku.is_ok(),
            "extended key usage",
            match &eku {
                Ok(()) => "clientAuth present".to_string(),
                Err(e) => e.to_string(),
            },
        );
    } else {
        println!("[skip] extended key usage: not required by this listener (relaxation)");
    }

    // Trust: the same RFC 5280 path validation the handshake runs.
    let trust =
        crate::pki::path::TrustAnchors::new(&cas).map_err(|e| anyhow!("trusted CA: {e}"))?;
    let path_policy = crate::pki::path::PathPolicy {
        key_policy: policy,
        eku: if tls.require_client_auth_eku {
            RequiredEku::ClientAuth
        } else {
            RequiredEku::None
        },
        target: crate::pki::path::Target::EndEntity,
        algs: provider.signature_verification_algorithms.all,
        policy_inputs: pki
            .policy_inputs()
            .map_err(|(k, m)| anyhow!("pki.{k}: {m}"))?,
    };
    let path = crate::pki::path::validate_path(&chain, &trust, at, &path_policy);
    match &path {
        Ok(p) => r.line(
            true,
            "trust",
            format!(
                "RFC 5280 6.1: {} certificate(s) to the trusted CA {} ({} trusted)",
                p.certs.len(),
                p.anchor.subject_string(),
                trust.len()
            ),
        ),
        Err(e) => {
            r.line(false, "trust", e.to_string());
            println!("       failed step: {}", e.step.rfc());
        }
    }

    // Revocation.
    if !rev.enabled {
        println!("[skip] revocation: disabled for this listener (relaxation)");
    } else {
        let cache = RevocationCache::new(rev.cache_max_entries)?;
        let checker = if args.online {
            RevocationChecker::new(&rev, &listener, &cas, provider, cache)?
        } else {
            RevocationChecker::new_offline(&rev, &listener, &cas, provider, cache)?
        }
        .with_policy_inputs(path_policy.policy_inputs.clone())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(checker.check_at(leaf, inter, at)) {
            Ok(Verdict::Good(statuses)) => {
                for s in statuses {
                    match (&s.source, &s.soft_failed) {
                        (Some(src), _) => r.line(
                            true,
                            "revocation",
                            format!(
                                "serial {} not revoked according to {src} (valid until {})",
                                s.serial,
                                fmt_time(s.valid_until)
                            ),
                        ),
                        (None, Some(why)) => r.line(
                            true,
                            "revocation",
                            format!(
                                "serial {}: {why}; accepted by soft_fail (relaxation)",
                                s.serial
                            ),
                        ),
                        (None, None) => {}
                    }
                }
            }
            Ok(Verdict::NotChecked) => println!("[skip] revocation: not checked"),
            Err(e) => {
                r.line(false, "revocation", e.to_string());
                if !args.online {
                    println!("       hint: --online consults the certificate's CRL distribution points and OCSP responder; --crl FILE adds a CRL");
                }
            }
        }
    }
    println!("verdict: {}", if r.ok { "ACCEPTED" } else { "REJECTED" });
    Ok(r.ok)
}
