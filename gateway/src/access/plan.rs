//! Everything a listener needs after the handshake, built once by the plan step: the
//! access decision, the routes and each backend's upstream TLS client.

use std::sync::Arc;

use crate::access::listener::ListenerAccess;
use crate::access::rules::RouteTable;
use crate::path::{CanonicalPath, PathOptions};
use crate::upstream::{Backend, UpstreamTls};

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
    pub paths: PathOptions,
}

impl AccessPlan {
    /// A plan from its parts: `targets[0]` is the listener's own backend, and `routes` map
    /// path prefixes to indexes in `targets`; `paths` says how request paths are
    /// canonicalised.
    pub fn new(
        access: ListenerAccess,
        routes: RouteTable<usize>,
        targets: Vec<Target>,
        paths: PathOptions,
    ) -> Self {
        AccessPlan {
            access,
            routes,
            targets,
            paths,
        }
    }

    /// The index (into [`AccessPlan::targets`]) of the target for a canonical request path.
    pub fn target_index(&self, path: &CanonicalPath) -> usize {
        self.routes.select(path).copied().unwrap_or(0)
    }

    /// Every target: the listener's backend first, then the routes' in config order. A
    /// worker builds one connection pool per entry.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}
