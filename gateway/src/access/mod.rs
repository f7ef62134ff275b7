//! Access control after the handshake: the IN CONFIDENCE password fallback (HTTP Basic,
//! argon2id password file, rate limiting), authorisation rules on certificate fields and
//! password users, and routes from path prefixes to backends.
//!
//! The request path calls [`ListenerAccess::authorize`] once per request; see its docs.

pub mod basic;
pub mod listener;
pub mod logincache;
pub mod password;
pub mod plan;
pub mod ratelimit;
pub mod rules;

pub use listener::{AccessConfig, AccessError, Granted, ListenerAccess, Refused};
pub use plan::{build_plan, AccessPlan, Target};

use std::path::Path;

use crate::config::{parse_backend, Backend, ListenerConfig};

/// Resolves the relative paths of a listener's access, route and upstream settings against
/// the config file's directory.
pub fn resolve_paths(l: &mut ListenerConfig, base: &Path) {
    l.access.resolve_paths(base);
    if let Some(u) = &mut l.upstream {
        u.resolve_paths(base);
    }
    for r in &mut l.routes {
        if let Some(u) = &mut r.upstream {
            u.resolve_paths(base);
        }
    }
}

/// Checks a listener's access, rule, route and upstream settings without touching files.
/// `Err((key, message))` names the key below `listener[i].`.
///
/// # Errors
/// A password file on a SENSITIVE or TCP listener, a bad rule, a route that is not
/// `http(s)://`, an `https://` backend without upstream settings (or upstream settings
/// without an `https://` backend), path-scoped rules or routes on a TCP listener.
pub fn validate_listener(l: &ListenerConfig) -> Result<(), (String, String)> {
    l.access.validate(l.classification)?;
    rules::RuleSet::compile(&l.rules)
        .map_err(|e| (format!("rule[{}].{}", e.index, e.key), e.message))?;
    let backend = parse_backend(&l.backend).map_err(|m| ("backend".to_string(), m))?;
    check_upstream("", &backend, l.upstream.as_ref())?;
    if matches!(backend, Backend::Tcp { .. }) {
        if l.access.password_file.is_some() {
            return Err((
                "access.password_file".into(),
                "a tcp:// listener has no HTTP, so no password fallback".into(),
            ));
        }
        if !l.routes.is_empty() {
            return Err((
                "route".into(),
                "a tcp:// listener cannot route by path".into(),
            ));
        }
        if let Some(i) = l
            .rules
            .iter()
            .position(|r| r.path.as_deref().is_some_and(|p| p != "/"))
        {
            return Err((
                format!("rule[{i}].path"),
                "a tcp:// listener has no paths; rules apply to the connection".into(),
            ));
        }
    }
    let mut paths = Vec::new();
    for (i, r) in l.routes.iter().enumerate() {
        let b = parse_backend(&r.backend).map_err(|m| (format!("route[{i}].backend"), m))?;
        if !matches!(b, Backend::Http { .. } | Backend::Https { .. }) {
            return Err((
                format!("route[{i}].backend"),
                "a route goes to http:// or https://".into(),
            ));
        }
        check_upstream(&format!("route[{i}]."), &b, r.upstream.as_ref())?;
        paths.push((r.path.clone(), ()));
    }
    rules::RouteTable::new(paths).map_err(|(i, m)| (format!("route[{i}].path"), m))?;
    Ok(())
}

fn check_upstream(
    prefix: &str,
    b: &Backend,
    u: Option<&crate::upstream::UpstreamTlsConfig>,
) -> Result<(), (String, String)> {
    match (b, u) {
        (Backend::Https { .. }, None) => Err((
            format!("{prefix}upstream"),
            "an https:// backend needs [upstream] settings with its trusted_cas".into(),
        )),
        (Backend::Https { .. }, Some(u)) => u
            .validate()
            .map_err(|(k, m)| (format!("{prefix}upstream.{k}"), m)),
        (_, Some(_)) => Err((
            format!("{prefix}upstream"),
            "upstream TLS settings only apply to an https:// backend".into(),
        )),
        (_, None) => Ok(()),
    }
}

/// Relaxations in a listener's access and upstream settings, for the start-up log.
pub fn relaxations(l: &ListenerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if l.access.password_file.is_some() {
        out.push(
            "access.password_file set: clients without a certificate may log in with a password"
                .into(),
        );
    }
    if let Some(u) = &l.upstream {
        out.extend(u.relaxations());
    }
    for (i, r) in l.routes.iter().enumerate() {
        if let Some(u) = &r.upstream {
            out.extend(
                u.relaxations()
                    .into_iter()
                    .map(|m| format!("route[{i}]: {m}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
[[listener]]
bind = "127.0.0.1:8443"
classification = "in-confidence"
backend = "http://127.0.0.1:8080"
server_cert = "s.pem"
server_key = "s.key"
trusted_cas = ["ca.pem"]
"#;

    #[test]
    fn documented_example_parses() {
        let text = format!(
            r#"{BASE}
[listener.access]
password_file = "users.passwd"
realm = "Intranet"

[[listener.route]]
path = "/billing"
backend = "https://billing.internal:8443"
[listener.route.upstream]
trusted_cas = ["backend-ca.pem"]
client_cert = "gw-client.pem"
client_key = "gw-client.key"

[[listener.rule]]
path = "/admin"
action = "allow"
ou = ["Platform"]

[[listener.rule]]
path = "/admin"
action = "deny"
reason = "administrators only"

[[listener.rule]]
action = "allow"
group = ["staff"]
"#
        );
        let c = Config::parse(&text).expect("parses");
        let l = &c.listeners[0];
        assert_eq!(l.rules.len(), 3);
        assert_eq!(l.routes.len(), 1);
        assert!(c.relaxations().iter().any(|r| r.contains("password")));
    }

    #[test]
    fn bad_access_settings_name_the_key() {
        let cases = [
            (
                BASE.replace("in-confidence", "sensitive")
                    + "[listener.access]\npassword_file = \"u\"\n",
                "listener[0].access.password_file",
            ),
            (
                format!("{BASE}[[listener.rule]]\naction = \"permit\"\n"),
                "action",
            ),
            (
                format!("{BASE}[[listener.rule]]\naction = \"allow\"\npath = \"x\"\n"),
                "listener[0].rule[0].path",
            ),
            (
                BASE.replace("http://127.0.0.1:8080", "https://b:8443"),
                "listener[0].upstream",
            ),
            (
                format!("{BASE}[[listener.route]]\npath = \"/a\"\nbackend = \"tcp://b:1\"\n"),
                "listener[0].route[0].backend",
            ),
            (
                BASE.replace("http://127.0.0.1:8080", "tcp://127.0.0.1:5432")
                    + "[listener.access]\npassword_file = \"u\"\n",
                "listener[0].access.password_file",
            ),
        ];
        for (text, needle) in cases {
            let e = Config::parse(&text).expect_err("rejected").to_string();
            assert!(e.contains(needle), "{e:?} should name {needle:?}");
        }
    }
}
