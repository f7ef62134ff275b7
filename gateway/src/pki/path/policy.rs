//! Certificate policies: the extensions (RFC 5280 4.2.1.4 certificatePolicies, 4.2.1.5
//! policyMappings, 4.2.1.11 policyConstraints, 4.2.1.14 inhibitAnyPolicy) and the
//! valid_policy_tree of RFC 5280 6.1 (6.1.2 (a), (d)-(f); 6.1.3 (d)-(f); 6.1.4 (a), (b),
//! (h)-(j); 6.1.5 (a), (b), (g)).
//!
//! - **Inputs** ([`PolicyInputs`]): user-initial-policy-set (`None` = anyPolicy),
//!   initial-explicit-policy, initial-policy-mapping-inhibit, initial-any-policy-inhibit. The
//!   defaults are RFC 5280's (any policy, all three false).
//! - **Fast path**: with no explicit policy asked for by the inputs and no certificate of the
//!   path carrying policyConstraints, explicit_policy never reaches 0 and only 6.1.4 (a) (a
//!   mapping of anyPolicy) can refuse the path, so the tree is not built: a path without
//!   policy extensions costs one scan of the path.
//! - **Bounds**: the certificates are the attacker's. The tree is refused (a clear
//!   [`Step::Policy`] error) when its nodes plus their expected-policy entries would exceed
//!   [`MAX_TREE_COST`]; every step is linear in that budget (hash lookups, no
//!   policies × nodes × expected-set loops).
//! - Policy qualifiers are parsed for syntax and otherwise ignored (RFC 5280 4.2.1.4: no
//!   qualifier processing is required).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::cert::ParsedCert;
use super::der::Reader;
use super::error::{PathError, Step};

/// The most nodes plus expected-policy entries a valid_policy_tree may hold (policy-tree
/// blow-up is a known denial of service: a few certificates with many policies and mappings
/// can make the tree grow exponentially).
pub const MAX_TREE_COST: usize = 4096;

/// A certificate policy identifier: the DER contents of the OBJECT IDENTIFIER.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyOid(Arc<[u8]>);

/// anyPolicy, 2.5.29.32.0.
const ANY_POLICY: &[u8] = &[0x55, 0x1d, 0x20, 0x00];

impl PolicyOid {
    /// anyPolicy (2.5.29.32.0).
    pub fn any() -> PolicyOid {
        PolicyOid(Arc::from(ANY_POLICY))
    }

    /// Whether this is anyPolicy.
    pub fn is_any(&self) -> bool {
        &*self.0 == ANY_POLICY
    }

    /// The DER contents (without tag and length).
    pub fn as_der(&self) -> &[u8] {
        &self.0
    }

    /// From the DER contents of an OBJECT IDENTIFIER, checked (minimal base-128 arcs).
    ///
    /// # Errors
    /// What is wrong with the encoding.
    pub fn from_der(content: &[u8]) -> Result<PolicyOid, String> {
        if content.is_empty() {
            return Err("empty OBJECT IDENTIFIER".into());
        }
        if content.last().is_some_and(|b| b & 0x80 != 0) {
            return Err("truncated OBJECT IDENTIFIER".into());
        }
        let mut start = true;
        for &b in content {
            if start && b == 0x80 {
                return Err("OBJECT IDENTIFIER arc not minimally encoded".into());
            }
            start = b & 0x80 == 0;
        }
        if dotted(content).is_none() {
            return Err("OBJECT IDENTIFIER arc too large".into());
        }
        Ok(PolicyOid(Arc::from(content)))
    }

    /// From dotted-decimal text (`2.16.840.1.101.3.2.1.48.1`).
    ///
    /// # Errors
    /// What is wrong with the text.
    pub fn parse(text: &str) -> Result<PolicyOid, String> {
        let arcs: Vec<u64> = text
            .split('.')
            .map(|a| {
                if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{text:?} is not a dotted-decimal OID"));
                }
                if a.len() > 1 && a.starts_with('0') {
                    return Err(format!("{text:?}: arc {a:?} has a leading zero"));
                }
                a.parse::<u64>()
                    .map_err(|_| format!("{text:?}: arc {a:?} is too large"))
            })
            .collect::<Result<_, _>>()?;
        let (first, second) = match arcs.as_slice() {
            [f, s, ..] => (*f, *s),
            _ => return Err(format!("{text:?}: an OID has at least two arcs")),
        };
        if first > 2 || (first < 2 && second > 39) {
            return Err(format!(
                "{text:?}: first arcs out of range (0.0-0.39, 1.0-1.39, 2.x)"
            ));
        }
        let head = first
            .checked_mul(40)
            .and_then(|v| v.checked_add(second))
            .ok_or_else(|| format!("{text:?}: arc too large"))?;
        let mut out = Vec::new();
        for arc in std::iter::once(head).chain(arcs[2..].iter().copied()) {
            let mut chunk = vec![(arc & 0x7f) as u8];
            let mut v = arc >> 7;
            while v > 0 {
                chunk.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
            chunk.reverse();
            out.extend(chunk);
        }
        Ok(PolicyOid(Arc::from(out)))
    }
}

/// Dotted-decimal text of OID contents, `None` if an arc overflows `u64`.
fn dotted(content: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for &b in content {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    let first = *arcs.first()?;
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Some(s)
}

impl fmt::Display for PolicyOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match dotted(&self.0) {
            Some(s) => f.write_str(&s),
            None => write!(f, "<oid {}>", hex::encode(&self.0)),
        }
    }
}

impl fmt::Debug for PolicyOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The policy inputs of RFC 5280 6.1.1 (c), (e), (f), (g). The default is RFC 5280's:
/// any policy acceptable, nothing inhibited, no explicit policy required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInputs {
    /// user-initial-policy-set; `None` = {anyPolicy}.
    pub initial_policy_set: Option<Arc<[PolicyOid]>>,
    /// initial-explicit-policy: the path must be valid for at least one policy of the set.
    pub initial_explicit_policy: bool,
    /// initial-policy-mapping-inhibit: policy mapping is not permitted in the path.
    pub initial_policy_mapping_inhibit: bool,
    /// initial-any-policy-inhibit: anyPolicy in a certificate is not processed as a match.
    pub initial_any_policy_inhibit: bool,
}

impl PolicyInputs {
    /// The inputs that require one of `policies` (initial-explicit-policy set); the empty
    /// list is the default (any policy, none required).
    pub fn requiring(policies: Vec<PolicyOid>) -> PolicyInputs {
        if policies.is_empty() {
            return PolicyInputs::default();
        }
        PolicyInputs {
            initial_policy_set: Some(Arc::from(policies)),
            initial_explicit_policy: true,
            ..PolicyInputs::default()
        }
    }

    /// The user-initial-policy-set if it is not {anyPolicy} (a set naming anyPolicy is
    /// {anyPolicy}).
    fn restricted_set(&self) -> Option<&[PolicyOid]> {
        self.initial_policy_set
            .as_deref()
            .filter(|s| !s.iter().any(PolicyOid::is_any))
    }
}

/// policyConstraints (RFC 5280 4.2.1.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConstraints {
    /// requireExplicitPolicy (SkipCerts).
    pub require_explicit_policy: Option<u32>,
    /// inhibitPolicyMapping (SkipCerts).
    pub inhibit_policy_mapping: Option<u32>,
}

/// The policy extensions of one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertPolicyExts {
    /// certificatePolicies: the policy identifiers (qualifiers are not kept).
    pub policies: Option<Vec<PolicyOid>>,
    /// policyMappings: (issuerDomainPolicy, subjectDomainPolicy) pairs.
    pub mappings: Option<Vec<(PolicyOid, PolicyOid)>>,
    /// policyConstraints.
    pub constraints: Option<PolicyConstraints>,
    /// inhibitAnyPolicy (SkipCerts).
    pub inhibit_any_policy: Option<u32>,
}

fn oid_in(r: &mut Reader<'_>, what: &str) -> Result<PolicyOid, String> {
    let t = r
        .expect(0x06)
        .ok_or_else(|| format!("{what}: OBJECT IDENTIFIER expected"))?;
    PolicyOid::from_der(t.value).map_err(|e| format!("{what}: {e}"))
}

/// SkipCerts ::= INTEGER (0..MAX), contents of a DER INTEGER; values above `u32::MAX` are
/// `u32::MAX` (longer than any path).
fn skip_certs(content: &[u8], what: &str) -> Result<u32, String> {
    match content {
        [] => Err(format!("{what}: empty INTEGER")),
        [b, ..] if b & 0x80 != 0 => Err(format!("{what}: negative SkipCerts")),
        [0, b, ..] if b & 0x80 == 0 => Err(format!("{what}: INTEGER not minimally encoded")),
        _ => {
            let digits = content.iter().skip_while(|&&b| b == 0).count();
            if digits > 4 {
                return Ok(u32::MAX);
            }
            Ok(content.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
        }
    }
}

fn whole<'a>(value: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], String> {
    let mut r = Reader::new(value);
    let t = r
        .expect(tag)
        .ok_or_else(|| format!("{what} does not parse"))?;
    if !r.is_empty() {
        return Err(format!("{what}: trailing data"));
    }
    Ok(t.value)
}

/// Parses a certificatePolicies extension value.
///
/// # Errors
/// What is wrong (empty sequence, bad OID, malformed qualifiers, a policy twice).
pub fn parse_certificate_policies(value: &[u8]) -> Result<Vec<PolicyOid>, String> {
    const W: &str = "certificatePolicies";
    let mut r = Reader::new(whole(value, 0x30, W)?);
    let mut out: Vec<PolicyOid> = Vec::new();
    // Duplicates found by hash: an attacker's certificate may list thousands of policies.
    let mut seen: HashSet<PolicyOid> = HashSet::new();
    while !r.is_empty() {
        let info = r
            .expect(0x30)
            .ok_or_else(|| format!("{W}: PolicyInformation SEQUENCE expected"))?;
        let mut f = Reader::new(info.value);
        let oid = oid_in(&mut f, W)?;
        if let Some(q) = f.expect(0x30) {
            let mut qs = Reader::new(q.value);
            if qs.is_empty() {
                return Err(format!("{W}: empty policyQualifiers of {oid}"));
            }
            while !qs.is_empty() {
                let qi = qs
                    .expect(0x30)
                    .ok_or_else(|| format!("{W}: PolicyQualifierInfo SEQUENCE expected"))?;
                let mut qf = Reader::new(qi.value);
                oid_in(&mut qf, W)?;
                qf.next()
                    .ok_or_else(|| format!("{W}: policy qualifier of {oid} does not parse"))?;
                if !qf.is_empty() {
                    return Err(format!("{W}: trailing data in a qualifier of {oid}"));
                }
            }
        }
        if !f.is_empty() {
            return Err(format!("{W}: trailing data in PolicyInformation {oid}"));
        }
        if !seen.insert(oid.clone()) {
            return Err(format!("{W}: policy {oid} appears twice"));
        }
        out.push(oid);
    }
    if out.is_empty() {
        return Err(format!("{W}: empty sequence"));
    }
    Ok(out)
}

/// Parses a policyMappings extension value.
///
/// # Errors
/// What is wrong (empty sequence, bad OID).
pub fn parse_policy_mappings(value: &[u8]) -> Result<Vec<(PolicyOid, PolicyOid)>, String> {
    const W: &str = "policyMappings";
    let mut r = Reader::new(whole(value, 0x30, W)?);
    let mut out = Vec::new();
    while !r.is_empty() {
        let m = r
            .expect(0x30)
            .ok_or_else(|| format!("{W}: mapping SEQUENCE expected"))?;
        let mut f = Reader::new(m.value);
        let issuer = oid_in(&mut f, W)?;
        let subject = oid_in(&mut f, W)?;
        if !f.is_empty() {
            return Err(format!("{W}: trailing data in a mapping"));
        }
        out.push((issuer, subject));
    }
    if out.is_empty() {
        return Err(format!("{W}: empty sequence"));
    }
    Ok(out)
}

/// Parses a policyConstraints extension value.
///
/// # Errors
/// What is wrong (RFC 5280 4.2.1.11: an empty sequence is not allowed).
pub fn parse_policy_constraints(value: &[u8]) -> Result<PolicyConstraints, String> {
    const W: &str = "policyConstraints";
    let mut r = Reader::new(whole(value, 0x30, W)?);
    let mut pc = PolicyConstraints {
        require_explicit_policy: None,
        inhibit_policy_mapping: None,
    };
    if let Some(t) = r.expect(0x80) {
        pc.require_explicit_policy = Some(skip_certs(t.value, W)?);
    }
    if let Some(t) = r.expect(0x81) {
        pc.inhibit_policy_mapping = Some(skip_certs(t.value, W)?);
    }
    if !r.is_empty() {
        return Err(format!("{W}: unexpected field"));
    }
    if pc.require_explicit_policy.is_none() && pc.inhibit_policy_mapping.is_none() {
        return Err(format!("{W}: empty sequence (RFC 5280 4.2.1.11)"));
    }
    Ok(pc)
}

/// Parses an inhibitAnyPolicy extension value.
///
/// # Errors
/// What is wrong.
pub fn parse_inhibit_any_policy(value: &[u8]) -> Result<u32, String> {
    const W: &str = "inhibitAnyPolicy";
    skip_certs(whole(value, 0x02, W)?, W)
}

struct Node {
    policy: PolicyOid,
    /// Index into the level above (unused at depth 0).
    parent: usize,
    expected: Vec<PolicyOid>,
    alive: bool,
}

/// The valid_policy_tree: `levels[d]` holds the nodes of depth d.
struct Tree {
    levels: Vec<Vec<Node>>,
    cost: usize,
}

fn too_big(cert: &ParsedCert) -> PathError {
    PathError::new(
        Step::Policy,
        cert.subject_string(),
        format!(
            "certificate policy tree would exceed {MAX_TREE_COST} entries (refused: policy-tree blow-up)"
        ),
    )
}

impl Tree {
    fn new() -> Tree {
        Tree {
            levels: vec![vec![Node {
                policy: PolicyOid::any(),
                parent: 0,
                expected: vec![PolicyOid::any()],
                alive: true,
            }]],
            cost: 1,
        }
    }

    fn is_null(&self) -> bool {
        !self.levels[0][0].alive
    }

    fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    fn charge(&mut self, n: usize, cert: &ParsedCert) -> Result<(), PathError> {
        self.cost = self.cost.saturating_add(n);
        if self.cost > MAX_TREE_COST {
            return Err(too_big(cert));
        }
        Ok(())
    }

    /// 6.1.3 (d) (1)-(2): a new level for the policies of `cert`.
    fn add_level(
        &mut self,
        policies: &[PolicyOid],
        any_allowed: bool,
        cert: &ParsedCert,
    ) -> Result<(), PathError> {
        let prev = self.levels.last().map(Vec::as_slice).unwrap_or_default();
        // Which nodes of depth i-1 expect each policy (one pass over the expected sets).
        let mut expecting: HashMap<&PolicyOid, Vec<usize>> = HashMap::new();
        let mut any_node = None;
        for (k, node) in prev.iter().enumerate().filter(|(_, n)| n.alive) {
            if node.policy.is_any() {
                any_node = Some(k);
            }
            for e in &node.expected {
                expecting.entry(e).or_default().push(k);
            }
        }
        let mut next: Vec<Node> = Vec::new();
        let mut cost = 0usize;
        let mut add = |next: &mut Vec<Node>, policy: &PolicyOid, parent: usize| {
            cost += 1;
            next.push(Node {
                policy: policy.clone(),
                parent,
                expected: vec![policy.clone()],
                alive: true,
            });
            cost + self.cost <= MAX_TREE_COST
        };
        for p in policies.iter().filter(|p| !p.is_any()) {
            match expecting.get(p) {
                // (1)(i)
                Some(parents) => {
                    for &k in parents {
                        if !add(&mut next, p, k) {
                            return Err(too_big(cert));
                        }
                    }
                }
                // (1)(ii)
                None => {
                    if let Some(k) = any_node {
                        if !add(&mut next, p, k) {
                            return Err(too_big(cert));
                        }
                    }
                }
            }
        }
        // (2)
        if any_allowed && policies.iter().any(PolicyOid::is_any) {
            let have: HashSet<(usize, PolicyOid)> =
                next.iter().map(|n| (n.parent, n.policy.clone())).collect();
            for (k, node) in prev.iter().enumerate().filter(|(_, n)| n.alive) {
                for e in &node.expected {
                    if !have.contains(&(k, e.clone())) && !add(&mut next, e, k) {
                        return Err(too_big(cert));
                    }
                }
            }
        }
        self.charge(cost, cert)?;
        self.levels.push(next);
        // (3)
        self.prune();
        Ok(())
    }

    /// Deletes nodes above the deepest level that have no children, repeatedly, and nodes
    /// whose parent was deleted.
    fn prune(&mut self) {
        for d in 1..self.levels.len() {
            let (above, here) = self.levels.split_at_mut(d);
            let parents = &above[d - 1];
            for n in here[0].iter_mut() {
                n.alive &= parents[n.parent].alive;
            }
        }
        for d in (0..self.depth()).rev() {
            let mut has_child = vec![false; self.levels[d].len()];
            for n in self.levels[d + 1].iter().filter(|n| n.alive) {
                has_child[n.parent] = true;
            }
            for (n, c) in self.levels[d].iter_mut().zip(has_child) {
                n.alive &= c;
            }
        }
    }

    /// 6.1.4 (b): the mappings of certificate i at depth i.
    fn map(
        &mut self,
        mappings: &[(PolicyOid, PolicyOid)],
        allowed: bool,
        cert: &ParsedCert,
    ) -> Result<(), PathError> {
        // issuerDomainPolicy -> its subjectDomainPolicies, in order of appearance (by hash:
        // an attacker's certificate may hold thousands of mappings).
        let mut groups: Vec<(&PolicyOid, Vec<PolicyOid>)> = Vec::new();
        let mut group_of: HashMap<&PolicyOid, usize> = HashMap::new();
        let mut pairs: HashSet<(&PolicyOid, &PolicyOid)> = HashSet::new();
        for (i, s) in mappings {
            if !pairs.insert((i, s)) {
                continue;
            }
            match group_of.get(i) {
                Some(&g) => groups[g].1.push(s.clone()),
                None => {
                    group_of.insert(i, groups.len());
                    groups.push((i, vec![s.clone()]));
                }
            }
        }
        let d = self.depth();
        if !allowed {
            // (2)
            for n in self.levels[d].iter_mut() {
                if group_of.contains_key(&n.policy) {
                    n.alive = false;
                }
            }
            self.prune();
            return Ok(());
        }
        // (1)
        // Nodes of depth i by valid_policy, and the anyPolicy node's parent (one pass).
        let mut by_policy: HashMap<PolicyOid, Vec<usize>> = HashMap::new();
        let mut any_parent = None;
        for (k, n) in self.levels[d].iter().enumerate().filter(|(_, n)| n.alive) {
            if n.policy.is_any() {
                any_parent = Some(n.parent);
            }
            by_policy.entry(n.policy.clone()).or_default().push(k);
        }
        for (idp, sdps) in groups {
            match by_policy.get(idp) {
                Some(nodes) => {
                    for &k in nodes {
                        let grow = sdps.len().saturating_sub(self.levels[d][k].expected.len());
                        self.charge(grow, cert)?;
                        self.levels[d][k].expected = sdps.clone();
                    }
                }
                None => {
                    if let Some(parent) = any_parent {
                        self.charge(1 + sdps.len(), cert)?;
                        self.levels[d].push(Node {
                            policy: idp.clone(),
                            parent,
                            expected: sdps,
                            alive: true,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// 6.1.5 (g) (iii): the intersection with a user-initial-policy-set that is not
    /// {anyPolicy}.
    fn intersect(&mut self, set: &[PolicyOid]) {
        let n = self.depth();
        // (1)-(2): nodes whose parent is anyPolicy; those outside the set go, with their
        // subtrees.
        let mut in_node_set: HashSet<PolicyOid> = HashSet::new();
        for d in 1..=n {
            let (above, here) = self.levels.split_at_mut(d);
            let parents = &above[d - 1];
            for node in here[0].iter_mut().filter(|x| x.alive) {
                let parent = &parents[node.parent];
                if !parent.alive || !parent.policy.is_any() {
                    continue;
                }
                if node.policy.is_any() {
                    continue;
                }
                if set.contains(&node.policy) {
                    in_node_set.insert(node.policy.clone());
                } else {
                    node.alive = false;
                }
            }
        }
        self.prune();
        // (3): the anyPolicy leaf stands for each policy of the set not found above.
        let any_leaf = self.levels[n]
            .iter()
            .position(|x| x.alive && x.policy.is_any());
        if let Some(k) = any_leaf {
            let parent = self.levels[n][k].parent;
            for p in set.iter().filter(|p| !in_node_set.contains(p)) {
                self.levels[n].push(Node {
                    policy: p.clone(),
                    parent,
                    expected: vec![p.clone()],
                    alive: true,
                });
            }
            self.levels[n][k].alive = false;
        }
        // (4)
        self.prune();
    }
}

/// 6.1.4 (a): no mapping to or from anyPolicy.
fn check_mappings(cert: &ParsedCert) -> Result<(), PathError> {
    let mappings = cert.policy_exts.mappings.as_deref().unwrap_or_default();
    match mappings.iter().find(|(a, b)| a.is_any() || b.is_any()) {
        Some((a, b)) => Err(PathError::new(
            Step::Policy,
            cert.subject_string(),
            format!("policyMappings maps {a} to {b}: mapping to or from anyPolicy is not allowed"),
        )),
        None => Ok(()),
    }
}

/// Runs the policy part of RFC 5280 6.1 over `certs` (target first, as in
/// [`super::ValidatedPath::certs`]) under `inputs`.
///
/// # Errors
/// [`Step::Policy`] naming the certificate and what failed.
pub fn check(certs: &[std::sync::Arc<ParsedCert>], inputs: &PolicyInputs) -> Result<(), PathError> {
    if !inputs.initial_explicit_policy && certs.iter().all(|c| c.policy_exts.constraints.is_none())
    {
        // explicit_policy never reaches 0: only 6.1.4 (a) can refuse the path.
        for c in certs.iter().skip(1) {
            check_mappings(c)?;
        }
        return Ok(());
    }
    let n = certs.len();
    let start = |inhibit: bool| if inhibit { 0 } else { n + 1 };
    let mut explicit = start(inputs.initial_explicit_policy);
    let mut inhibit_any = start(inputs.initial_any_policy_inhibit);
    let mut mapping = start(inputs.initial_policy_mapping_inhibit);
    let mut tree = Some(Tree::new());
    for (pos, cert) in certs.iter().rev().enumerate() {
        let i = pos + 1;
        let last = i == n;
        let ext = &cert.policy_exts;
        let who = || cert.subject_string();
        // 6.1.3 (d), (e)
        match (&ext.policies, tree.as_mut()) {
            (Some(policies), Some(t)) => {
                let any_allowed = inhibit_any > 0 || (!last && cert.is_self_issued());
                t.add_level(policies, any_allowed, cert)?;
                if t.is_null() {
                    tree = None;
                }
            }
            (None, _) => tree = None,
            (Some(_), None) => {}
        }
        // (f)
        if explicit == 0 && tree.is_none() {
            return Err(PathError::new(
                Step::Policy,
                who(),
                "no certificate policy is valid for the path up to this certificate, and an explicit policy is required",
            ));
        }
        if last {
            break;
        }
        // 6.1.4 (a), (b)
        if let Some(mappings) = &ext.mappings {
            check_mappings(cert)?;
            if let Some(t) = tree.as_mut() {
                t.map(mappings, mapping > 0, cert)?;
                if t.is_null() {
                    tree = None;
                }
            }
        }
        // (h)
        if !cert.is_self_issued() {
            explicit = explicit.saturating_sub(1);
            mapping = mapping.saturating_sub(1);
            inhibit_any = inhibit_any.saturating_sub(1);
        }
        // (i)
        if let Some(pc) = &ext.constraints {
            if let Some(r) = pc.require_explicit_policy {
                explicit = explicit.min(r as usize);
            }
            if let Some(m) = pc.inhibit_policy_mapping {
                mapping = mapping.min(m as usize);
            }
        }
        // (j)
        if let Some(a) = ext.inhibit_any_policy {
            inhibit_any = inhibit_any.min(a as usize);
        }
    }
    // 6.1.5 (a), (b)
    explicit = explicit.saturating_sub(1);
    let target = &certs[0];
    if target
        .policy_exts
        .constraints
        .is_some_and(|pc| pc.require_explicit_policy == Some(0))
    {
        explicit = 0;
    }
    // (g)
    if let (Some(t), Some(set)) = (tree.as_mut(), inputs.restricted_set()) {
        t.intersect(set);
        if t.is_null() {
            tree = None;
        }
    }
    if explicit > 0 || tree.is_some() {
        return Ok(());
    }
    let wanted = match inputs.restricted_set() {
        Some(set) => set
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        None => "any policy".into(),
    };
    Err(PathError::new(
        Step::Policy,
        target.subject_string(),
        format!("an explicit certificate policy is required and the path is valid for none of: {wanted}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_text_round_trip_and_errors() {
        let o = PolicyOid::parse("2.16.840.1.101.3.2.1.48.1").expect("oid");
        assert_eq!(o.to_string(), "2.16.840.1.101.3.2.1.48.1");
        assert_eq!(
            o.as_der(),
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x02, 0x01, 0x30, 0x01]
        );
        assert!(PolicyOid::parse("2.5.29.32.0").expect("any").is_any());
        for bad in [
            "",
            "1",
            "1..2",
            "3.1",
            "1.40",
            "1.2.x",
            "01.2",
            "1.2.99999999999999999999",
        ] {
            assert!(PolicyOid::parse(bad).is_err(), "{bad}");
        }
        assert!(PolicyOid::from_der(&[0x2a, 0x80]).is_err());
        assert!(PolicyOid::from_der(&[0x80, 0x01]).is_err());
        assert!(PolicyOid::from_der(&[]).is_err());
    }

    #[test]
    fn extension_syntax_errors_are_named() {
        // Empty policyConstraints.
        let e = parse_policy_constraints(&[0x30, 0x00]).unwrap_err();
        assert!(e.contains("empty sequence"), "{e}");
        // requireExplicitPolicy 2, inhibitPolicyMapping 0.
        let pc = parse_policy_constraints(&[0x30, 0x06, 0x80, 0x01, 0x02, 0x81, 0x01, 0x00])
            .expect("pc");
        assert_eq!(pc.require_explicit_policy, Some(2));
        assert_eq!(pc.inhibit_policy_mapping, Some(0));
        // Negative SkipCerts.
        assert!(parse_inhibit_any_policy(&[0x02, 0x01, 0xff]).is_err());
        assert_eq!(parse_inhibit_any_policy(&[0x02, 0x01, 0x05]), Ok(5));
        // Empty certificatePolicies and policyMappings.
        assert!(parse_certificate_policies(&[0x30, 0x00])
            .unwrap_err()
            .contains("empty"));
        assert!(parse_policy_mappings(&[0x30, 0x00])
            .unwrap_err()
            .contains("empty"));
        // A policy twice.
        let p = [0x30, 0x04, 0x06, 0x02, 0x2a, 0x03];
        let mut twice = vec![0x30, 0x0c];
        twice.extend_from_slice(&p);
        twice.extend_from_slice(&p);
        assert!(parse_certificate_policies(&twice)
            .unwrap_err()
            .contains("twice"));
        // Truncated.
        assert!(parse_certificate_policies(&[0x30, 0x05, 0x30, 0x03, 0x06, 0x01]).is_err());
    }
}
