//! Starting and stopping the gateway: serves a [`GatewayPlan`] (built by the plan step),
//! creates the per-worker reuseport sockets, starts the workers, and shuts them down
//! gracefully. The running plan sits behind an `ArcSwap` so a reload can replace it whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::plan::{GatewayPlan, SharedPlan};
pub mod reload;

use crate::worker::{allowed_cpus, reuseport_listener, spawn_worker, WorkerError, WorkerPlan};

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Sockets or threads could not be set up.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// Required kernel steering is unavailable (or the groups are unusable).
    #[error(transparent)]
    Steering(#[from] crate::steering::SteeringError),
    /// Privileges could not be dropped (or would not be: root without `global.user`).
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// The admin listener cannot start.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

pub use reload::{ReloadError, ReloadOutcome, Reloader, SwapError};

/// A running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    /// The bound address of each listener, in config order (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Data-path counters.
    pub metrics: Metrics,
    /// The admin listener's address, when `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    /// What the admin endpoints read (metrics, readiness, reload outcomes).
    pub admin_state: Arc<crate::admin::AdminState>,
    plan: SharedPlan,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    steering: crate::steering::SteeringHandle,
    admin: Option<crate::admin::AdminHandle>,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl RunningGateway {
    /// Kernel steering state: counters, blocklist edits, what is active.
    pub fn steering(&self) -> crate::steering::SteeringControl {
        self.steering.control()
    }

    /// The audit log, when `[audit]` is configured.
    pub fn audit(&self) -> Option<&Arc<crate::audit::AuditLog>> {
        self.audit.as_ref()
    }

    /// The plan being served.
    pub fn plan(&self) -> Arc<GatewayPlan> {
        self.plan.load_full()
    }

    /// Replaces the listener plans atomically: every worker serves new connections with
    /// `next` from its next accept on; open connections finish under the plan they started
    /// with. `next` must have the same listeners, bound to the same addresses (sockets, the
    /// worker count and steering stay as started).
    ///
    /// # Errors
    /// [`SwapError`] if the listeners differ.
    pub fn swap_plan(&self, next: GatewayPlan) -> Result<(), SwapError> {
        reload::swap(&self.plan, next)
    }

    /// A [`Reloader`] re-reading `config_path` into this gateway (SIGHUP, `POST /reload`,
    /// tests). It also becomes the admin listener's `POST /reload`.
    pub fn reloader(&self, config_path: &std::path::Path) -> Reloader {
        let r = Reloader::new(config_path, self.plan.clone(), self.admin_state.clone());
        let hook = r.clone();
        let _ = self
            .admin_state
            .reload
            .set(crate::admin::ReloadHook(Arc::new(move || {
                hook.reload()
                    .map(|o| o.to_string())
                    .map_err(|e| e.to_string())
            })));
        r
    }

    /// Signals shutdown and waits for the workers to drain and stop.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        drop(self.admin);
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
        drop(self.admin);
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.steering);
    }
}

/// Starts the workers serving `plan`, keeping the process's privileges (for embedding and
/// tests; `gateway serve` uses [`start_unprivileged`]).
///
/// # Errors
/// [`StartError`] if a socket cannot be bound or a worker cannot start.
pub fn start(plan: GatewayPlan) -> Result<RunningGateway, StartError> {
    start_inner(plan, false)
}

/// Starts the workers like [`start`], but drops privileges once the sockets are bound and
/// the eBPF programs attached, before any worker thread exists: switches to
/// `global.user`/`global.group`, drops every capability on every thread, sets
/// no_new_privs (see [`crate::privileges`]).
///
/// # Errors
/// [`StartError`] as [`start`], and [`StartError::Privileges`] when the drop fails or the
/// process would keep running as root without `global.allow_root`.
pub fn start_unprivileged(plan: GatewayPlan) -> Result<RunningGateway, StartError> {
    start_inner(plan, true)
}

fn start_inner(plan: GatewayPlan, drop_privileges: bool) -> Result<RunningGateway, StartError> {
    for r in &plan.relaxations {
        tracing::warn!(relaxation = %r, "policy relaxed by configuration");
    }
    let global = plan.global.clone();
    let cpus = allowed_cpus();
    let n = if global.workers == 0 {
        cpus.len().max(1)
    } else {
        global.workers
    };
    let metrics = Metrics::new(n);
    let (tx, rx) = watch::channel(false);

    // All sockets first (so a steering program can be attached to each reuseport group
    // before any worker accepts), port 0 resolved by the first socket of each group.
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::new();
    let failures = crate::steering::FailureReporter::default();
    let on_failure: Option<crate::conn::FailureHook> = plan.steering.abuse.enabled.then(|| {
        let f = failures.clone();
        Arc::new(move |ip| f.report(ip)) as crate::conn::FailureHook
    });
    for l in &plan.listeners {
        let mut addr = l.bind;
        crate::worker::ensure_not_listened(addr)?;
        for slot in per_worker.iter_mut() {
            let sock = reuseport_listener(addr, 4096)?;
            if addr.port() == 0 {
                addr = sock
                    .local_addr()
                    .map_err(|source| WorkerError::Listen { addr, source })?;
            }
            slot.push(sock);
        }
        tracing::info!(listener = %l.name, %addr, workers = n, classification = ?l.classification, backend = %l.backend_url, "listening");
        local_addrs.push(addr);
    }

    let worker_cpus: Vec<Option<u32>> = (0..n)
        .map(|i| {
            global
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
                    per_worker
                        .iter()
                        .filter_map(|w| w.get(li).map(|s| s.as_fd()))
                        .collect(),
                )
            })
            .collect();
        crate::steering::attach_workers(&plan.steering, &worker_cpus, &groups)?
    };
    failures.connect(steering.control());

    if drop_privileges {
        let d = crate::privileges::drop_privileges(&global.privileges())?;
        tracing::info!(
            uid = d.uid,
            gid = d.gid,
            threads = d.threads,
            bounding_set_cleared = d.bounding_cleared,
            "privileges dropped: every capability cleared, no_new_privs set"
        );
    }

    let admin_cfg = plan.admin.clone();
    let audit = plan
        .audit
        .as_ref()
        .map(crate::audit::AuditLog::start)
        .transpose()?;
    if let Some(a) = &audit {
        metrics.register_collector(a.clone());
    }
    let shared: SharedPlan = Arc::new(ArcSwap::from_pointee(plan));
    let admin_state = Arc::new(crate::admin::AdminState::new(
        metrics.clone(),
        Some(steering.control()),
        shared.clone(),
    ));
    // Bound before the workers start (and, with `serve`, after privileges are dropped: the
    // admin port must not need them).
    let admin = admin_cfg
        .as_ref()
        .map(|a| crate::admin::start(a, &global.crypto_provider, admin_state.clone()))
        .transpose()?;
    let grace = Duration::from_secs(global.shutdown_grace_secs);
    let mut workers = Vec::with_capacity(n);
    for (index, sockets) in per_worker.into_iter().enumerate() {
        let cpu = global
            .pin_workers
            .then(|| cpus.get(index % cpus.len().max(1)).copied())
            .flatten();
        let wp = WorkerPlan {
            index,
            cpu,
            sockets,
            plan: shared.clone(),
            on_failure: on_failure.clone(),
            blocklist: Some(steering.control()),
            audit: audit.clone(),
        };
        workers.push(spawn_worker(wp, metrics.clone(), rx.clone(), grace)?);
    }
    admin_state
        .listeners_bound
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(RunningGateway {
        local_addrs,
        metrics,
        admin_addr: admin.as_ref().map(|a| a.local_addr),
        admin_state,
        plan: shared,
        shutdown: tx,
        workers,
        steering,
        admin,
        audit,
    })
}

/// Runs the gateway until SIGINT or SIGTERM, then drains and stops. SIGHUP reloads
/// `config_path` (when given; see [`Reloader`]); `pid_file` is written once serving and
/// removed at exit.
///
/// # Errors
/// [`StartError`] if it cannot start.
pub fn run_until_signal(
    plan: GatewayPlan,
    config_path: Option<&std::path::Path>,
    pid_file: Option<&std::path::Path>,
) -> Result<(), StartError> {
    let interval = plan.global.metrics_interval_secs;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| WorkerError::Spawn {
            index: usize::MAX,
            source,
        })?;
    // Signal handlers first: from here on SIGHUP never kills the process.
    let signals = {
        let _guard = rt.enter();
        Signals::new()
    };
    let running = start_unprivileged(plan)?;
    let reloader = config_path.map(|p| running.reloader(p));
    if let Some(p) = pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            tracing::warn!(file = %p.display(), error = %e, "cannot write the PID file");
        }
    }
    crate::sd_notify::notify("READY=1");
    let metrics = running.metrics.clone();
    let steering = running.steering();
    let shared = running.plan.clone();
    let audit = running.audit().cloned();
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
                    if let Some(c) = &shared.load().revocation_cache {
                        c.log_metrics();
                    }
                }
            })
        });
        let mut signals = signals;
        loop {
            match signals.next().await {
                Signal::Stop => break,
                Signal::Reopen => {}
                Signal::Reload => match &reloader {
                    Some(r) => {
                        crate::sd_notify::notify("RELOADING=1");
                        let r = r.clone();
                        // Files and keys are read on the blocking pool, not this loop.
                        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                        crate::sd_notify::notify("READY=1");
                    }
                    None => tracing::warn!("SIGHUP: no configuration file to reload"),
                },
            }
            // SIGHUP and SIGUSR1 reopen the audit log (log rotation).
            if let Some(a) = &audit {
                a.reopen();
            }
        }
        crate::sd_notify::notify("STOPPING=1");
        tracing::info!("shutdown requested: no longer accepting, draining in-flight requests");
        if let Some(t) = metrics_task {
            t.abort();
        }
    });
    running.signal_shutdown();
    running.join();
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a signal asks for.
enum Signal {
    /// SIGINT / SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
    /// SIGUSR1: reopen the audit log.
    Reopen,
}

/// The process's signal streams (registered before serving, so SIGHUP is never fatal).
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
    usr1: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let reg = |k: SignalKind, name: &str| match signal(k) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(signal = name, error = %e, "cannot handle signal");
                None
            }
        };
        Signals {
            int: reg(SignalKind::interrupt(), "SIGINT"),
            term: reg(SignalKind::terminate(), "SIGTERM"),
            hup: reg(SignalKind::hangup(), "SIGHUP"),
            usr1: reg(SignalKind::user_defined1(), "SIGUSR1"),
        }
    }

    async fn next(&mut self) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => Signal::Stop,
            _ = recv(&mut self.term) => Signal::Stop,
            _ = recv(&mut self.hup) => Signal::Reload,
            _ = recv(&mut self.usr1) => Signal::Reopen,
        }
    }
}
