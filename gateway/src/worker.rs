//! Per-core workers: one OS thread per CPU, pinned, with its own current-thread tokio runtime
//! and its own `SO_REUSEPORT` listener socket per listener. Nothing is shared on the accept
//! path; the kernel (or the steering program) picks the worker for each connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::conn::{serve_connection, FailureHook, ListenerRuntime};
use crate::metrics::{Metrics, WorkerCounters};
use crate::plan::SharedPlan;

/// Errors setting up workers.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A listener socket could not be created or bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another socket already listens on the address: with `SO_REUSEPORT` both would bind
    /// and the kernel would silently share the connections between them.
    #[error("cannot listen on {addr}: the address is already in use by another listening socket (another gateway or server there would silently share its connections through SO_REUSEPORT)")]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The tokio runtime could not be built or the thread not spawned.
    #[error("cannot start worker {index}: {source}")]
    Spawn {
        /// Worker number.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most sizeof(cpu_set_t).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size for the current thread (pid 0).
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: index is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as above; CPU_SET with an index below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid pointer/size; pid 0 = calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPU the kernel processed an accepted socket's packets on (`SO_INCOMING_CPU`).
fn incoming_cpu(stream: &tokio::net::TcpStream) -> Option<usize> {
    socket2::SockRef::from(stream).cpu_affinity().ok()
}

/// Refuses an address another socket already listens on. The workers' sockets use
/// `SO_REUSEPORT`, under which a second process (an old gateway, a second instance started
/// by mistake) would bind the same port and receive a share of the connections, with its own
/// certificates and policy. A probe bind without `SO_REUSEPORT` fails when anyone listens
/// there. Port 0 (a fresh ephemeral port) is not probed.
///
/// # Errors
/// [`WorkerError::InUse`], or [`WorkerError::Listen`] for another bind failure.
pub(crate) fn ensure_not_listened(addr: SocketAddr) -> Result<(), WorkerError> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(WorkerError::InUse { addr }),
        Err(source) => Err(WorkerError::Listen { addr, source }),
    }
}

/// Creates one non-blocking `SO_REUSEPORT` listener socket bound to `addr`.
///
/// # Errors
/// [`WorkerError::Listen`] naming the address.
pub(crate) fn reuseport_listener(
    addr: SocketAddr,
    backlog: i32,
) -> Result<std::net::TcpListener, WorkerError> {
    let err = |source| WorkerError::Listen { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.set_reuse_port(true).map_err(err)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err)?;
    }
    sock.set_nodelay(true).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(backlog).map_err(err)?;
    Ok(sock.into())
}

/// What one worker serves.
pub(crate) struct WorkerPlan {
    /// Worker number (index into metrics).
    pub index: usize,
    /// CPU to pin to (None = unpinned).
    pub cpu: Option<usize>,
    /// One socket per listener, in the plan's listener order.
    pub sockets: Vec<std::net::TcpListener>,
    /// The plan served; a reload swaps it, the accept loop picks the change up.
    pub plan: SharedPlan,
    /// Failure hook (abuse blocking).
    pub on_failure: Option<FailureHook>,
    /// Blocklist consulted at accept (lock-free); with XDP the kernel drops these sources
    /// before a SYN is answered, without it the worker closes them here.
    pub blocklist: Option<crate::steering::SteeringControl>,
    /// The audit log, when configured.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

/// Starts a worker thread. It serves until `shutdown` turns true, then stops accepting and
/// drains in-flight connections for up to `grace`.
///
/// # Errors
/// [`WorkerError::Spawn`] if the thread cannot start.
pub(crate) fn spawn_worker(
    plan: WorkerPlan,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<std::thread::JoinHandle<()>, WorkerError> {
    let index = plan.index;
    std::thread::Builder::new()
        .name(format!("worker-{index}"))
        .spawn(move || {
            if let Some(cpu) = plan.cpu {
                if let Err(e) = pin_current_thread(cpu) {
                    tracing::warn!(worker = index, cpu, error = %e, "cannot pin worker to its CPU");
                }
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot build worker runtime");
                    return;
                }
            };
            rt.block_on(run_worker(plan, metrics, shutdown, grace));
        })
        .map_err(|source| WorkerError::Spawn { index, source })
}

async fn run_worker(
    plan: WorkerPlan,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let tracker = ConnTracker::default();
    let mut accept_tasks = Vec::new();
    tokio::spawn(crate::memory::release_when_quiet(shutdown.clone()));
    for (li, std_listener) in plan.sockets.into_iter().enumerate() {
        let Some(first) = plan.plan.load().listeners.get(li).cloned() else {
            tracing::error!(
                worker = plan.index,
                listener = li,
                "socket without a listener plan"
            );
            continue;
        };
        let shared = plan.plan.clone();
        let counters = metrics.listener_slot(&first.name, plan.index);
        let mut rt = Arc::new(ListenerRuntime::new(
            first,
            plan.on_failure.clone(),
            counters,
            plan.audit.clone(),
        ));
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = plan.index, error = %e, "cannot register listener");
                continue;
            }
        };
        let metrics = metrics.clone();
        let mut shutdown = shutdown.clone();
        let tracker = tracker.clone();
        let cpu = plan.cpu;
        let index = plan.index;
        let blocklist = plan.blocklist.clone();
        // This worker's open connections on this listener (only this thread touches it).
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        accept_tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    res = listener.accept() => match res {
                        Ok((stream, peer)) => {
                            let counters: &WorkerCounters = metrics.worker(index);
                            if blocklist.as_ref().is_some_and(|b| b.is_blocked(peer.ip())) {
                                WorkerCounters::inc(&counters.blocked);
                                drop(stream);
                                continue;
                            }
                            WorkerCounters::inc(&counters.accepted);
                            if open.load(std::sync::atomic::Ordering::Relaxed)
                                >= rt.plan.limits.max_connections_per_worker
                            {
                                // Accept and close at once: the backlog drains instead of
                                // filling, and the client sees a prompt close.
                                WorkerCounters::inc(&counters.over_capacity);
                                drop(stream);
                                continue;
                            }
                            if let Some(cpu) = cpu {
                                match incoming_cpu(&stream) {
                                    Some(c) if c == cpu => WorkerCounters::inc(&counters.local_cpu),
                                    Some(_) => WorkerCounters::inc(&counters.remote_cpu),
                                    None => {}
                                }
                            }
                            // A swapped plan: this worker's runtime (and pools) follow it.
                            if let Some(current) = shared.load().listeners.get(li) {
                                if !Arc::ptr_eq(current, &rt.plan) {
                                    let counters = metrics.listener_slot(&current.name, index);
                                    rt = Arc::new(ListenerRuntime::new(current.clone(), rt.on_failure.clone(), counters, rt.audit.clone()));
                                }
                            }
                            let rt = rt.clone();
                            let metrics = metrics.clone();
                            let guard = tracker.enter();
                            let shutdown = shutdown.clone();
                            let slot = OpenSlot::take(&open);
                            tokio::spawn(async move {
                                serve_connection(stream, peer, rt, metrics, index, shutdown).await;
                                drop(slot);
                                drop(guard);
                            });
                        }
                        Err(e) => {
                            // EMFILE and friends: back off briefly instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
        }));
    }
    let mut shutdown = shutdown;
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    for t in accept_tasks {
        let _ = t.await;
    }
    if tokio::time::timeout(grace, tracker.idle()).await.is_err() {
        tracing::warn!(
            worker = plan.index,
            open = tracker.open(),
            "drain deadline passed; closing remaining connections"
        );
    }
}

/// One open connection of a worker on one listener (for `max_connections_per_worker`);
/// released when dropped, even if the connection task panics.
struct OpenSlot(Arc<std::sync::atomic::AtomicUsize>);

impl OpenSlot {
    fn take(open: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenSlot(open.clone())
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts a worker's open connections so shutdown can wait for them to drain.
#[derive(Debug, Clone, Default)]
struct ConnTracker {
    inner: Arc<TrackerInner>,
}

#[derive(Debug, Default)]
struct TrackerInner {
    open: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a connection task; dropping it marks the connection closed.
struct ConnGuard(Arc<TrackerInner>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self
            .0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl ConnTracker {
    fn enter(&self) -> ConnGuard {
        self.inner
            .open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ConnGuard(self.inner.clone())
    }

    fn open(&self) -> usize {
        self.inner.open.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_another_socket_listens_on_is_refused() {
        // Another instance's SO_REUSEPORT socket (ours would join its group silently).
        let other = reuseport_listener("127.0.0.1:0".parse().expect("addr"), 16).expect("bind");
        let addr = other.local_addr().expect("addr");
        let e = ensure_not_listened(addr).expect_err("in use");
        assert!(matches!(e, WorkerError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("already in use"), "{e}");
        // Without the check, a second reuseport socket binds the same port.
        assert!(reuseport_listener(addr, 16).is_ok());
        drop(other);
        ensure_not_listened(addr).expect("free once the other socket is gone");
        ensure_not_listened("127.0.0.1:0".parse().expect("addr")).expect("port 0");
    }
}
