//! The plan step: a validated [`Config`] is turned once into live state, one
//! [`ListenerPlan`] per listener inside one [`GatewayPlan`].
//!
//! Everything that touches files or costs work happens here and only here: certificates and
//! keys loaded, the crypto provider built (once per process, restricted once per listener),
//! the client verifier and status checker built, the password file loaded, rules compiled,
//! backend URLs parsed, upstream TLS clients made. `gateway check-config` runs the same
//! step without serving. Nothing below reads the raw configuration again.
//!
//! A plan is immutable and shared (`Arc`): a reload builds a new [`GatewayPlan`] and swaps
//! it in whole (`RunningGateway::swap_plan` in the server); workers pick the new
//! listener plans up at their next accept, connections already open finish on the old one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;

use crate::access::{AccessPlan, Classification, ListenerAccess, RouteTable, Target};
use crate::config::{Config, ConfigError, GlobalConfig, ListenerConfig};
use crate::proxy::headers::ForwardingConfig;
use crate::revocation::staple::{certified_key, StaplingResolver};
use crate::revocation::status::status_factory;
use crate::revocation::{CheckerError, RevocationCache, RevocationChecker};
use crate::status::{StatusCheck, StatusFactory};
use crate::steering::SteeringConfig;
use crate::tls::tickets::TicketKeys;
use crate::tls::{
    base_provider, build_server_config, restrict_provider, ServerTlsError, ServerTlsParts,
    TlsPolicyError,
};
use crate::upstream::{parse_backend, Backend, UpstreamTls, UpstreamTlsConfig};

/// What a listener does after the handshake, decided from its `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    /// HTTP/1.1 or HTTP/2 (by ALPN), proxied per request.
    Http,
    /// Raw TCP mode (`tcp://host:port`): the decrypted stream with a PROXY v2 header.
    Tcp {
        /// `host:port` of the TCP backend.
        backend: String,
    },
}

/// Deadlines and caps of a listener's connections (`[listener.limits]`, see
/// [`crate::limits`]).
pub use crate::limits::Limits;

/// One listener, ready to serve: shared read-only by every worker.
pub struct ListenerPlan {
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The backend as configured, for the start-up log.
    pub backend_url: String,
    /// The listener's classification.
    pub classification: Classification,
    /// HTTP or raw TCP.
    pub kind: ListenerKind,
    /// The rustls configuration (verifier with the in-handshake status check inside).
    pub server_config: Arc<rustls::ServerConfig>,
    /// The status check after the handshake (`None`: revocation checking disabled).
    pub status: Option<Arc<dyn StatusCheck>>,
    /// The same checker, concrete: its configured CRL files for `/metrics` and `/readyz`.
    pub revocation: Option<Arc<RevocationChecker>>,
    /// Access decision, routes and each target's upstream TLS client.
    pub access: Arc<AccessPlan>,
    /// Which peers may make forwarding claims (`[listener.forwarding]`).
    pub forwarding: Arc<ForwardingConfig>,
    /// Deadlines.
    pub limits: Limits,
}

impl std::fmt::Debug for ListenerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerPlan")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("classification", &self.classification)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The plan a running gateway serves, swappable as a whole (reload).
pub type SharedPlan = Arc<arc_swap::ArcSwap<GatewayPlan>>;

/// The whole gateway, ready to serve.
#[derive(Debug)]
pub struct GatewayPlan {
    /// Process-wide settings (workers, pinning, grace, metrics interval).
    pub global: GlobalConfig,
    /// Kernel steering settings.
    pub steering: SteeringConfig,
    /// One plan per listener, in config order.
    pub listeners: Vec<Arc<ListenerPlan>>,
    /// The process-wide revocation cache (when any listener checks status or staples).
    pub revocation_cache: Option<Arc<RevocationCache>>,
    /// Every relaxation of the strict policy, logged at start.
    pub relaxations: Vec<String>,
    /// The admin listener's settings (`[admin]`), when configured.
    pub admin: Option<crate::config::AdminConfig>,
    /// The audit log's settings (`[audit]`), when configured.
    pub audit: Option<crate::audit::AuditConfig>,
    /// The effective configuration, secrets redacted (the admin listener's `/config`).
    pub effective_config: serde_json::Value,
}

/// Turns a validated configuration into a [`GatewayPlan`]: what `serve` runs and what
/// `check-config` checks.
///
/// # Errors
/// The first [`ConfigError`] found, naming the key at fault.
pub fn plan(config: &Config) -> Result<GatewayPlan, ConfigError> {
    plan_with_cache(config, None)
}

/// As [`plan`], sharing an existing revocation cache (a reload keeps what was learnt).
///
/// # Errors
/// The first [`ConfigError`] found, naming the key at fault.
pub fn plan_with_cache(
    config: &Config,
    cache: Option<Arc<RevocationCache>>,
) -> Result<GatewayPlan, ConfigError> {
    let provider_name = config.global.crypto_provider.as_str();
    let base = Arc::new(
        base_provider(provider_name)
            .map_err(|e| ConfigError::invalid("global.crypto_provider", e.to_string()))?,
    );
    // The policy-restricted default suites and groups, for every upstream TLS client.
    let upstream_provider = restrict_provider(&base, &[], &[])
        .map_err(|e| ConfigError::invalid("global.crypto_provider", e.to_string()))?;
    let needs_cache = config
        .listeners
        .iter()
        .any(|l| l.revocation.enabled || l.revocation.staple_ocsp);
    let revocation_cache = match (needs_cache, cache) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => {
            let max = config
                .listeners
                .iter()
                .map(|l| l.revocation.cache_max_entries)
                .max()
                .unwrap_or_default();
            Some(RevocationCache::new(max).map_err(|e| {
                ConfigError::invalid(
                    "listener.revocation",
                    format!("cannot start the fetch thread: {e}"),
                )
            })?)
        }
    };
    let ticket_keys = match &config.global.ticket_keys {
        Some(path) => {
            let keys = TicketKeys::load(path)
                .map_err(|e| ConfigError::invalid("global.ticket_keys", e.to_string()))?;
            tracing::info!(file = %path.display(), keys = ?keys.ids(), "session-ticket keys loaded");
            Some(keys)
        }
        None => None,
    };
    let shared = Shared {
        provider_name,
        base,
        upstream_provider,
        cache: revocation_cache.clone(),
        ticket_keys,
        ticket_lifetime_secs: config.global.ticket_lifetime_secs,
    };
    let listeners = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| plan_listener(i, l, &shared).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GatewayPlan {
        global: config.global.clone(),
        steering: config.steering.clone(),
        listeners,
        revocation_cache,
        relaxations: config.relaxations(),
        admin: config.admin.clone(),
        audit: config.audit.clone(),
        effective_config: crate::config::redacted_json(config),
    })
}

/// What every listener's plan is built from, made once.
struct Shared<'a> {
    provider_name: &'a str,
    base: Arc<CryptoProvider>,
    upstream_provider: Arc<CryptoProvider>,
    cache: Option<Arc<RevocationCache>>,
    /// The fleet's session-ticket keys (`global.ticket_keys`), loaded once.
    ticket_keys: Option<TicketKeys>,
    ticket_lifetime_secs: u32,
}

fn plan_listener(
    index: usize,
    l: &ListenerConfig,
    shared: &Shared<'_>,
) -> Result<ListenerPlan, ConfigError> {
    let key = |k: &str| format!("listener[{index}].{k}");
    let invalid = |k: &str, m: String| ConfigError::invalid(key(k), m);
    let name: Arc<str> = Arc::from(l.display_name());
    let bind = l.bind_addr().map_err(|m| invalid("bind", m))?;
    let backend = parse_backend(&l.backend).map_err(|m| invalid("backend", m))?;
    let kind = match &backend {
        Backend::Tcp { authority } => ListenerKind::Tcp {
            backend: authority.clone(),
        },
        _ => ListenerKind::Http,
    };

    // Loaded once: the server chain and key, the trusted client CAs.
    let chain = crate::pki::load_certs(&l.server_cert)
        .map_err(|e| invalid("server_cert", e.to_string()))?;
    let private_key =
        crate::pki::load_key(&l.server_key).map_err(|e| invalid("server_key", e.to_string()))?;
    let cas = crate::pki::load_ca_bundle(&l.trusted_cas)
        .map_err(|e| invalid("trusted_cas", e.to_string()))?;

    let policy_inputs = l
        .pki
        .policy_inputs()
        .map_err(|(k, m)| invalid(&format!("pki.{k}"), m))?;
    let checker = match (&shared.cache, l.revocation.enabled) {
        (Some(cache), true) => Some(
            RevocationChecker::new(
                &l.revocation,
                &name,
                &cas,
                shared.base.clone(),
                cache.clone(),
            )
            .and_then(|c| c.with_policy_inputs(policy_inputs.clone()))
            .map_err(|e| match e {
                CheckerError::File { key: k, message } => {
                    invalid(&format!("revocation.{k}"), message)
                }
                CheckerError::Anchors { message } => invalid("trusted_cas", message),
            })?,
        ),
        _ => None,
    };
    let status = checker.clone().map(|c| c as Arc<dyn StatusCheck>);

    let cert_resolver = match (&shared.cache, l.revocation.staple_ocsp) {
        (Some(cache), true) => {
            let ck = certified_key(chain.clone(), private_key.clone_key(), &shared.base)
                .map_err(|e| invalid("server_key", e.to_string()))?;
            let resolver = StaplingResolver::start(ck, &l.revocation, shared.base.clone(), cache)
                .map_err(|e| invalid("revocation.staple_ocsp", e.to_string()))?;
            Some(resolver as Arc<dyn ResolvesServerCert>)
        }
        _ => None,
    };

    let provider =
        restrict_provider(&shared.base, &l.tls.cipher_suites, &l.tls.groups).map_err(|e| {
            let k = match e {
                TlsPolicyError::Group(..) => "tls.groups",
                TlsPolicyError::Provider(..) => "global.crypto_provider",
                _ => "tls.cipher_suites",
            };
            invalid(k, e.to_string())
        })?;
    let server_config = build_server_config(ServerTlsParts {
        settings: &l.tls,
        client_cert_required: l.classification == Classification::Sensitive,
        provider,
        provider_name: shared.provider_name,
        chain,
        key: private_key,
        trusted_cas: &cas,
        status: status.clone(),
        cert_resolver,
        policy_inputs,
    })
    .map_err(|e| match e {
        ServerTlsError::Versions(e) => invalid("tls.versions", e.to_string()),
        ServerTlsError::ServerCert(m) => {
            invalid("server_cert", format!("{}: {m}", l.server_cert.display()))
        }
        ServerTlsError::Verifier(e) => invalid("trusted_cas", e.to_string()),
        ServerTlsError::Protocol(e) => invalid("tls", e.to_string()),
        ServerTlsError::KeyMismatch(e) => invalid(
            "server_key",
            format!(
                "server key {} does not fit certificate {}: {e}",
                l.server_key.display(),
                l.server_cert.display()
            ),
        ),
        ServerTlsError::Ticketer(e) => invalid("tls.session_resumption", e.to_string()),
        e @ ServerTlsError::Tickets(_) => invalid("tls.tls13_tickets", e.to_string()),
    })?;
    let mut server_config = server_config;
    if let (Some(keys), true) = (&shared.ticket_keys, l.tls.session_resumption) {
        // The fleet's keys, derived for this listener's ticket context.
        server_config.ticketer = keys
            .ticketer(&ticket_context(l, &cas), shared.ticket_lifetime_secs)
            .map_err(|e| ConfigError::invalid("global.ticket_keys", e.to_string()))?;
    }
    let server_config = Arc::new(server_config);

    let access = ListenerAccess::new(l.classification, &l.access, &l.rules)
        .map_err(|e| invalid("access", e.to_string()))?;
    // Upstream (https://) backends are checked with the listener's revocation settings,
    // against each backend's own trust anchors.
    let factory = status_factory(
        &l.revocation,
        &format!("{name} upstream"),
        shared.base.clone(),
        shared.cache.as_ref(),
    );
    let upstream = |prefix: &str, backend: Backend, u: Option<&UpstreamTlsConfig>| {
        target(
            prefix,
            backend,
            u,
            &shared.upstream_provider,
            factory.as_deref(),
        )
        .map_err(|(k, m)| invalid(&k, m))
    };
    let mut targets = vec![upstream("", backend, l.upstream.as_ref())?];
    let mut routes = Vec::with_capacity(l.routes.len());
    for (i, r) in l.routes.iter().enumerate() {
        let prefix = format!("route[{i}].");
        let b = parse_backend(&r.backend).map_err(|m| invalid(&format!("{prefix}backend"), m))?;
        targets.push(upstream(&prefix, b, r.upstream.as_ref())?);
        routes.push((r.path.clone(), i + 1));
    }
    let routes =
        RouteTable::new(routes).map_err(|(i, m)| invalid(&format!("route[{i}].path"), m))?;

    Ok(ListenerPlan {
        name,
        bind,
        backend_url: l.backend.clone(),
        classification: l.classification,
        kind,
        server_config,
        status,
        revocation: checker,
        access: Arc::new(AccessPlan::new(access, routes, targets, l.paths)),
        forwarding: Arc::new(l.forwarding.clone()),
        limits: listener_limits(l),
    })
}

/// A listener's limits; long-lived connections re-check their client certificate's status
/// every `revocation.refresh_interval_secs` when status checking is on.
fn listener_limits(l: &ListenerConfig) -> Limits {
    Limits {
        status_recheck_interval: l
            .revocation
            .enabled
            .then(|| Duration::from_secs(l.revocation.refresh_interval_secs)),
        ..l.limits.to_limits()
    }
}

/// A listener's session-ticket context: its name and client-authentication policy (trusted
/// CAs, classification, key policy, EKU), so a ticket made from the fleet's keys resumes
/// only on a listener with the same name and policy, on any host.
fn ticket_context(
    l: &ListenerConfig,
    cas: &[rustls::pki_types::CertificateDer<'static>],
) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut der: Vec<&[u8]> = cas.iter().map(|c| c.as_ref()).collect();
    der.sort_unstable();
    let mut h = Sha256::new();
    h.update(b"listener\0");
    h.update(l.display_name().as_bytes());
    h.update(format!(
        "\0{:?}\0{}\0{}\0",
        l.classification, l.tls.min_rsa_bits, l.tls.require_client_auth_eku
    ));
    for d in der {
        h.update((d.len() as u64).to_be_bytes());
        h.update(d);
    }
    h.finalize().to_vec()
}

fn target(
    prefix: &str,
    backend: Backend,
    upstream: Option<&UpstreamTlsConfig>,
    provider: &Arc<CryptoProvider>,
    status: Option<&StatusFactory>,
) -> Result<Target, (String, String)> {
    let upstream = match (&backend, upstream) {
        (Backend::Https { .. }, Some(u)) => Some(Arc::new(
            UpstreamTls::from_config(u, provider.clone(), status)
                .map_err(|e| (format!("{prefix}upstream"), e.to_string()))?,
        )),
        _ => None,
    };
    Ok(Target { backend, upstream })
}
