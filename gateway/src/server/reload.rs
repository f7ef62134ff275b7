//! Hot reload: SIGHUP, `POST /reload` on the admin listener, or [`Reloader::reload`] re-read
//! the whole configuration and every file it names (server certificates and keys, trusted
//! CAs, CRL files, password files, rules, routes, upstream CAs, ticket keys), build a new
//! [`GatewayPlan`] and swap it in whole.
//!
//! New connections use the new plan from the next accept on; connections in flight finish
//! under the plan they started with (each holds its own `Arc<ListenerPlan>`). A configuration
//! that fails validation, or one that changes what only a restart can change (the listeners'
//! number or bind addresses), is refused: the old plan keeps serving, the error is logged,
//! counted (`gateway_reloads_total{outcome="failed"}`, `gateway_config_last_reload_failed`)
//! and returned. Settings fixed at start (workers, pinning, steering, privileges, the admin
//! listener) keep their running values; the reload says "restart required" for each.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::admin::AdminState;
use crate::config::{Config, ConfigError};
use crate::plan::{GatewayPlan, SharedPlan};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid (the key and the problem are named).
    #[error("configuration refused, still serving the previous one: {0}")]
    Config(#[from] ConfigError),
    /// The listeners changed in a way only a restart can apply.
    #[error("configuration refused, still serving the previous one: {0}")]
    Swap(#[from] SwapError),
}

/// Why a plan cannot replace the running one.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// Listeners cannot be added, removed or rebound without a restart.
    #[error("listener {index}: {message}; restart the gateway to change listeners")]
    Listeners {
        /// Listener number.
        index: usize,
        /// What differs.
        message: String,
    },
}

/// What an accepted reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Listeners now served with the new plan.
    pub listeners: usize,
    /// Changed settings that keep their running value until a restart.
    pub restart_required: Vec<String>,
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reloaded: {} listener{} serve new connections with the new configuration",
            self.listeners,
            if self.listeners == 1 { "" } else { "s" }
        )?;
        for r in &self.restart_required {
            write!(f, "\nrestart required to apply: {r}")?;
        }
        Ok(())
    }
}

/// Checks that `next` can replace `current`: same listeners, bound to the same addresses
/// (the sockets, the worker count and steering stay as started), then stores it.
///
/// # Errors
/// [`SwapError`] if the listeners differ.
pub fn swap(shared: &SharedPlan, next: GatewayPlan) -> Result<(), SwapError> {
    let current = shared.load();
    if next.listeners.len() != current.listeners.len() {
        return Err(SwapError::Listeners {
            index: next.listeners.len().min(current.listeners.len()),
            message: format!(
                "{} listeners configured, {} running",
                next.listeners.len(),
                current.listeners.len()
            ),
        });
    }
    for (index, (n, c)) in next.listeners.iter().zip(&current.listeners).enumerate() {
        // Port 0 (tests) is resolved at bind time: compare what was asked for.
        if n.bind != c.bind {
            return Err(SwapError::Listeners {
                index,
                message: format!("bind {} differs from the running {}", n.bind, c.bind),
            });
        }
    }
    shared.store(Arc::new(next));
    Ok(())
}

/// Settings the running process cannot change without a restart, when they differ.
fn restart_required(current: &GatewayPlan, next: &GatewayPlan) -> Vec<String> {
    let mut out = Vec::new();
    let (c, n) = (&current.global, &next.global);
    if c.workers != n.workers {
        out.push(format!("global.workers ({} -> {})", c.workers, n.workers));
    }
    if c.pin_workers != n.pin_workers {
        out.push("global.pin_workers".into());
    }
    if c.privileges() != n.privileges() {
        out.push("global.user / global.group / global.allow_root".into());
    }
    if current.steering != next.steering {
        out.push("[steering]".into());
    }
    if current.admin != next.admin {
        out.push("[admin]".into());
    }
    if current.audit != next.audit {
        out.push("[audit]".into());
    }
    out
}

/// Reloads a running gateway from its configuration file. Cheap to clone; reloads are
/// serialised.
#[derive(Debug, Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    plan: SharedPlan,
    admin: Arc<AdminState>,
    lock: Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(path: &Path, plan: SharedPlan, admin: Arc<AdminState>) -> Self {
        Reloader {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                plan,
                admin,
                lock: Mutex::new(()),
            }),
        }
    }

    /// The configuration file re-read on reload.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Re-reads the configuration and every file it names and swaps the new plan in.
    /// Logs and counts the outcome. Blocking (files, keys): call it off any event loop.
    ///
    /// # Errors
    /// [`ReloadError`]: the previous configuration keeps serving.
    pub fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let _one_at_a_time = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = &self.inner.admin.reloads;
        match self.try_reload() {
            Ok(outcome) => {
                stats.ok.fetch_add(1, Relaxed);
                stats.last_failed.store(false, Relaxed);
                stats.last_success_unix.store(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                    Relaxed,
                );
                tracing::info!(config = %self.inner.path.display(), listeners = outcome.listeners, "configuration reloaded");
                for r in &outcome.restart_required {
                    tracing::warn!(setting = %r, "changed setting keeps its running value until a restart");
                }
                Ok(outcome)
            }
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                stats.last_failed.store(true, Relaxed);
                tracing::error!(config = %self.inner.path.display(), error = %e, "reload refused");
                Err(e)
            }
        }
    }

    fn try_reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let cfg = Config::load(&self.inner.path)?;
        let current = self.inner.plan.load_full();
        // The revocation cache (and what it learnt) is kept.
        let next = crate::plan::plan_with_cache(&cfg, current.revocation_cache.clone())?;
        let restart_required = restart_required(&current, &next);
        for r in &next.relaxations {
            tracing::warn!(relaxation = %r, "policy relaxed by configuration");
        }
        let listeners = next.listeners.len();
        swap(&self.inner.plan, next)?;
        Ok(ReloadOutcome {
            listeners,
            restart_required,
        })
    }
}
