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
#[allow(
    clippy::indexing_slicing,
    reason = "the shard index is a hash reduced modulo the non-zero shard count"
)]
pub mod ratelimit;
pub mod rules;

pub use listener::{AccessConfig, AccessError, Granted, ListenerAccess, Refused};
pub use plan::{AccessPlan, Target};
pub use rules::{RouteConfig, RouteTable, RuleConfig, RuleSet};

use serde::Deserialize;

/// Data classification of a listener (S.E.E. 14.2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// A valid client certificate is required; the handshake fails without one.
    Sensitive,
    /// A certificate is optional; without one the client must authenticate otherwise.
    InConfidence,
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
