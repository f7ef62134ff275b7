//! Path building (candidate issuers by name, key identifiers, self-issued rollover
//! certificates) and RFC 5280 section 6.1 basic path validation.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::SignatureVerificationAlgorithm;

use super::cert::{ku, ParsedCert};
use super::chain_cache::ChainCache;
use super::error::{PathError, Step};
use super::name::NormName;
use super::names::{ConstraintState, SubjectNames};
use super::policy::PolicyInputs;
use super::verify::{verify_cert, SigError};
use crate::pki::keypolicy::{KeyPolicy, RequiredEku};

/// Paths longer than this (intermediates) are not built.
const MAX_DEPTH: usize = 8;
/// At most this many candidate paths are validated per call.
const MAX_ATTEMPTS: usize = 32;

/// The trust anchors of a listener (or of `verify`/`probe`), parsed once.
#[derive(Debug, Default)]
pub struct TrustAnchors {
    list: Vec<Arc<ParsedCert>>,
    by_subject: HashMap<NormName, Vec<usize>>,
    cache: ChainCache,
}

impl TrustAnchors {
    /// Parses the anchors.
    ///
    /// # Errors
    /// [`PathError`] naming the anchor that does not parse.
    pub fn new(certs: &[rustls::pki_types::CertificateDer<'_>]) -> Result<Self, PathError> {
        let mut t = TrustAnchors::default();
        for (i, c) in certs.iter().enumerate() {
            let p = ParsedCert::parse(c).map_err(|mut e| {
                e.subject = format!("trust anchor #{i}");
                e
            })?;
            t.by_subject
                .entry(p.subject.clone())
                .or_default()
                .push(t.list.len());
            t.list.push(Arc::new(p));
        }
        Ok(t)
    }

    /// The anchors whose subject is `name`.
    pub fn by_subject<'a>(&'a self, name: &NormName) -> impl Iterator<Item = &'a Arc<ParsedCert>> {
        self.by_subject
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.list[i])
    }

    /// The chains validated against these anchors ([`super::chain_cache`]).
    pub fn cache(&self) -> &ChainCache {
        &self.cache
    }

    /// All anchors.
    pub fn all(&self) -> &[Arc<ParsedCert>] {
        &self.list
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// What the certificate at the end of the path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A TLS peer: must not be a CA certificate (S.E.E. policy).
    EndEntity,
    /// A CRL signer (RFC 5280 6.3.3 (f)): may be a CA; must allow cRLSign.
    CrlSigner,
    /// Any certificate (status checking of a chain the verifier has accepted).
    Any,
}

/// The rules a path is validated under.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    /// Key sizes, curves, signature algorithms.
    pub key_policy: KeyPolicy,
    /// Extended key usage the target must name.
    pub eku: RequiredEku,
    /// What the target certificate is for.
    pub target: Target,
    /// The provider's signature algorithms (SHA-1 is not among them).
    pub algs: &'static [&'static dyn SignatureVerificationAlgorithm],
    /// The certificate policy inputs (RFC 5280 6.1.1 (c), (e)-(g)); the default accepts any
    /// policy and requires none.
    pub policy_inputs: PolicyInputs,
}

/// A validated path: the target first, then each issuer up to the one the anchor issued.
#[derive(Debug, Clone)]
pub struct ValidatedPath {
    /// Target first; `certs[i + 1]` issued `certs[i]`; the last was issued by `anchor`.
    pub certs: Vec<Arc<ParsedCert>>,
    /// The trust anchor.
    pub anchor: Arc<ParsedCert>,
}

impl ValidatedPath {
    /// The certificate that issued `certs[i]` (an intermediate or the anchor).
    pub fn issuer_of(&self, i: usize) -> &Arc<ParsedCert> {
        self.certs.get(i + 1).unwrap_or(&self.anchor)
    }

    /// The target certificate.
    pub fn target(&self) -> &Arc<ParsedCert> {
        &self.certs[0]
    }
}

struct Search<'a> {
    pool: &'a [Arc<ParsedCert>],
    anchors: &'a TrustAnchors,
    only_anchor: Option<&'a [u8; 32]>,
    time: i64,
    policy: &'a PathPolicy,
    attempts: usize,
    best: Option<(usize, PathError)>,
}

impl Search<'_> {
    fn record(&mut self, depth: usize, e: PathError) {
        match &self.best {
            Some((d, _)) if *d > depth => {}
            Some((d, _)) if *d == depth => {}
            _ => self.best = Some((depth, e)),
        }
    }

    /// Depth-first: `chain` holds the target and the intermediates chosen so far.
    fn run(&mut self, chain: &mut Vec<Arc<ParsedCert>>) -> Option<ValidatedPath> {
        let cur = chain.last().cloned()?;
        let depth = chain.len();
        // Anchors first: the shortest path wins.
        let anchors: Vec<Arc<ParsedCert>> = self
            .anchors
            .by_subject(&cur.issuer)
            .filter(|a| self.only_anchor.is_none_or(|d| *d == a.digest))
            .cloned()
            .collect();
        for a in anchors {
            if self.attempts >= MAX_ATTEMPTS {
                return None;
            }
            match verify_cert(self.policy.algs, &cur, &a) {
                Ok(()) => {}
                Err(e) => {
                    self.record(depth, sig_error(&cur, e));
                    continue;
                }
            }
            self.attempts += 1;
            let path = ValidatedPath {
                certs: chain.clone(),
                anchor: a,
            };
            match process(&path, self.time, self.policy) {
                Ok(()) => return Some(path),
                Err(e) => self.record(depth + 1, e),
            }
        }
        if depth > MAX_DEPTH {
            return None;
        }
        let mut cands: Vec<&Arc<ParsedCert>> = self
            .pool
            .iter()
            .filter(|c| c.subject == cur.issuer && !chain.iter().any(|x| x.digest == c.digest))
            .collect();
        // Key identifiers first (rollover: several keys under one name).
        cands.sort_by_key(|c| match (&cur.aki, &c.ski) {
            (Some(a), Some(s)) if a == s => 0,
            (Some(_), Some(_)) => 2,
            _ => 1,
        });
        for c in cands {
            if let Err(e) = verify_cert(self.policy.algs, &cur, c) {
                self.record(depth, sig_error(&cur, e));
                continue;
            }
            chain.push(c.clone());
            let r = self.run(chain);
            chain.pop();
            if r.is_some() {
                return r;
            }
        }
        if self.best.is_none() {
            self.best = Some((
                depth,
                PathError::new(
                    Step::NameChaining,
                    cur.subject_string(),
                    format!(
                        "no trusted CA or presented certificate is its issuer ({})",
                        cur.issuer_string()
                    ),
                ),
            ));
        }
        None
    }
}

fn sig_error(cert: &ParsedCert, e: SigError) -> PathError {
    match e {
        SigError::Invalid => PathError::new(
            Step::Signature,
            cert.subject_string(),
            "signature does not verify with the issuer's public key",
        ),
        SigError::Unsupported => PathError::new(
            Step::KeyPolicy,
            cert.subject_string(),
            "signature algorithm or issuer key type not allowed (RSA/ECDSA with SHA-2 only)",
        ),
    }
}

/// Builds and validates a path from `target` to one of `anchors` (or only to the anchor
/// with digest `only_anchor`), using `pool` for intermediates.
///
/// # Errors
/// The [`PathError`] of the most complete path tried.
pub fn build(
    target: Arc<ParsedCert>,
    pool: &[Arc<ParsedCert>],
    anchors: &TrustAnchors,
    only_anchor: Option<&[u8; 32]>,
    time: i64,
    policy: &PathPolicy,
) -> Result<ValidatedPath, PathError> {
    let mut s = Search {
        pool,
        anchors,
        only_anchor,
        time,
        policy,
        attempts: 0,
        best: None,
    };
    let mut chain = vec![target.clone()];
    if let Some(p) = s.run(&mut chain) {
        return Ok(p);
    }
    Err(s.best.map(|(_, e)| e).unwrap_or_else(|| {
        PathError::new(
            Step::NameChaining,
            target.subject_string(),
            "no path to a trusted CA",
        )
    }))
}

/// RFC 5280 6.1.2-6.1.5 over a complete path (signatures were checked while building; the
/// memo makes the re-check here free).
fn process(path: &ValidatedPath, time: i64, policy: &PathPolicy) -> Result<(), PathError> {
    let n = path.certs.len();
    let mut max_path_len = n;
    let mut constraints = ConstraintState::default();
    let mut working: &ParsedCert = &path.anchor;
    // certs[n-1] is the first certificate of the path (issued by the anchor).
    for (pos, cert) in path.certs.iter().rev().enumerate() {
        let i = pos + 1; // RFC numbering: 1..=n
        let last = i == n;
        let who = || cert.subject_string();
        // The key policy: every certificate's key and signature algorithm.
        let eku = if last { policy.eku } else { RequiredEku::None };
        policy
            .key_policy
            .check_facts(&cert.facts, eku)
            .map_err(|e| {
                let step = if matches!(e, crate::pki::keypolicy::KeyPolicyError::MissingEku(_)) {
                    Step::ExtendedKeyUsage
                } else {
                    Step::KeyPolicy
                };
                PathError::new(step, who(), e.to_string())
            })?;
        // (a)(1) signature with the working public key.
        verify_cert(policy.algs, cert, working).map_err(|e| sig_error(cert, e))?;
        // (a)(2) validity.
        if time < cert.not_before {
            return Err(PathError::new(
                Step::Validity,
                who(),
                format!(
                    "not yet valid (notBefore {})",
                    super::fmt_time(cert.not_before)
                ),
            ));
        }
        if time > cert.not_after {
            return Err(PathError::new(
                Step::Validity,
                who(),
                format!("expired (notAfter {})", super::fmt_time(cert.not_after)),
            ));
        }
        // (a)(4) name chaining.
        if cert.issuer != working.subject {
            return Err(PathError::new(
                Step::NameChaining,
                who(),
                "issuer name does not match the subject of the issuing certificate",
            ));
        }
        // (b), (c) name constraints: not for self-issued intermediates.
        if last || !cert.is_self_issued() {
            constraints
                .check(&SubjectNames {
                    dn: &cert.subject,
                    dn_emails: &cert.subject_emails,
                    san: &cert.san,
                })
                .map_err(|d| PathError::new(Step::NameConstraints, who(), d))?;
        }
        if last {
            break;
        }
        // 6.1.4: preparation for certificate i + 1.
        if let Some(nc) = &cert.name_constraints {
            constraints.add(nc); // (g)
        }
        // (k) a CA certificate (v1/v2 intermediates are refused: no out-of-band CA list).
        if cert.version < 2 || !cert.is_ca() {
            return Err(PathError::new(
                Step::BasicConstraints,
                who(),
                "used as an issuer but not a CA certificate (basicConstraints cA absent or false)",
            ));
        }
        // (l) path length, self-issued certificates excluded.
        if !cert.is_self_issued() {
            if max_path_len == 0 {
                return Err(PathError::new(
                    Step::PathLength,
                    who(),
                    "pathLenConstraint of a CA above it is exceeded",
                ));
            }
            max_path_len -= 1;
        }
        // (m)
        if let Some((_, Some(len))) = cert.basic {
            max_path_len = max_path_len.min(len as usize);
        }
        // (n) keyCertSign.
        if !cert.allows(ku::KEY_CERT_SIGN) {
            return Err(PathError::new(
                Step::KeyUsage,
                who(),
                "issuer keyUsage lacks keyCertSign",
            ));
        }
        // (o) critical extensions.
        if let Some(oid) = &cert.unknown_critical {
            return Err(PathError::new(
                Step::CriticalExtension,
                who(),
                format!("unrecognized critical extension {oid}"),
            ));
        }
        working = cert;
    }
    let target = path.target();
    // 6.1.3 (d)-(f), 6.1.4 (a)-(b), (h)-(j), 6.1.5 (a)-(b), (g): certificate policies.
    super::policy::check(&path.certs, &policy.policy_inputs)?;
    if let Some(oid) = &target.unknown_critical {
        return Err(PathError::new(
            Step::CriticalExtension,
            target.subject_string(),
            format!("unrecognized critical extension {oid}"),
        ));
    }
    match policy.target {
        Target::EndEntity if target.is_ca() => Err(PathError::new(
            Step::EndEntityIsCa,
            target.subject_string(),
            "a CA certificate (basicConstraints cA) is not accepted as a client or server certificate",
        )),
        Target::CrlSigner if !target.allows(ku::CRL_SIGN) => Err(PathError::new(
            Step::KeyUsage,
            target.subject_string(),
            "CRL signer keyUsage lacks cRLSign",
        )),
        _ => Ok(()),
    }
}
