//! Everything a listener needs after the handshake, built once from its configuration:
//! the access decision, the routes and each backend's upstream TLS client.

use std::sync::Arc;

use crate::access::listener::ListenerAccess;
use crate::access::rules::RouteTable;
use crate::config::{parse_backend, Backend, ConfigError, ListenerConfig};
use crate::upstream::{StatusFactory, UpstreamTls, UpstreamTlsConfig};

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend.
    pub backend: Backend,
    /// The TLS client for an `https://` backend.
    pub upstream: Option<Arc<UpstreamTls>>,
}

/// A listener's post-handshake plan, shared read-only by all workers.
#[derive(Debug)]
pub struct AccessPlan {
    /// Authentication fallback and rules.
    pub access: ListenerAccess,
    /// Route prefixes to indexes in `targets`.
    routes: RouteTable<usize>,
    /// `targets[0]` is the listener's own backend, `targets[i + 1]` route `i`'s.
    targets: Vec<Target>,
    /// How request paths are canonicalised before rules, routes and forwarding.
    pub paths: crate::proxy::path::PathOptions,
    /// Which peers may make forwarding claims.
    pub forwarding: crate::proxy::headers::ForwardingConfig,
}

impl AccessPlan {
    /// The index (into [`AccessPlan::targets`]) of the target for a canonical request path.
    pub fn target_index(&self, path: &crate::proxy::path::CanonicalPath) -> usize {
        self.routes.select(path).copied().unwrap_or(0)
    }

    /// Every target: the listener's backend first, then the routes' in config order. A
    /// worker builds one connection pool per entry.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The listener's own backend.
    pub fn default_target(&self) -> &Target {
        &self.targets[0]
    }
}

fn target(
    key: &str,
    url: &str,
    upstream: Option<&UpstreamTlsConfig>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    status: Option<&StatusFactory>,
) -> Result<Target, ConfigError> {
    let backend =
        parse_backend(url).map_err(|m| ConfigError::invalid(format!("{key}backend"), m))?;
    let upstream = match (&backend, upstream) {
        (Backend::Https { .. }, Some(u)) => Some(Arc::new(
            UpstreamTls::from_config(u, provider.clone(), status)
                .map_err(|e| ConfigError::invalid(format!("{key}upstream"), e.to_string()))?,
        )),
        _ => None,
    };
    Ok(Target { backend, upstream })
}

/// Builds listener number `index`'s plan: loads the password file, compiles the rules,
/// loads each `https://` backend's CAs and client key.
///
/// `provider_name` is `global.crypto_provider`; `status` makes the revocation checker of
/// each `https://` target (None: `upstream.revocation = "require"` refuses to start).
///
/// # Errors
/// A [`ConfigError::Invalid`] naming the key at fault.
pub fn build_plan(
    index: usize,
    l: &ListenerConfig,
    provider_name: &str,
    status: Option<&StatusFactory>,
) -> Result<AccessPlan, ConfigError> {
    let key = |k: &str| format!("listener[{index}].{k}");
    let access = ListenerAccess::new(l.classification, &l.access, &l.rules)
        .map_err(|e| ConfigError::invalid(key("access"), e.to_string()))?;
    let provider = crate::tls::build_provider(provider_name, &[], &[])
        .map_err(|e| ConfigError::invalid("global.crypto_provider", e.to_string()))?;
    let mut targets = vec![target(
        &key(""),
        &l.backend,
        l.upstream.as_ref(),
        &provider,
        status,
    )?];
    let mut routes = Vec::with_capacity(l.routes.len());
    for (i, r) in l.routes.iter().enumerate() {
        targets.push(target(
            &key(&format!("route[{i}].")),
            &r.backend,
            r.upstream.as_ref(),
            &provider,
            status,
        )?);
        routes.push((r.path.clone(), i + 1));
    }
    let routes = RouteTable::new(routes)
        .map_err(|(i, m)| ConfigError::invalid(key(&format!("route[{i}].path")), m))?;
    Ok(AccessPlan {
        access,
        routes,
        targets,
        paths: l.paths,
        forwarding: l.forwarding.clone(),
    })
}
