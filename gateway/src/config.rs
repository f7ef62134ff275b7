//! The gateway's TOML configuration: schema, defaults (the strict policy) and validation.
//!
//! Every relaxation of the S.E.E. policy is an explicit key here and is logged at start-up
//! (see [`Config::relaxations`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::access::Classification;
use crate::access::{AccessConfig, RouteConfig, RuleConfig};
use crate::path::PathOptions;
pub use crate::pki::policy_config::PkiConfig;
use crate::proxy::headers::ForwardingConfig;
use crate::revocation::RevocationConfig;
use crate::steering::SteeringConfig;
pub use crate::tls::TlsConfig;
use crate::upstream::{parse_backend, Backend, UpstreamTlsConfig};

/// Errors found while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the parser said, naming the key.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `listener[0].tls.cipher_suites`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration file.
///
/// Every type in it derives `serde::Serialize` too: the admin listener's `/config` shows the
/// effective configuration (defaults filled in, secrets redacted).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub global: GlobalConfig,
    /// Kernel connection steering (XDP / reuseport programs).
    #[serde(default)]
    pub steering: SteeringConfig,
    /// One or more TLS listeners.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/config`); off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The audit log (one JSON line per authentication decision); off when absent.
    #[serde(default)]
    pub audit: Option<crate::audit::AuditConfig>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    /// Number of worker threads; 0 means one per CPU in the process's affinity mask.
    pub workers: usize,
    /// Pin each worker thread to its CPU.
    pub pin_workers: bool,
    /// Crypto provider: `aws-lc-rs` (default when compiled in) or `ring`.
    pub crypto_provider: String,
    /// Seconds to drain in-flight requests on SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Seconds between metrics log lines (0 = off).
    pub metrics_interval_secs: u64,
    /// User to switch to after binding, attaching eBPF and reading keys (`gateway serve`);
    /// every capability is dropped too. Required when started as root unless `allow_root`.
    pub user: Option<String>,
    /// Group to switch to (default: the user's primary group).
    pub group: Option<String>,
    /// Keep uid 0 after start-up when started as root without `user` (relaxation, logged;
    /// capabilities are dropped all the same).
    pub allow_root: bool,
    /// Session-ticket key file shared by a fleet (see [`crate::tls::tickets`]); `None`: a
    /// random key per process (and per reload).
    pub ticket_keys: Option<PathBuf>,
    /// Lifetime hint of the tickets issued, in seconds (at most 7 days, RFC 8446).
    pub ticket_lifetime_secs: u32,
}

impl GlobalConfig {
    /// The privilege settings of `gateway serve`.
    pub fn privileges(&self) -> crate::privileges::PrivilegeConfig {
        crate::privileges::PrivilegeConfig {
            user: self.user.clone(),
            group: self.group.clone(),
            allow_root: self.allow_root,
        }
    }
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            workers: 0,
            pin_workers: true,
            crypto_provider: crate::tls::policy::DEFAULT_PROVIDER.into(),
            shutdown_grace_secs: 10,
            metrics_interval_secs: 60,
            user: None,
            group: None,
            allow_root: false,
            ticket_keys: None,
            ticket_lifetime_secs: 6 * 3600,
        }
    }
}

/// One TLS listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name used in logs and metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Address to listen on, e.g. `0.0.0.0:443` or `[::]:443`.
    pub bind: String,
    /// `sensitive` (default) or `in-confidence`.
    #[serde(default = "default_classification")]
    pub classification: Classification,
    /// `http://host:port` or `builtin:identity`.
    pub backend: String,
    /// PEM file with the server certificate chain (leaf first).
    pub server_cert: PathBuf,
    /// PEM file with the server private key (PKCS#8, SEC1 or PKCS#1).
    pub server_key: PathBuf,
    /// PEM bundle files and/or directories of PEM files with the trusted client CAs.
    pub trusted_cas: Vec<PathBuf>,
    /// TLS parameters.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Certificate status checking.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Certificate policies client paths must be valid for: `[listener.pki]`.
    #[serde(default)]
    pub pki: PkiConfig,
    /// Password fallback (IN CONFIDENCE only) and its rate limits: `[listener.access]`.
    #[serde(default)]
    pub access: AccessConfig,
    /// Authorisation rules, first match wins, default deny once any exists:
    /// `[[listener.rule]]`.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Path prefixes routed to other backends: `[[listener.route]]`.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// TLS settings when `backend` is `https://`: `[listener.upstream]`.
    #[serde(default)]
    pub upstream: Option<UpstreamTlsConfig>,
    /// Request path canonicalisation: `[listener.paths]` (strict by default).
    #[serde(default)]
    pub paths: PathOptions,
    /// Trusted proxies for forwarding headers: `[listener.forwarding]` (none by default).
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    /// Connection and request deadlines and caps: `[listener.limits]`.
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
}

fn default_classification() -> Classification {
    Classification::Sensitive
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// Relative paths in the file are resolved against the file's directory.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file or key and what is wrong.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses configuration text (paths are left as written).
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] or [`ConfigError::Invalid`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        cfg.validate_shape()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut self.global.ticket_keys {
            fix(p);
        }
        if let Some(a) = &mut self.admin {
            a.resolve_paths(base);
        }
        if let Some(a) = &mut self.audit {
            a.resolve_paths(base);
        }
        for l in &mut self.listeners {
            fix(&mut l.server_cert);
            fix(&mut l.server_key);
            l.trusted_cas.iter_mut().for_each(fix);
            l.revocation.resolve_paths(base);
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
    }

    /// Checks what can be checked without touching files.
    fn validate_shape(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::invalid(
                "listener",
                "at least one [[listener]] is required",
            ));
        }
        match self.global.crypto_provider.as_str() {
            "aws-lc-rs" | "ring" => {}
            other => {
                return Err(ConfigError::invalid(
                    "global.crypto_provider",
                    format!("unknown provider {other:?}; use \"aws-lc-rs\" or \"ring\""),
                ))
            }
        }
        self.global.privileges().validate().map_err(|e| {
            let key = match e {
                crate::privileges::PrivilegeError::NoGroup(_) => "global.group",
                _ => "global.user",
            };
            ConfigError::invalid(key, e.to_string())
        })?;
        if !(1..=604_800).contains(&self.global.ticket_lifetime_secs) {
            return Err(ConfigError::invalid(
                "global.ticket_lifetime_secs",
                format!(
                    "{} is out of range: 1 to 604800 seconds (7 days)",
                    self.global.ticket_lifetime_secs
                ),
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listener[{i}].{k}");
            l.bind_addr()
                .map_err(|m| ConfigError::invalid(key("bind"), m))?;
            l.backend()
                .map_err(|m| ConfigError::invalid(key("backend"), m))?;
            l.validate_access()
                .map_err(|(k, m)| ConfigError::invalid(key(&k), m))?;
            if l.trusted_cas.is_empty() {
                return Err(ConfigError::invalid(
                    key("trusted_cas"),
                    "at least one trusted CA file or directory is required",
                ));
            }
            if l.tls.min_rsa_bits < 2048 {
                return Err(ConfigError::invalid(
                    key("tls.min_rsa_bits"),
                    format!("{} is below the policy floor of 2048", l.tls.min_rsa_bits),
                ));
            }
            if l.tls.session_resumption
                && !(1..=crate::tls::server::MAX_TLS13_TICKETS).contains(&l.tls.tls13_tickets)
            {
                return Err(ConfigError::invalid(
                    key("tls.tls13_tickets"),
                    format!(
                        "{} tickets per handshake: must be 1 to {} (to send none, set session_resumption = false)",
                        l.tls.tls13_tickets,
                        crate::tls::server::MAX_TLS13_TICKETS
                    ),
                ));
            }
            l.limits
                .validate()
                .map_err(|(k, m)| ConfigError::invalid(key(&format!("limits.{k}")), m))?;
            l.revocation
                .validate()
                .map_err(|(k, m)| ConfigError::invalid(key(&format!("revocation.{k}")), m))?;
            l.pki
                .validate()
                .map_err(|(k, m)| ConfigError::invalid(key(&format!("pki.{k}")), m))?;
        }
        self.steering
            .validate()
            .map_err(|(k, m)| ConfigError::invalid(format!("steering.{k}"), m))?;
        if let Some(a) = &self.admin {
            a.validate()
                .map_err(|(k, m)| ConfigError::invalid(format!("admin.{k}"), m))?;
        }
        if let Some(a) = &self.audit {
            a.validate()
                .map_err(|(k, m)| ConfigError::invalid(format!("audit.{k}"), m))?;
        }
        Ok(())
    }

    /// Human-readable list of every relaxation of the strict policy in this config; each is
    /// logged as a warning at start-up.
    pub fn relaxations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(a) = &self.admin {
            out.extend(a.relaxations());
        }
        if self.global.allow_root {
            out.push(
                "global.allow_root = true: when started as root without global.user, the process keeps uid 0 after start-up (capabilities are still dropped)"
                    .to_string(),
            );
        }
        for l in &self.listeners {
            let name = l.display_name();
            if l.classification == Classification::InConfidence {
                out.push(format!(
                    "listener {name}: classification in-confidence: client certificate optional"
                ));
            }
            if !l.tls.require_client_auth_eku {
                out.push(format!(
                    "listener {name}: tls.require_client_auth_eku = false: certificates without the clientAuth EKU accepted"
                ));
            }
            if l.tls.cipher_suites.iter().any(|s| s.contains("CHACHA20")) {
                out.push(format!(
                    "listener {name}: ChaCha20-Poly1305 suites enabled (not AES-GCM)"
                ));
            }
            out.extend(
                l.limits
                    .relaxations()
                    .into_iter()
                    .map(|r| format!("listener {name}: {r}")),
            );
            out.extend(
                l.forwarding
                    .relaxations()
                    .into_iter()
                    .map(|r| format!("listener {name}: {r}")),
            );
            out.extend(
                l.paths
                    .relaxations()
                    .into_iter()
                    .map(|r| format!("listener {name}: {r}")),
            );
            out.extend(
                l.access_relaxations()
                    .into_iter()
                    .map(|r| format!("listener {name}: {r}")),
            );
            out.extend(
                l.revocation
                    .relaxations()
                    .into_iter()
                    .map(|r| format!("listener {name}: {r}")),
            );
        }
        out
    }
}

impl ListenerConfig {
    /// The listener's name for logs: its `name` or its bind address.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.bind.clone())
    }

    /// The parsed bind address.
    ///
    /// # Errors
    /// A message saying what is wrong with `bind`.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        self.bind
            .parse()
            .map_err(|e| format!("{:?} is not an IP:port socket address ({e})", self.bind))
    }

    /// The parsed backend.
    ///
    /// # Errors
    /// A message saying what is wrong with `backend`.
    pub fn backend(&self) -> Result<Backend, String> {
        parse_backend(&self.backend)
    }

    /// Checks the listener's access, rule, route and upstream settings without touching
    /// files. `Err((key, message))` names the key below `listener[i].`.
    ///
    /// A password file on a SENSITIVE or TCP listener, a bad rule, a route that is not
    /// `http(s)://`, an `https://` backend without upstream settings (or upstream settings
    /// without an `https://` backend), path-scoped rules or routes on a TCP listener are
    /// refused.
    fn validate_access(&self) -> Result<(), (String, String)> {
        let l = self;
        l.access.validate(l.classification)?;
        crate::access::RuleSet::compile(&l.rules)
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
        crate::access::RouteTable::new(paths).map_err(|(i, m)| (format!("route[{i}].path"), m))?;
        Ok(())
    }

    /// Relaxations in the listener's access and upstream settings, for the start-up log.
    fn access_relaxations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.access.password_file.is_some() {
            out.push(
                "access.password_file set: clients without a certificate may log in with a password"
                    .into(),
            );
        }
        if let Some(u) = &self.upstream {
            out.extend(u.relaxations());
        }
        for (i, r) in self.routes.iter().enumerate() {
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
}

fn check_upstream(
    prefix: &str,
    b: &Backend,
    u: Option<&UpstreamTlsConfig>,
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

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Not loopback: a relaxation (logged); use `[admin.tls]` then.
    pub bind: String,
    /// Mutual TLS for the admin listener.
    #[serde(default)]
    pub tls: Option<AdminTlsConfig>,
}

/// `[admin.tls]`: the admin listener's own certificate and the CA its clients must chain to.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// PEM chain, leaf first.
    pub server_cert: PathBuf,
    /// PEM private key.
    pub server_key: PathBuf,
    /// PEM files (or directories) of the CAs admin clients' certificates must chain to.
    pub client_cas: Vec<PathBuf>,
}

impl AdminConfig {
    /// The parsed bind address.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        self.bind
            .parse()
            .map_err(|e| format!("{:?} is not an IP:port socket address ({e})", self.bind))
    }

    /// Checks the shape (address parses, TLS lists a CA).
    ///
    /// # Errors
    /// `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.bind_addr().map_err(|m| ("bind".to_string(), m))?;
        if let Some(t) = &self.tls {
            if t.client_cas.is_empty() {
                return Err((
                    "tls.client_cas".into(),
                    "at least one CA for admin clients is required".into(),
                ));
            }
        }
        Ok(())
    }

    /// Relaxations: a non-loopback bind (without or with mTLS).
    pub fn relaxations(&self) -> Vec<String> {
        match self.bind_addr() {
            Ok(a) if !a.ip().is_loopback() => vec![format!(
                "admin.bind = {:?} is not loopback: metrics and configuration reachable from the network{}",
                self.bind,
                if self.tls.is_some() {
                    " (mutual TLS required)"
                } else {
                    " WITHOUT authentication"
                }
            )],
            _ => Vec::new(),
        }
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(t) = &mut self.tls {
            for p in std::iter::once(&mut t.server_cert)
                .chain(std::iter::once(&mut t.server_key))
                .chain(t.client_cas.iter_mut())
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
    }
}

/// The configuration as JSON with secrets redacted (keys naming a password, secret or token
/// that hold an inline value; file paths are kept).
pub fn redacted_json(cfg: &Config) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    let secret =
                        (k.contains("password") || k.contains("secret") || k.contains("token"))
                            && !k.ends_with("_file")
                            && !k.ends_with("_files");
                    if secret && !val.is_null() && !val.is_boolean() && !val.is_number() {
                        *val = serde_json::Value::String("<redacted>".into());
                    } else {
                        walk(val);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(cfg).unwrap_or_else(
        |e| serde_json::json!({ "error": format!("configuration not serialisable: {e}") }),
    );
    walk(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[[listener]]
bind = "127.0.0.1:8443"
backend = "http://127.0.0.1:8080"
server_cert = "s.pem"
server_key = "s.key"
trusted_cas = ["ca.pem"]
"#;

    #[test]
    fn minimal_config_is_strict() {
        let c = Config::parse(MIN).expect("parses");
        let l = &c.listeners[0];
        assert_eq!(l.classification, Classification::Sensitive);
        assert_eq!(l.tls.min_rsa_bits, 2048);
        assert!(l.tls.require_client_auth_eku);
        assert!(c.relaxations().is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&format!("{MIN}\nbogus_key = 1\n")).unwrap_err();
        assert!(err.to_string().contains("bogus_key"), "{err}");
    }

    #[test]
    fn weak_rsa_floor_rejected() {
        let err =
            Config::parse(&format!("{MIN}\n[listener.tls]\nmin_rsa_bits = 1024\n")).unwrap_err();
        assert!(
            err.to_string().contains("listener[0].tls.min_rsa_bits"),
            "{err}"
        );
    }

    #[test]
    fn tls13_tickets_default_one_and_range_checked() {
        let c = Config::parse(MIN).expect("parses");
        assert_eq!(c.listeners[0].tls.tls13_tickets, 1);
        for bad in [0, 5] {
            let err = Config::parse(&format!("{MIN}\n[listener.tls]\ntls13_tickets = {bad}\n"))
                .unwrap_err();
            assert!(
                err.to_string().contains("listener[0].tls.tls13_tickets"),
                "{err}"
            );
        }
        let c = Config::parse(&format!("{MIN}\n[listener.tls]\ntls13_tickets = 2\n")).expect("2");
        assert_eq!(c.listeners[0].tls.tls13_tickets, 2);
    }

    #[test]
    fn pki_required_policies_parse_and_bad_oid_names_the_key() {
        let c = Config::parse(MIN).expect("parses");
        assert_eq!(c.listeners[0].pki, PkiConfig::default());
        let c = Config::parse(&format!(
            "{MIN}\n[listener.pki]\nrequired_policies = [\"2.16.840.1.101.3.2.1.3.13\"]\ninhibit_any_policy = true\n"
        ))
        .expect("parses");
        let p = c.listeners[0].pki.policy_inputs().expect("inputs");
        assert!(p.initial_explicit_policy && p.initial_any_policy_inhibit);
        let err = Config::parse(&format!(
            "{MIN}\n[listener.pki]\nrequired_policies = [\"1.2.3\", \"not-an-oid\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("listener[0].pki.required_policies[1]"),
            "{err}"
        );
        let err = Config::parse(&format!("{MIN}\n[listener.pki]\nrequire = []\n")).unwrap_err();
        assert!(err.to_string().contains("require"), "{err}");
    }

    #[test]
    fn backend_schemes() {
        assert!(parse_backend("builtin:identity").is_ok());
        assert!(parse_backend("ftp://x").is_err());
        assert_eq!(
            parse_backend("http://localhost").unwrap(),
            Backend::Http {
                authority: "localhost:80".into(),
                base: "http://localhost".into()
            }
        );
    }
}
