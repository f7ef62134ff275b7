//! Starting and stopping the gateway: builds every listener's TLS state, creates the
//! per-worker reuseport sockets, starts the workers, and shuts them down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::access::{build_plan, AccessPlan};
use crate::config::{Config, ConfigError};
use crate::conn::ListenerRuntime;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::revocation::{RevocationCache, RevocationChecker};
use crate::tls::{build_server_config, ListenerTls};
use crate::worker::{allowed_cpus, reuseport_listener, spawn_worker, WorkerError, WorkerPlan};

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not acceptable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Sockets or threads could not be set up.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// Required kernel steering is unavailable (or the groups are unusable).
    #[error(transparent)]
    Steering(#[from] crate::steering::SteeringError),
    /// Privileges could not be dropped (or would not be: root without `global.user`).
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
}

/// Everything built from the configuration before serving.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration.
    pub config: Config,
    /// Each listener's TLS state.
    pub tls: Vec<ListenerTls>,
    /// Each listener's access plan (password fallback, rules, routes, upstream TLS).
    pub access: Vec<Arc<AccessPlan>>,
    /// Each listener's revocation checker (`None` where disabled).
    pub revocation: Vec<Option<Arc<RevocationChecker>>>,
    /// The process-wide revocation cache (when any listener checks status).
    pub revocation_cache: Option<Arc<RevocationCache>>,
}

/// Validates a configuration completely (files, keys, certificates, TLS policy) without
/// serving: what `gateway check-config` runs.
///
/// # Errors
/// The first [`ConfigError`] found.
pub fn prepare(config: Config) -> Result<Prepared, ConfigError> {
    let mut tls = Vec::with_capacity(config.listeners.len());
    let mut revocation = Vec::with_capacity(config.listeners.len());
    let revocation_cache = if config
        .listeners
        .iter()
        .any(|l| l.revocation.enabled || l.revocation.staple_ocsp)
    {
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
    } else {
        None
    };
    let ticket_keys = match &config.global.ticket_keys {
        Some(path) => {
            let keys = crate::tls::tickets::TicketKeys::load(path)
                .map_err(|e| ConfigError::invalid("global.ticket_keys", e.to_string()))?;
            tracing::info!(file = %path.display(), keys = ?keys.ids(), "session-ticket keys loaded");
            Some(keys)
        }
        None => None,
    };
    for (i, l) in config.listeners.iter().enumerate() {
        let checker = match &revocation_cache {
            Some(cache) => crate::revocation::checker_for_listener(
                i,
                l,
                &config.global.crypto_provider,
                cache,
            )?,
            None => None,
        };
        let mut t = build_server_config(
            i,
            l,
            &config.global.crypto_provider,
            checker
                .clone()
                .map(|c| c as Arc<dyn crate::tls::client_verifier::HandshakeStatusCheck>),
        )?;
        if let Some(cache) = &revocation_cache {
            if let Some(resolver) = crate::revocation::stapling_for_listener(
                i,
                l,
                &config.global.crypto_provider,
                cache,
            )? {
                // Same certificate and key, served with a current OCSP staple when there is one.
                let mut sc = (*t.server_config).clone();
                sc.cert_resolver = resolver;
                t.server_config = Arc::new(sc);
            }
        }
        if let Some(keys) = &ticket_keys {
            crate::tls::apply_ticket_keys(&mut t, i, l, keys, config.global.ticket_lifetime_secs)?;
        }
        tls.push(t);
        revocation.push(checker);
    }
    let mut access = Vec::with_capacity(config.listeners.len());
    for (i, l) in config.listeners.iter().enumerate() {
        // Upstream (https://) backends are checked with the listener's revocation settings,
        // against each backend's own trust anchors.
        let factory = crate::revocation::upstream::status_factory(
            &l.revocation,
            &format!("{} upstream", l.display_name()),
            &config.global.crypto_provider,
            revocation_cache.as_ref(),
        );
        access.push(Arc::new(build_plan(
            i,
            l,
            &config.global.crypto_provider,
            factory.as_deref(),
        )?));
    }
    Ok(Prepared {
        config,
        tls,
        access,
        revocation,
        revocation_cache,
    })
}

/// A running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    /// The bound address of each listener, in config order (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Data-path counters.
    pub metrics: Metrics,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    steering: crate::steering::SteeringHandle,
}

impl RunningGateway {
    /// Kernel steering state: counters, blocklist edits, what is active.
    pub fn steering(&self) -> crate::steering::SteeringControl {
        self.steering.control()
    }

    /// Signals shutdown and waits for the workers to drain and stop.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for w in self.workers {
            let _ = w.join();
        }
        // Detaches XDP and the reuseport programs.
        drop(self.steering);
    }

    /// Signals shutdown without waiting.
    pub fn signal_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the workers to stop (after a shutdown signal).
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.steering);
    }
}

/// Starts the workers for a prepared configuration, keeping the process's privileges (for
/// embedding and tests; `gateway serve` uses [`start_unprivileged`]).
///
/// # Errors
/// [`StartError`] if a socket cannot be bound or a worker cannot start.
pub fn start(prepared: Prepared) -> Result<RunningGateway, StartError> {
    start_inner(prepared, false)
}

/// Starts the workers like [`start`], but drops privileges once the sockets are bound and
/// the eBPF programs attached, before any worker thread exists: switches to
/// `global.user`/`global.group`, drops every capability on every thread, sets
/// no_new_privs (see [`crate::privileges`]).
///
/// # Errors
/// [`StartError`] as [`start`], and [`StartError::Privileges`] when the drop fails or the
/// process would keep running as root without `global.allow_root`.
pub fn start_unprivileged(prepared: Prepared) -> Result<RunningGateway, StartError> {
    start_inner(prepared, true)
}

fn start_inner(prepared: Prepared, drop_privileges: bool) -> Result<RunningGateway, StartError> {
    let Prepared {
        config,
        tls,
        access,
        revocation,
        ..
    } = prepared;
    for r in config.relaxations() {
        tracing::warn!(relaxation = %r, "policy relaxed by configuration");
    }
    let cpus = allowed_cpus();
    let n = if config.global.workers == 0 {
        cpus.len().max(1)
    } else {
        config.global.workers
    };
    let metrics = Metrics::new(n);
    let (tx, rx) = watch::channel(false);

    // All sockets first (so a steering program can be attached to each reuseport group
    // before any worker accepts), port 0 resolved by the first socket of each group.
    let mut per_worker: Vec<Vec<(std::net::TcpListener, Arc<ListenerRuntime>)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::new();
    let failures = crate::steering::FailureReporter::default();
    let on_failure: Option<crate::conn::FailureHook> = config.steering.abuse.enabled.then(|| {
        let f = failures.clone();
        Arc::new(move |ip| f.report(ip)) as crate::conn::FailureHook
    });
    for (li, (((l, t), plan), checker)) in config
        .listeners
        .iter()
        .zip(&tls)
        .zip(&access)
        .zip(&revocation)
        .enumerate()
    {
        let mut addr = l
            .bind_addr()
            .map_err(|m| ConfigError::invalid(format!("listener[{li}].bind"), m))?;
        let name: Arc<str> = Arc::from(l.display_name());
        for slot in per_worker.iter_mut() {
            let sock = reuseport_listener(addr, 4096)?;
            if addr.port() == 0 {
                addr = sock
                    .local_addr()
                    .map_err(|source| WorkerError::Listen { addr, source })?;
            }
            let rt = Arc::new(ListenerRuntime {
                name: name.clone(),
                acceptor: tokio_rustls::TlsAcceptor::from(t.server_config.clone()),
                classification: t.classification,
                proxy: Proxy::with_plan(plan.clone()),
                handshake_timeout: Duration::from_secs(10),
                check_timeout: Duration::from_secs(10),
                post_check: checker
                    .clone()
                    .map(|c| c as Arc<dyn crate::conn::PostHandshakeCheck>),
                on_failure: on_failure.clone(),
            });
            slot.push((sock, rt));
        }
        tracing::info!(listener = %name, %addr, workers = n, classification = ?l.classification, backend = %l.backend, "listening");
        local_addrs.push(addr);
    }

    let worker_cpus: Vec<Option<u32>> = (0..n)
        .map(|i| {
            config
                .global
                .pin_workers
                .then(|| cpus.get(i % cpus.len().max(1)).map(|&c| c as u32))
                .flatten()
        })
        .collect();
    let steering = {
        use std::os::fd::AsFd;
        let groups: Vec<(u16, Vec<std::os::fd::BorrowedFd<'_>>)> = local_addrs
            .iter()
            .enumerate()
            .map(|(li, a)| {
                (
                    a.port(),
                    per_worker.iter().map(|w| w[li].0.as_fd()).collect(),
                )
            })
            .collect();
        crate::steering::attach_workers(&config.steering, &worker_cpus, &groups)?
    };
    failures.connect(steering.control());

    if drop_privileges {
        let d = crate::privileges::drop_privileges(&config.global.privileges())?;
        tracing::info!(
            uid = d.uid,
            gid = d.gid,
            threads = d.threads,
            bounding_set_cleared = d.bounding_cleared,
            "privileges dropped: every capability cleared, no_new_privs set"
        );
    }

    let grace = Duration::from_secs(config.global.shutdown_grace_secs);
    let mut workers = Vec::with_capacity(n);
    for (index, sockets) in per_worker.into_iter().enumerate() {
        let cpu = config
            .global
            .pin_workers
            .then(|| cpus.get(index % cpus.len().max(1)).copied())
            .flatten();
        let plan = WorkerPlan {
            index,
            cpu,
            sockets,
            blocklist: Some(steering.control()),
        };
        workers.push(spawn_worker(plan, metrics.clone(), rx.clone(), grace)?);
    }
    Ok(RunningGateway {
        local_addrs,
        metrics,
        shutdown: tx,
        workers,
        steering,
    })
}

/// Runs the gateway until SIGINT or SIGTERM, then drains and stops.
///
/// # Errors
/// [`StartError`] if it cannot start.
pub fn run_until_signal(prepared: Prepared) -> Result<(), StartError> {
    let interval = prepared.config.global.metrics_interval_secs;
    let revocation_cache = prepared.revocation_cache.clone();
    let running = start_unprivileged(prepared)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| WorkerError::Spawn {
            index: usize::MAX,
            source,
        })?;
    let metrics = running.metrics.clone();
    let steering = running.steering();
    rt.block_on(async move {
        let metrics_task = (interval > 0).then(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(interval));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let s = metrics.snapshot();
                    let steering = steering.counters();
                    tracing::info!(target: "metrics", ?s, ?steering, "counters");
                    if let Some(c) = &revocation_cache {
                        c.log_metrics();
                    }
                }
            })
        });
        wait_for_signal().await;
        tracing::info!("shutdown requested: no longer accepting, draining in-flight requests");
        if let Some(t) = metrics_task {
            t.abort();
        }
    });
    running.signal_shutdown();
    running.join();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
