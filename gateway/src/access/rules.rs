//! Authorisation rules on certificate fields and password users (S.E.E. 14.2.18), and
//! routes from path prefixes to backends.
//!
//! # Semantics
//!
//! * Rules are read in file order; only rules whose `path` prefix covers the request path
//!   take part. The **first** rule whose conditions all hold decides (`allow` or `deny`).
//! * Within a rule every condition key given must hold (AND); a key with several values
//!   holds if any value matches (OR). A rule with no condition matches everyone.
//! * Certificate conditions (`cn`, `ou`, `o`, `c`, `san_email`, `san_dns`, `san_uri`,
//!   `issuer`, `policy`, `serial`) never match a password user; `user` and `group` never
//!   match a certificate. `auth = "certificate" | "password"` restricts a rule explicitly.
//! * A listener without rules allows every authenticated client. Once it has a rule,
//!   anything no rule allowed is denied (default deny).
//! * Path prefixes match whole segments: `/admin` covers `/admin` and `/admin/x`, not
//!   `/administrator`. Rules and routes match the request's canonical path
//!   ([`crate::path`]: unreserved escapes decoded, `//` merged, `.` and `..`
//!   resolved, ambiguous input refused before any rule runs), so `/%61dmin` is `/admin`; the
//!   backend receives exactly that canonical path. With `[listener.paths] case_insensitive`,
//!   prefixes compare ignoring ASCII case.
//! * Values compare case-insensitively, except `user`, `group` and `san_uri`. A value that
//!   starts with `*` matches by suffix (`*@example.org`, `*.example.org`). Serials are hex,
//!   `:` separators and leading zeros ignored. Issuer DNs are RFC 4514 strings, most
//!   specific first (`CN=Example CA,O=Example,C=NZ`), spaces after `,` ignored.

use serde::Deserialize;

use crate::access::password::PasswordUser;
use crate::path::{canonicalize, CanonicalPath, PathOptions};
use crate::pki::identity::CertIdentity;

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Refuse it with 403.
    Deny,
}

/// Restricts a rule to one way of authenticating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// Clients authenticated by certificate.
    Certificate,
    /// Clients authenticated by password.
    Password,
}

/// One `[[listener.rule]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A name for logs (default `rule[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix the rule applies to (default `/`, everything).
    #[serde(default)]
    pub path: Option<String>,
    /// `allow` or `deny`.
    pub action: Option<Action>,
    /// Only clients authenticated this way.
    #[serde(default)]
    pub auth: Option<AuthKind>,
    /// Subject common name.
    #[serde(default)]
    pub cn: Vec<String>,
    /// Subject organisational unit.
    #[serde(default)]
    pub ou: Vec<String>,
    /// Subject organisation.
    #[serde(default)]
    pub o: Vec<String>,
    /// Subject country.
    #[serde(default)]
    pub c: Vec<String>,
    /// rfc822Name subject alternative names.
    #[serde(default)]
    pub san_email: Vec<String>,
    /// dNSName subject alternative names.
    #[serde(default)]
    pub san_dns: Vec<String>,
    /// URI subject alternative names.
    #[serde(default)]
    pub san_uri: Vec<String>,
    /// Issuer DN, RFC 4514.
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Certificate policy OIDs, dotted.
    #[serde(default)]
    pub policy: Vec<String>,
    /// Serial numbers, hex.
    #[serde(default)]
    pub serial: Vec<String>,
    /// Password user names.
    #[serde(default)]
    pub user: Vec<String>,
    /// Password user groups.
    #[serde(default)]
    pub group: Vec<String>,
    /// Short reason sent to the client in the 403 body when this rule denies.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One `[[listener.route]]`: requests under `path` go to `backend`.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix (whole segments, like rules).
    pub path: String,
    /// `http://host:port` or `https://host:port` (upstream TLS, see `upstream`).
    pub backend: String,
    /// TLS settings for an `https://` backend.
    #[serde(default)]
    pub upstream: Option<crate::upstream::UpstreamTlsConfig>,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A client with a verified certificate.
    Certificate(&'a CertIdentity),
    /// A client whose Basic credentials were verified.
    Password(&'a PasswordUser),
}

impl Principal<'_> {
    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            Principal::Certificate(id) => {
                format!(
                    "certificate subject={:?} issuer={:?} serial={}",
                    id.subject, id.issuer, id.serial_hex
                )
            }
            Principal::Password(u) => format!("password user={:?} groups={:?}", u.name, u.groups),
        }
    }
}

/// The outcome of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `rule` names the deciding rule (None: the listener has no rules).
    Allow {
        /// The deciding rule's name.
        rule: Option<String>,
    },
    /// Denied: answer 403 with `client_reason`, log `log_reason`.
    Deny {
        /// Short text for the 403 body.
        client_reason: String,
        /// Full text for the log: rule, path and principal.
        log_reason: String,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A rule that cannot be compiled; `index` is its position in `[[listener.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule[{index}].{key}: {message}")]
pub struct RuleError {
    /// Position of the rule.
    pub index: usize,
    /// The key at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    suffix: bool,
    fold_case: bool,
}

impl Pattern {
    fn new(s: &str, fold_case: bool) -> Self {
        let (text, suffix) = match s.strip_prefix('*') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        Pattern {
            text: if fold_case {
                text.to_lowercase()
            } else {
                text.to_string()
            },
            suffix,
            fold_case,
        }
    }

    fn matches(&self, value: &str) -> bool {
        let v = if self.fold_case {
            std::borrow::Cow::Owned(value.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(value)
        };
        if self.suffix {
            v.ends_with(&self.text)
        } else {
            *v == self.text
        }
    }
}

fn any(patterns: &[Pattern], mut values: impl Iterator<Item = String>) -> bool {
    values.any(|v| patterns.iter().any(|p| p.matches(&v)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Cn,
    Ou,
    O,
    C,
    SanEmail,
    SanDns,
    SanUri,
    Issuer,
    Policy,
    Serial,
    User,
    Group,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Cn => "cn",
            Field::Ou => "ou",
            Field::O => "o",
            Field::C => "c",
            Field::SanEmail => "san_email",
            Field::SanDns => "san_dns",
            Field::SanUri => "san_uri",
            Field::Issuer => "issuer",
            Field::Policy => "policy",
            Field::Serial => "serial",
            Field::User => "user",
            Field::Group => "group",
        }
    }

    fn is_cert(self) -> bool {
        !matches!(self, Field::User | Field::Group)
    }
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    path: String,
    action: Action,
    auth: Option<AuthKind>,
    conds: Vec<(Field, Vec<Pattern>)>,
    reason: Option<String>,
}

/// The compiled rules of a listener.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let t = hex.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

fn normalize_dn(s: &str) -> String {
    // Splitting on every ',' is safe for comparison: both sides are split the same way.
    s.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Compiles a configured rule or route prefix into the canonical form requests are matched
/// in (the operator's text is trusted: every spelling the normaliser can produce is allowed).
fn validate_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    canonicalize(p, &PathOptions::PERMISSIVE)
        .map(CanonicalPath::into_string)
        .map_err(|e| format!("{p:?} is not a valid path: {e}"))
}

impl RuleSet {
    /// Compiles `[[listener.rule]]` entries.
    ///
    /// # Errors
    /// [`RuleError`] for a missing `action`, a path not starting with `/`, a malformed
    /// policy OID or serial, or a rule mixing certificate and password conditions (it could
    /// never match).
    pub fn compile(rules: &[RuleConfig]) -> Result<Self, RuleError> {
        let mut out = Vec::with_capacity(rules.len());
        for (index, r) in rules.iter().enumerate() {
            let err = |key: &str, message: String| RuleError {
                index,
                key: key.to_string(),
                message,
            };
            let action = r
                .action
                .ok_or_else(|| err("action", "missing; use \"allow\" or \"deny\"".into()))?;
            let path =
                validate_path(r.path.as_deref().unwrap_or("/")).map_err(|m| err("path", m))?;
            let fields: [(Field, &Vec<String>); 12] = [
                (Field::Cn, &r.cn),
                (Field::Ou, &r.ou),
                (Field::O, &r.o),
                (Field::C, &r.c),
                (Field::SanEmail, &r.san_email),
                (Field::SanDns, &r.san_dns),
                (Field::SanUri, &r.san_uri),
                (Field::Issuer, &r.issuer),
                (Field::Policy, &r.policy),
                (Field::Serial, &r.serial),
                (Field::User, &r.user),
                (Field::Group, &r.group),
            ];
            let mut conds = Vec::new();
            for (f, values) in fields {
                if values.is_empty() {
                    continue;
                }
                let mut pats = Vec::with_capacity(values.len());
                for v in values {
                    if v.is_empty() || v == "*" {
                        return Err(err(
                            f.key(),
                            format!(
                                "{v:?} matches nothing useful; remove the key to match everyone"
                            ),
                        ));
                    }
                    let p = match f {
                        Field::Policy => {
                            let ok = v.split('.').count() >= 2
                                && v.split('.').all(|a| {
                                    !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit())
                                });
                            if !ok {
                                return Err(err(
                                    "policy",
                                    format!("{v:?} is not a dotted OID like 1.3.6.1.4.1.99999.1"),
                                ));
                            }
                            Pattern::new(v, false)
                        }
                        Field::Serial => {
                            let n = normalize_serial(v);
                            if !n.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return Err(err("serial", format!("{v:?} is not hex")));
                            }
                            Pattern::new(&n, false)
                        }
                        Field::Issuer => Pattern::new(&normalize_dn(v), false),
                        Field::User | Field::Group | Field::SanUri => Pattern::new(v, false),
                        _ => Pattern::new(v, true),
                    };
                    pats.push(p);
                }
                conds.push((f, pats));
            }
            let has_cert = conds.iter().any(|(f, _)| f.is_cert());
            let has_pw = conds.iter().any(|(f, _)| !f.is_cert());
            if has_cert && has_pw {
                return Err(err(
                    "user",
                    "a rule cannot mix certificate fields with user/group; write two rules".into(),
                ));
            }
            if (has_cert && r.auth == Some(AuthKind::Password))
                || (has_pw && r.auth == Some(AuthKind::Certificate))
            {
                return Err(err(
                    "auth",
                    "contradicts the rule's conditions; it could never match".into(),
                ));
            }
            out.push(Rule {
                name: r.name.clone().unwrap_or_else(|| format!("rule[{index}]")),
                path,
                action,
                auth: r.auth,
                conds,
                reason: r.reason.clone(),
            });
        }
        Ok(RuleSet { rules: out })
    }

    /// Whether the listener has any rule (then the default is deny).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides a request for the canonical `path` by `who`.
    pub fn evaluate(&self, who: Principal<'_>, path: &CanonicalPath) -> Decision {
        if self.rules.is_empty() {
            return Decision::Allow { rule: None };
        }
        let norm = path.as_str();
        for r in &self.rules {
            if !path.covered_by(&r.path) || !r.matches(who) {
                continue;
            }
            return match r.action {
                Action::Allow => Decision::Allow {
                    rule: Some(r.name.clone()),
                },
                Action::Deny => Decision::Deny {
                    client_reason: r
                        .reason
                        .clone()
                        .unwrap_or_else(|| "access denied by policy".into()),
                    log_reason: format!(
                        "{} (deny, path {}) matched {norm:?}: {}",
                        r.name,
                        r.path,
                        who.describe()
                    ),
                },
            };
        }
        Decision::Deny {
            client_reason: "access denied by policy".into(),
            log_reason: format!("no rule allows {norm:?} (default deny): {}", who.describe()),
        }
    }
}

impl Rule {
    fn matches(&self, who: Principal<'_>) -> bool {
        match (self.auth, who) {
            (Some(AuthKind::Certificate), Principal::Password(_))
            | (Some(AuthKind::Password), Principal::Certificate(_)) => return false,
            _ => {}
        }
        self.conds.iter().all(|(f, pats)| match who {
            Principal::Certificate(id) => f.is_cert() && cert_field(id, *f, pats),
            Principal::Password(u) => match f {
                Field::User => pats.iter().any(|p| p.matches(&u.name)),
                Field::Group => any(pats, u.groups.iter().cloned()),
                _ => false,
            },
        })
    }
}

fn cert_field(id: &CertIdentity, f: Field, pats: &[Pattern]) -> bool {
    let attrs = |name: &'static str| {
        id.subject_attrs
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let sans = |prefix: &'static str| {
        id.sans
            .iter()
            .filter_map(move |s| s.strip_prefix(prefix).map(str::to_string))
    };
    match f {
        Field::Cn => any(pats, attrs("CN")),
        Field::Ou => any(pats, attrs("OU")),
        Field::O => any(pats, attrs("O")),
        Field::C => any(pats, attrs("C")),
        Field::SanEmail => any(pats, sans("email:")),
        Field::SanDns => any(pats, sans("DNS:")),
        Field::SanUri => any(pats, sans("URI:")),
        Field::Issuer => any(pats, std::iter::once(normalize_dn(&id.issuer))),
        Field::Policy => any(pats, id.policies.iter().cloned()),
        Field::Serial => any(pats, std::iter::once(normalize_serial(&id.serial_hex))),
        Field::User | Field::Group => false,
    }
}

/// Routes compiled from `[[listener.route]]`: the longest covering prefix wins.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(String, T)>,
}

impl<T> RouteTable<T> {
    /// Builds a table from `(path, target)` pairs.
    ///
    /// # Errors
    /// `(index, message)` for a path that does not start with `/` or appears twice.
    pub fn new(routes: Vec<(String, T)>) -> Result<Self, (usize, String)> {
        let mut out: Vec<(String, T)> = Vec::with_capacity(routes.len());
        for (i, (p, t)) in routes.into_iter().enumerate() {
            let n = validate_path(&p).map_err(|m| (i, m))?;
            let n = if n.len() > 1 {
                n.trim_end_matches('/').to_string()
            } else {
                n
            };
            if out.iter().any(|(q, _)| *q == n) {
                return Err((i, format!("path {p:?} is routed twice")));
            }
            out.push((n, t));
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Ok(RouteTable { routes: out })
    }

    /// The targets, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.routes.iter().map(|(_, t)| t)
    }

    /// The target for a canonical request path, or `None` (use the listener's backend).
    pub fn select(&self, path: &CanonicalPath) -> Option<&T> {
        self.routes
            .iter()
            .find(|(p, _)| path.covered_by(p))
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(p: &str) -> CanonicalPath {
        canonicalize(p, &PathOptions::STRICT).expect("canonical test path")
    }

    fn ident(ou: &str, email: &str, policy: &str) -> CertIdentity {
        CertIdentity {
            subject: format!("CN=alice,OU={ou},O=Example,C=NZ"),
            issuer: "CN=Example CA,O=Example,C=NZ".into(),
            serial_hex: "00a1b2".into(),
            fingerprint_sha256: String::new(),
            sans: vec![format!("email:{email}"), "DNS:alice.example.org".into()],
            subject_attrs: vec![
                ("C".into(), "NZ".into()),
                ("O".into(), "Example".into()),
                ("OU".into(), ou.into()),
                ("CN".into(), "alice".into()),
            ],
            policies: vec![policy.into()],
            not_before: String::new(),
            not_after: String::new(),
        }
    }

    fn rules(toml_text: &str) -> RuleSet {
        #[derive(Deserialize)]
        struct W {
            rule: Vec<RuleConfig>,
        }
        let w: W = toml::from_str(toml_text).expect("toml");
        RuleSet::compile(&w.rule).expect("compiles")
    }

    const POLICY: &str = r#"
[[rule]]
path = "/admin"
action = "allow"
ou = ["Platform"]
[[rule]]
path = "/admin"
action = "deny"
reason = "administrators only"
[[rule]]
path = "/mail"
action = "allow"
san_email = ["*@example.org"]
[[rule]]
action = "allow"
policy = ["1.3.6.1.4.1.99999.1.1"]
[[rule]]
action = "allow"
group = ["staff"]
"#;

    #[test]
    fn allow_and_deny_by_ou() {
        let rs = rules(POLICY);
        let ops = ident("Platform", "a@example.org", "1.3.6.1.4.1.99999.1.1");
        let sales = ident("Sales", "a@example.org", "1.3.6.1.4.1.99999.1.1");
        assert!(rs
            .evaluate(Principal::Certificate(&ops), &cp("/admin/users"))
            .is_allowed());
        assert!(
            rs.evaluate(
                Principal::Certificate(&ident("platform", "x@y", "1.2")),
                &cp("/admin")
            )
            .is_allowed(),
            "OU is case-insensitive"
        );
        match rs.evaluate(Principal::Certificate(&sales), &cp("/admin/users")) {
            Decision::Deny {
                client_reason,
                log_reason,
            } => {
                assert_eq!(client_reason, "administrators only");
                assert!(
                    log_reason.contains("rule[1]") && log_reason.contains("OU=Sales"),
                    "{log_reason}"
                );
            }
            d => panic!("expected deny, got {d:?}"),
        }
        // Encoded and dotted paths cannot sneak past the prefix.
        assert!(!rs
            .evaluate(Principal::Certificate(&sales), &cp("/%61dmin/users"))
            .is_allowed());
        assert!(!rs
            .evaluate(Principal::Certificate(&sales), &cp("/x/../admin"))
            .is_allowed());
        assert!(!rs
            .evaluate(Principal::Certificate(&sales), &cp("//admin"))
            .is_allowed());
    }

    #[test]
    fn allow_by_san_email_and_default_deny() {
        let rs = rules(POLICY);
        let good = ident("Sales", "bob@EXAMPLE.org", "1.2.3");
        let bad = ident("Sales", "bob@example.com", "1.2.3");
        assert!(rs
            .evaluate(Principal::Certificate(&good), &cp("/mail/inbox"))
            .is_allowed());
        let d = rs.evaluate(Principal::Certificate(&bad), &cp("/mail/inbox"));
        assert!(
            matches!(&d, Decision::Deny { log_reason, .. } if log_reason.contains("default deny")),
            "{d:?}"
        );
        assert!(
            !rs.evaluate(Principal::Certificate(&good), &cp("/mailbox"))
                .is_allowed(),
            "whole segments only"
        );
    }

    #[test]
    fn allow_by_policy_oid() {
        let rs = rules(POLICY);
        assert!(rs
            .evaluate(
                Principal::Certificate(&ident("Sales", "x@y", "1.3.6.1.4.1.99999.1.1")),
                &cp("/app")
            )
            .is_allowed());
        assert!(!rs
            .evaluate(
                Principal::Certificate(&ident("Sales", "x@y", "1.3.6.1.4.1.99999.1.2")),
                &cp("/app")
            )
            .is_allowed());
        assert!(!rs
            .evaluate(
                Principal::Certificate(&ident("Sales", "x@y", "1.3.6.1.4.1.99999.1.10")),
                &cp("/app")
            )
            .is_allowed());
    }

    #[test]
    fn password_users_by_group_and_name() {
        let rs = rules(POLICY);
        let staff = PasswordUser {
            name: "carol".into(),
            groups: vec!["staff".into()],
        };
        let guest = PasswordUser {
            name: "dave".into(),
            groups: vec![],
        };
        assert!(rs
            .evaluate(Principal::Password(&staff), &cp("/app"))
            .is_allowed());
        assert!(!rs
            .evaluate(Principal::Password(&guest), &cp("/app"))
            .is_allowed());
        // Certificate rules never match password users, even a catch-all-looking OU rule.
        assert!(!rs
            .evaluate(Principal::Password(&staff), &cp("/admin"))
            .is_allowed());
        let by_name = rules("[[rule]]\naction = \"allow\"\nuser = [\"dave\"]\n");
        assert!(by_name
            .evaluate(Principal::Password(&guest), &cp("/"))
            .is_allowed());
        assert!(!by_name
            .evaluate(
                Principal::Certificate(&ident("dave", "dave@x", "1.2")),
                &cp("/")
            )
            .is_allowed());
    }

    #[test]
    fn issuer_serial_and_auth_kind() {
        let rs = rules(
            "[[rule]]\naction = \"allow\"\nissuer = [\"CN=Example CA, O=Example, C=NZ\"]\nserial = [\"A1:B2\"]\n\
             [[rule]]\naction = \"allow\"\nauth = \"password\"\n",
        );
        let id = ident("x", "x@y", "1.2");
        assert!(rs
            .evaluate(Principal::Certificate(&id), &cp("/"))
            .is_allowed());
        let mut other = id.clone();
        other.serial_hex = "a1b3".into();
        assert!(!rs
            .evaluate(Principal::Certificate(&other), &cp("/"))
            .is_allowed());
        let u = PasswordUser {
            name: "e".into(),
            groups: vec![],
        };
        assert!(rs.evaluate(Principal::Password(&u), &cp("/")).is_allowed());
    }

    #[test]
    fn no_rules_allows_and_bad_rules_are_named() {
        let id = ident("x", "x@y", "1.2");
        assert!(RuleSet::default()
            .evaluate(Principal::Certificate(&id), &cp("/"))
            .is_allowed());
        let bad = [
            (
                RuleConfig {
                    action: None,
                    ..Default::default()
                },
                "action",
            ),
            (
                RuleConfig {
                    action: Some(Action::Allow),
                    path: Some("admin".into()),
                    ..Default::default()
                },
                "path",
            ),
            (
                RuleConfig {
                    action: Some(Action::Allow),
                    policy: vec!["1.2.x".into()],
                    ..Default::default()
                },
                "policy",
            ),
            (
                RuleConfig {
                    action: Some(Action::Allow),
                    ou: vec!["A".into()],
                    user: vec!["b".into()],
                    ..Default::default()
                },
                "user",
            ),
        ];
        for (r, key) in bad {
            let e = RuleSet::compile(&[r]).expect_err("rejected");
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn routes_longest_prefix() {
        let t = RouteTable::new(vec![
            ("/".into(), 0),
            ("/api".into(), 1),
            ("/api/v2/".into(), 2),
        ])
        .expect("ok");
        assert_eq!(t.select(&cp("/api/v2/x")), Some(&2));
        assert_eq!(t.select(&cp("/api/v1")), Some(&1));
        assert_eq!(t.select(&cp("/apix")), Some(&0));
        assert!(RouteTable::new(vec![("/a".into(), 0), ("/a/".into(), 1)]).is_err());
    }
}
