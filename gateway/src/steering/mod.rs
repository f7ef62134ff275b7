//! Kernel connection steering: which worker gets a connection, and who is not let in.
//!
//! ```text
//! NIC ─► XDP `gateway_xdp` (mode xdp): blocklisted source → XDP_DROP;
//!        TCP to a listener port → cpumap redirect to CPU targets[flow_hash % n]
//!   ─► kernel TCP on that CPU ─► reuseport group: the listener of the worker pinned to
//!        this CPU (eBPF SK_REUSEPORT `SOCKETS[cpu]`, or classic BPF returning the listen
//!        index of this CPU's socket, or the kernel's hash when steering is off)
//! ```
//!
//! [`attach`] is called once the listener sockets of every worker exist (listening) and
//! before the workers accept. It probes what the process may do, falls back from the wanted
//! [`SteeringMode`] to the best available with exactly one warning (or, with
//! `required = true`, refuses with [`SteeringError::Unavailable`]), and returns a
//! [`SteeringHandle`] that detaches everything when dropped. The handle hands out
//! [`SteeringControl`]s (cheap clones) for the connection path (abuse reporting,
//! [`SteeringControl::is_blocked`]) and the metrics/admin side (counters, blocklist edits).
//!
//! Privileges: XDP needs CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON; SK_REUSEPORT needs CAP_BPF
//! + CAP_NET_ADMIN; the classic BPF fallback needs none.

mod abuse;
mod cbpf;
pub mod config;
#[allow(
    clippy::indexing_slicing,
    reason = "fixed-size eBPF map keys and values, indexed within their declared sizes"
)]
mod kernel;
#[allow(
    clippy::indexing_slicing,
    reason = "binary search over a sorted range array within its bounds"
)]
pub mod prefixset;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use aya::maps::{MapData, PerCpuArray};
use gateway_common::{ReuseportCounter, XdpCounter, BLOCK_ABUSE, BLOCK_STATIC, MAX_CPUS};

pub use config::{AbuseConfig, Cidr, CidrError, SteeringConfig, SteeringMode, XdpAttachMode};

/// One listener socket of a reuseport group and the CPU its worker is pinned to.
#[derive(Debug, Clone, Copy)]
pub struct GroupSocket<'a> {
    /// CPU the worker accepting on this socket is pinned to.
    pub cpu: u32,
    /// The listening socket (`SO_REUSEPORT`, `listen()` already called).
    pub fd: BorrowedFd<'a>,
}

/// The listeners of all workers on one address/port.
///
/// `sockets` must be in the order the sockets called `listen()` (the classic BPF fallback
/// addresses sockets by that index) and name each CPU at most once.
#[derive(Debug, Clone)]
pub struct ReuseportGroup<'a> {
    /// The listening port (host order); the XDP program steers TCP to it.
    pub port: u16,
    /// One socket per worker, in `listen()` order.
    pub sockets: Vec<GroupSocket<'a>>,
}

/// Errors of [`attach`] and of blocklist edits.
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    /// `required = true` and the wanted mode could not be had.
    #[error(
        "steering mode \"{wanted}\" is required ([steering] required = true) but unavailable: \
         {missing}. Grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (e.g. systemd \
         AmbientCapabilities=), or set required = false to run with the fallback"
    )]
    Unavailable {
        /// The wanted mode.
        wanted: SteeringMode,
        /// What was missing, in words.
        missing: String,
    },
    /// The groups passed to [`attach`] are unusable.
    #[error("reuseport group for port {port}: {reason}")]
    InvalidGroup {
        /// The group's port.
        port: u16,
        /// What is wrong.
        reason: String,
    },
    /// A kernel map update failed.
    #[error("{0}")]
    Map(String),
}

/// How sockets are selected within a reuseport group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSelection {
    /// eBPF SK_REUSEPORT: the listener of the current CPU's worker.
    Ebpf,
    /// Classic BPF: the listener of the current CPU's worker.
    Cbpf,
    /// The kernel's reuseport hash.
    KernelHash,
}

impl SocketSelection {
    /// In words, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Ebpf => "eBPF SK_REUSEPORT picks the worker of the receiving CPU",
            Self::Cbpf => "classic BPF picks the worker of the receiving CPU",
            Self::KernelHash => "the kernel's reuseport hash picks the worker",
        }
    }
}

/// What [`attach`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringReport {
    /// The mode asked for (`auto` resolved).
    pub wanted: SteeringMode,
    /// The mode in effect.
    pub active: SteeringMode,
    /// Socket selection in effect.
    pub selection: SocketSelection,
    /// `(interface, "driver" | "generic")` for each XDP attachment.
    pub xdp_interfaces: Vec<(String, &'static str)>,
    /// Whether TCP to the listener ports is redirected through the cpumap.
    pub cpumap: bool,
    /// Why `active` is below `wanted` (empty when it is not).
    pub missing: Vec<String>,
}

/// Counter values, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteeringCounters {
    /// XDP: packets seen.
    pub xdp_seen: u64,
    /// XDP: packets passed unchanged.
    pub xdp_passed: u64,
    /// XDP: packets dropped by the blocklist.
    pub xdp_dropped: u64,
    /// XDP: packets redirected through the cpumap.
    pub xdp_redirected: u64,
    /// XDP: redirects refused by the helper (passed instead).
    pub xdp_redirect_errors: u64,
    /// SK_REUSEPORT: connections given to the current CPU's worker.
    pub reuseport_selected: u64,
    /// SK_REUSEPORT: no worker on the current CPU, kernel hash used.
    pub reuseport_fallback: u64,
    /// Sources blocked by abuse blocking so far.
    pub abuse_blocks: u64,
    /// Sources currently blocked by abuse blocking.
    pub abuse_blocked_now: u64,
}

impl SteeringCounters {
    /// `(metric name, value)` pairs for the metrics endpoint.
    pub fn pairs(&self) -> [(&'static str, u64); 9] {
        [
            ("steering_xdp_seen_packets_total", self.xdp_seen),
            ("steering_xdp_passed_packets_total", self.xdp_passed),
            ("steering_xdp_dropped_packets_total", self.xdp_dropped),
            ("steering_xdp_redirected_packets_total", self.xdp_redirected),
            (
                "steering_xdp_redirect_errors_total",
                self.xdp_redirect_errors,
            ),
            ("steering_reuseport_selected_total", self.reuseport_selected),
            ("steering_reuseport_fallback_total", self.reuseport_fallback),
            ("steering_abuse_blocks_total", self.abuse_blocks),
            ("steering_abuse_blocked_sources", self.abuse_blocked_now),
        ]
    }
}

/// Whether this binary carries the eBPF programs (built with the eBPF toolchain).
pub fn ebpf_programs_embedded() -> bool {
    kernel::missing_programs().is_none()
}

/// What this process could set up, found without setting anything up (for `gateway probe`
/// style diagnostics). [`attach`] still verifies by loading: a kernel may refuse a program
/// the capabilities allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Why the eBPF programs are not in this binary, if they are not.
    pub programs_missing: Option<String>,
    /// Capabilities XDP needs that this thread lacks.
    pub xdp_missing_caps: Vec<&'static str>,
    /// Capabilities eBPF SK_REUSEPORT needs that this thread lacks.
    pub reuseport_missing_caps: Vec<&'static str>,
    /// The best mode that should be available (`reuseport-cbpf` needs nothing).
    pub best: SteeringMode,
}

/// Probes the eBPF programs and the capabilities steering needs.
pub fn probe() -> Probe {
    let programs_missing = kernel::missing_programs();
    let xdp_missing_caps = kernel::missing_caps(true);
    let reuseport_missing_caps = kernel::missing_caps(false);
    let best = match (
        &programs_missing,
        xdp_missing_caps.is_empty(),
        reuseport_missing_caps.is_empty(),
    ) {
        (None, true, _) => SteeringMode::Xdp,
        (None, false, true) => SteeringMode::Reuseport,
        _ => SteeringMode::ReuseportCbpf,
    };
    Probe {
        programs_missing,
        xdp_missing_caps,
        reuseport_missing_caps,
        best,
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "best steering mode available: {}", self.best)?;
        match &self.programs_missing {
            None => writeln!(f, "eBPF programs: embedded")?,
            Some(why) => writeln!(f, "eBPF programs: missing: {why}")?,
        }
        let caps = |v: &[&str]| {
            if v.is_empty() {
                "all present".to_string()
            } else {
                format!("missing {}", v.join(", "))
            }
        };
        writeln!(f, "XDP capabilities: {}", caps(&self.xdp_missing_caps))?;
        write!(
            f,
            "SK_REUSEPORT capabilities: {}",
            caps(&self.reuseport_missing_caps)
        )
    }
}

/// The CPU the XDP program steers the TCP connection `src → dst` to, given the worker CPUs
/// in the order passed to [`attach`] (deduplicated, first appearance). `None` without CPUs.
pub fn predicted_cpu(targets: &[u32], src: SocketAddr, dst: SocketAddr) -> Option<u32> {
    let words = |ip: IpAddr| match ip.to_canonical() {
        IpAddr::V4(a) => gateway_common::v4_words(a.octets()),
        IpAddr::V6(a) => gateway_common::v6_words(a.octets()),
    };
    if targets.is_empty() {
        return None;
    }
    let h = gateway_common::flow_hash(words(src.ip()), words(dst.ip()), src.port(), dst.port());
    targets.get((h % targets.len() as u32) as usize).copied()
}

/// The blocklist as userspace sees it, published RCU-style for [`SteeringControl::is_blocked`].
#[derive(Debug, Default)]
struct BlockView {
    /// The static and operator prefixes, as configured (for edits).
    nets: Vec<Cidr>,
    /// The same, as a sorted range set for O(log n) lookups at accept.
    set: prefixset::PrefixSet,
    /// Sources blocked by abuse blocking, by [`abuse_key`].
    hosts: HashSet<IpAddr>,
}

impl BlockView {
    fn new(nets: Vec<Cidr>, hosts: HashSet<IpAddr>) -> Self {
        BlockView {
            set: prefixset::PrefixSet::new(&nets),
            nets,
            hosts,
        }
    }
}

/// What abuse blocking counts and blocks: an IPv4 address, or the /64 of an IPv6 address
/// (one host usually owns a whole /64, and could otherwise rotate through 2^64 addresses).
/// IPv4-mapped IPv6 addresses count as IPv4.
pub fn abuse_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !u128::from(u64::MAX)).into()),
    }
}

/// The blocklist entry of an abuse key: /32 or /64.
fn abuse_net(key: IpAddr) -> Cidr {
    match key {
        IpAddr::V4(_) => Cidr::host(key),
        IpAddr::V6(_) => Cidr::new(key, 64).unwrap_or_else(|_| Cidr::host(key)),
    }
}

struct Shared {
    report: SteeringReport,
    targets: Vec<u32>,
    abuse_cfg: AbuseConfig,
    xdp_maps: Option<Mutex<kernel::XdpMaps>>,
    xdp_counters: Option<PerCpuArray<MapData, u64>>,
    reuseport_counters: Vec<PerCpuArray<MapData, u64>>,
    view: ArcSwap<BlockView>,
    /// Serializes writers of `view` and of the XDP tries.
    write: Mutex<()>,
    abuse: Mutex<abuse::AbuseTracker>,
    abuse_blocks: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cheap, cloneable view of the steering state for workers and the control thread.
#[derive(Clone)]
pub struct SteeringControl {
    shared: Arc<Shared>,
}

impl fmt::Debug for SteeringControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteeringControl")
            .field("report", &self.shared.report)
            .finish_non_exhaustive()
    }
}

impl SteeringControl {
    /// What [`attach`] achieved.
    pub fn report(&self) -> &SteeringReport {
        &self.shared.report
    }

    /// The worker CPUs, in the order the XDP program indexes them (see [`predicted_cpu`]).
    pub fn targets(&self) -> &[u32] {
        &self.shared.targets
    }

    /// Current counter values.
    pub fn counters(&self) -> SteeringCounters {
        let mut c = SteeringCounters::default();
        if let Some(m) = &self.shared.xdp_counters {
            c.xdp_seen = kernel::xdp_sum(m, XdpCounter::Seen);
            c.xdp_passed = kernel::xdp_sum(m, XdpCounter::Passed);
            c.xdp_dropped = kernel::xdp_sum(m, XdpCounter::Dropped);
            c.xdp_redirected = kernel::xdp_sum(m, XdpCounter::Redirected);
            c.xdp_redirect_errors = kernel::xdp_sum(m, XdpCounter::RedirectErrors);
        }
        for m in &self.shared.reuseport_counters {
            c.reuseport_selected += kernel::sum(m, ReuseportCounter::Selected as u32);
            c.reuseport_fallback += kernel::sum(m, ReuseportCounter::Fallback as u32);
        }
        c.abuse_blocks = self.shared.abuse_blocks.load(Ordering::Relaxed);
        c.abuse_blocked_now = self.shared.view.load().hosts.len() as u64;
        c
    }

    /// Whether `ip` is on the blocklist (static, added by [`Self::block`], or by abuse
    /// blocking). A lock-free read; with XDP the kernel already drops these sources, without
    /// it the accept path should close such connections at once.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let view = self.shared.view.load();
        (!view.hosts.is_empty() && view.hosts.contains(&abuse_key(ip))) || view.set.contains(ip)
    }

    /// Puts `net` on the blocklist (XDP drops its packets when XDP is active).
    ///
    /// # Errors
    /// [`SteeringError::Map`] when the kernel map update fails.
    pub fn block(&self, net: Cidr) -> Result<(), SteeringError> {
        let _w = lock(&self.shared.write);
        if let Some(m) = &self.shared.xdp_maps {
            lock(m)
                .insert(net, BLOCK_STATIC)
                .map_err(SteeringError::Map)?;
        }
        let old = self.shared.view.load();
        let mut nets = old.nets.clone();
        if !nets.contains(&net) {
            nets.push(net);
        }
        self.shared
            .view
            .store(Arc::new(BlockView::new(nets, old.hosts.clone())));
        Ok(())
    }

    /// Removes `net` (exactly as added) from the blocklist.
    ///
    /// # Errors
    /// [`SteeringError::Map`] when the kernel map update fails.
    pub fn unblock(&self, net: Cidr) -> Result<(), SteeringError> {
        let _w = lock(&self.shared.write);
        if let Some(m) = &self.shared.xdp_maps {
            lock(m).remove(net).map_err(SteeringError::Map)?;
        }
        let old = self.shared.view.load();
        let nets = old.nets.iter().copied().filter(|n| *n != net).collect();
        self.shared
            .view
            .store(Arc::new(BlockView::new(nets, old.hosts.clone())));
        Ok(())
    }

    /// Reports a client-caused failure from `ip` (bad, revoked or missing client
    /// certificate on a SENSITIVE listener, a protocol error after the ClientHello; the
    /// connection path never reports revocation outages or empty connections). With abuse
    /// blocking enabled, `max_failures` of them within `window_secs` from one source (an
    /// IPv4 address or an IPv6 /64) block it for `cooldown_secs`. Cheap when disabled.
    pub fn record_handshake_failure(&self, ip: IpAddr) {
        if !self.shared.abuse_cfg.enabled {
            return;
        }
        let ip = abuse_key(ip);
        let block = lock(&self.shared.abuse).record(ip, Instant::now());
        if block {
            self.shared.abuse_blocks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                source = %ip,
                failures = self.shared.abuse_cfg.max_failures,
                window_secs = self.shared.abuse_cfg.window_secs,
                cooldown_secs = self.shared.abuse_cfg.cooldown_secs,
                "abuse blocking: source blocked after repeated handshake failures"
            );
            self.set_host_blocked(ip, true);
        }
    }

    fn set_host_blocked(&self, ip: IpAddr, blocked: bool) {
        let _w = lock(&self.shared.write);
        let net = abuse_net(ip);
        if let Some(m) = &self.shared.xdp_maps {
            let mut m = lock(m);
            // Never touch an entry that the static blocklist (or an operator) owns.
            let owned_elsewhere = m.get(net).is_some_and(|e| e.reason != BLOCK_ABUSE);
            let r = match (owned_elsewhere, blocked) {
                (true, _) => Ok(()),
                (false, true) => m.insert(net, BLOCK_ABUSE),
                (false, false) => m.remove(net),
            };
            if let Err(e) = r {
                tracing::error!(source = %ip, "abuse blocking: {e}");
            }
        }
        let old = self.shared.view.load();
        let mut hosts = old.hosts.clone();
        if blocked {
            hosts.insert(ip);
        } else {
            hosts.remove(&ip);
        }
        self.shared
            .view
            .store(Arc::new(BlockView::new(old.nets.clone(), hosts)));
    }

    /// Lifts abuse blocks whose cooldown ended; the handle's control thread calls it.
    fn expire(&self) {
        let done = lock(&self.shared.abuse).expire(Instant::now());
        for ip in done {
            tracing::info!(source = %ip, "abuse blocking: cooldown over, source unblocked");
            self.set_host_blocked(ip, false);
        }
    }
}

/// Identity of an open file descriptor (`socket:[inode]`), to avoid acting on a reused fd.
fn fd_identity(fd: RawFd) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

/// Owns everything [`attach`] set up; dropping it detaches the reuseport programs (from
/// groups whose sockets are still open) and the XDP program from every interface.
pub struct SteeringHandle {
    control: SteeringControl,
    /// Group sockets a program was attached through, with their identity at attach time.
    attached_groups: Vec<(RawFd, Option<std::path::PathBuf>)>,
    stop: Arc<AtomicBool>,
    expiry: Option<JoinHandle<()>>,
    _reuseport: Vec<aya::Ebpf>,
    xdp: Option<aya::Ebpf>,
}

impl fmt::Debug for SteeringHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteeringHandle")
            .field("report", self.report())
            .finish_non_exhaustive()
    }
}

impl SteeringHandle {
    /// A control for workers, metrics and the admin side.
    pub fn control(&self) -> SteeringControl {
        self.control.clone()
    }

    /// What [`attach`] achieved.
    pub fn report(&self) -> &SteeringReport {
        self.control.report()
    }
}

impl std::ops::Deref for SteeringHandle {
    type Target = SteeringControl;

    fn deref(&self) -> &SteeringControl {
        &self.control
    }
}

impl Drop for SteeringHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.expiry.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        for (fd, id) in &self.attached_groups {
            if id.is_some() && fd_identity(*fd) == *id {
                let _ = cbpf::detach(*fd);
            }
        }
        // Dropping the object closes the XDP links: the kernel detaches the program.
        self.xdp.take();
    }
}

fn validate_groups(groups: &[ReuseportGroup<'_>]) -> Result<Vec<u32>, SteeringError> {
    let mut targets = Vec::new();
    for g in groups {
        let bad = |reason: &str| SteeringError::InvalidGroup {
            port: g.port,
            reason: reason.to_string(),
        };
        if g.sockets.is_empty() {
            return Err(bad("no sockets"));
        }
        let mut seen = HashSet::new();
        for s in &g.sockets {
            if s.cpu >= MAX_CPUS {
                return Err(bad(&format!(
                    "CPU {} beyond the {MAX_CPUS} supported",
                    s.cpu
                )));
            }
            if !seen.insert(s.cpu) {
                return Err(bad(&format!("CPU {} has two sockets", s.cpu)));
            }
            if !targets.contains(&s.cpu) {
                targets.push(s.cpu);
            }
        }
    }
    Ok(targets)
}

/// Sets up steering for `groups` as `cfg` asks. Call after every socket of every group has
/// called `listen()` and before the workers accept; keep the handle for the process's life
/// (drop it after the workers stopped).
///
/// Falls back `xdp → reuseport → reuseport-cbpf → off` as far as needed and logs exactly
/// one warning naming what was missing; with `cfg.required` it refuses instead.
///
/// # Errors
/// [`SteeringError::Unavailable`] when `cfg.required` and the mode cannot be had;
/// [`SteeringError::InvalidGroup`] for unusable groups.
pub fn attach(
    cfg: &SteeringConfig,
    groups: &[ReuseportGroup<'_>],
) -> Result<SteeringHandle, SteeringError> {
    attach_inner(cfg, groups, None)
}

/// [`attach`] for the gateway's worker layout: `listeners[l] = (port, fds)` with `fds[w]`
/// the socket of worker `w` (in `listen()` order), and `worker_cpus[w]` the CPU worker `w`
/// is pinned to. Workers that are not pinned one per CPU cannot be steered by CPU: then
/// only the XDP blocklist is set up, with the usual single warning (or the refusal when
/// `required`).
///
/// # Errors
/// As [`attach`].
pub fn attach_workers(
    cfg: &SteeringConfig,
    worker_cpus: &[Option<u32>],
    listeners: &[(u16, Vec<BorrowedFd<'_>>)],
) -> Result<SteeringHandle, SteeringError> {
    let mut cpus = Vec::with_capacity(worker_cpus.len());
    for c in worker_cpus {
        match c {
            Some(c) if !cpus.contains(c) => cpus.push(*c),
            _ => {
                let why = "workers are not pinned one per CPU (global.pin_workers = false, or \
                           more workers than CPUs): connections cannot be steered by CPU"
                    .to_string();
                return attach_inner(cfg, &[], Some(why));
            }
        }
    }
    let groups: Vec<ReuseportGroup<'_>> = listeners
        .iter()
        .map(|(port, fds)| ReuseportGroup {
            port: *port,
            sockets: fds
                .iter()
                .zip(&cpus)
                .map(|(fd, cpu)| GroupSocket { cpu: *cpu, fd: *fd })
                .collect(),
        })
        .collect();
    attach_inner(cfg, &groups, None)
}

/// A handshake-failure hook that can be handed to the connection path before [`attach`]
/// ran; reports go nowhere until [`FailureReporter::connect`].
#[derive(Clone, Default)]
pub struct FailureReporter(Arc<std::sync::OnceLock<SteeringControl>>);

impl fmt::Debug for FailureReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailureReporter")
    }
}

impl FailureReporter {
    /// Sends later reports to `control` (the first call wins).
    pub fn connect(&self, control: SteeringControl) {
        let _ = self.0.set(control);
    }

    /// [`SteeringControl::record_handshake_failure`], once connected.
    pub fn report(&self, ip: IpAddr) {
        if let Some(c) = self.0.get() {
            c.record_handshake_failure(ip);
        }
    }
}

fn attach_inner(
    cfg: &SteeringConfig,
    groups: &[ReuseportGroup<'_>],
    unsteerable: Option<String>,
) -> Result<SteeringHandle, SteeringError> {
    let targets = validate_groups(groups)?;
    let ports: Vec<u16> = groups.iter().map(|g| g.port).collect();
    let wanted = cfg.effective_mode();
    let mut missing: Vec<String> = Vec::new();
    if wanted != SteeringMode::Off {
        missing.extend(unsteerable);
    }
    let no_programs = kernel::missing_programs();

    let mut xdp = None;
    if wanted == SteeringMode::Xdp {
        let caps = kernel::missing_caps(true);
        let r = if let Some(why) = &no_programs {
            Err(why.clone())
        } else if !caps.is_empty() {
            Err(format!("XDP needs {}", caps.join(", ")))
        } else {
            kernel::load_xdp(cfg, &ports, &targets)
        };
        match r {
            Ok(x) => xdp = Some(x),
            Err(why) => missing.push(format!("XDP unavailable ({why})")),
        }
    }

    let mut selection = SocketSelection::KernelHash;
    let mut reuseport = Vec::new();
    let mut attached_groups = Vec::new();
    if wanted >= SteeringMode::Reuseport && !groups.is_empty() {
        let caps = kernel::missing_caps(false);
        let r = if let Some(why) = &no_programs {
            Err(why.clone())
        } else if !caps.is_empty() {
            Err(format!("SK_REUSEPORT needs {}", caps.join(", ")))
        } else {
            groups.iter().map(kernel::load_reuseport).collect()
        };
        match r {
            Ok(r) => {
                reuseport = r;
                selection = SocketSelection::Ebpf;
            }
            Err(why) => {
                // Dedupe the reason shared with XDP (e.g. no programs in the binary).
                if no_programs.is_none() || missing.is_empty() {
                    missing.push(format!("eBPF socket selection unavailable ({why})"));
                }
                for g in groups {
                    if let Some(s) = g.sockets.first() {
                        let _ = cbpf::detach(s.fd.as_raw_fd());
                    }
                }
            }
        }
    }
    if selection == SocketSelection::KernelHash
        && wanted >= SteeringMode::ReuseportCbpf
        && !groups.is_empty()
    {
        let r: Result<(), String> = groups.iter().try_for_each(|g| {
            let cpus: Vec<u32> = g.sockets.iter().map(|s| s.cpu).collect();
            let fd = g.sockets.first().map(|s| s.fd.as_raw_fd()).unwrap_or(-1);
            cbpf::attach(fd, &cpus)
                .map_err(|e| format!("SO_ATTACH_REUSEPORT_CBPF on port {}: {e}", g.port))
        });
        match r {
            Ok(()) => selection = SocketSelection::Cbpf,
            Err(why) => missing.push(format!("classic BPF socket selection unavailable ({why})")),
        }
    }
    if selection != SocketSelection::KernelHash {
        for g in groups {
            if let Some(s) = g.sockets.first() {
                let fd = s.fd.as_raw_fd();
                attached_groups.push((fd, fd_identity(fd)));
            }
        }
    }

    let active = match (&xdp, selection) {
        (Some(_), SocketSelection::Ebpf) => SteeringMode::Xdp,
        (_, SocketSelection::Ebpf) => SteeringMode::Reuseport,
        (_, SocketSelection::Cbpf) => SteeringMode::ReuseportCbpf,
        (_, SocketSelection::KernelHash) => SteeringMode::Off,
    };
    let report = SteeringReport {
        wanted,
        active,
        selection,
        xdp_interfaces: xdp.as_ref().map(|x| x.attached.clone()).unwrap_or_default(),
        cpumap: xdp.is_some() && cfg.cpumap,
        missing: missing.clone(),
    };
    let refuse = cfg.required && (active < wanted || !missing.is_empty());
    if !refuse && xdp.is_none() && (!cfg.blocklist.is_empty() || cfg.abuse.enabled) {
        missing.push(
            "without XDP the blocklist and abuse blocking are enforced by the workers at \
             accept (connection closed at once), not by the kernel"
                .to_string(),
        );
    }
    let report = SteeringReport {
        missing: missing.clone(),
        ..report
    };
    if refuse {
        // Dropping what was set up detaches it.
        for (fd, _) in &attached_groups {
            let _ = cbpf::detach(*fd);
        }
        return Err(SteeringError::Unavailable {
            wanted,
            missing: missing.join("; "),
        });
    }
    if missing.is_empty() {
        tracing::info!(
            mode = %active,
            selection = ?selection,
            xdp = ?report.xdp_interfaces,
            cpumap = report.cpumap,
            "steering active"
        );
    } else {
        let what = if active == wanted {
            format!("steering \"{active}\"")
        } else {
            format!("steering: running \"{active}\" instead of \"{wanted}\"")
        };
        tracing::warn!("{what} ({}): {}", selection.describe(), missing.join("; "));
    }

    let (xdp_ebpf, xdp_maps, xdp_counters) = match xdp {
        Some(x) => (Some(x.ebpf), Some(Mutex::new(x.maps)), Some(x.counters)),
        None => (None, None, None),
    };
    let (reuseport, reuseport_counters): (Vec<aya::Ebpf>, Vec<_>) =
        reuseport.into_iter().map(|r| (r.ebpf, r.counters)).unzip();
    let shared = Arc::new(Shared {
        report,
        targets,
        abuse_cfg: cfg.abuse.clone(),
        xdp_maps,
        xdp_counters,
        reuseport_counters,
        view: ArcSwap::from_pointee(BlockView::new(cfg.blocklist.clone(), HashSet::new())),
        write: Mutex::new(()),
        abuse: Mutex::new(abuse::AbuseTracker::new(&cfg.abuse)),
        abuse_blocks: AtomicU64::new(0),
    });
    let control = SteeringControl { shared };
    let stop = Arc::new(AtomicBool::new(false));
    let expiry = if cfg.abuse.enabled {
        let c = control.clone();
        let s = Arc::clone(&stop);
        let tick = Duration::from_millis((cfg.abuse.cooldown_secs * 250).clamp(50, 1000));
        std::thread::Builder::new()
            .name("steering-expiry".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    c.expire();
                }
            })
            .ok()
    } else {
        None
    };
    Ok(SteeringHandle {
        control,
        attached_groups,
        stop,
        expiry,
        _reuseport: reuseport,
        xdp: xdp_ebpf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicted_cpu_spreads_flows_and_treats_mapped_v4_as_v4() {
        let targets = [3, 7];
        let dst: SocketAddr = "10.0.0.1:443".parse().expect("addr");
        let mut hits = [0usize; 2];
        for port in 1024..3072u16 {
            let src = SocketAddr::new("192.0.2.9".parse().expect("ip"), port);
            let cpu = predicted_cpu(&targets, src, dst).expect("targets");
            hits[usize::from(cpu == 7)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
        let v4: SocketAddr = "192.0.2.9:5000".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:5000".parse().expect("addr");
        assert_eq!(
            predicted_cpu(&targets, v4, dst),
            predicted_cpu(&targets, mapped, dst)
        );
        assert_eq!(predicted_cpu(&[], v4, dst), None);
    }

    /// IPv6 sources are counted and blocked per /64: a host rotating through the addresses
    /// of its /64 is one source; its neighbour /64 is not affected.
    #[test]
    fn abuse_counts_and_blocks_ipv6_per_64() {
        let cfg = SteeringConfig {
            mode: SteeringMode::Off,
            abuse: AbuseConfig {
                enabled: true,
                max_failures: 3,
                window_secs: 60,
                cooldown_secs: 60,
                max_tracked: 1024,
            },
            ..SteeringConfig::default()
        };
        let handle = attach(&cfg, &[]).expect("attach");
        let c = handle.control();
        for a in [
            "2001:db8:1:2::1",
            "2001:db8:1:2::beef",
            "2001:db8:1:2:ffff::9",
        ] {
            assert!(!c.is_blocked(a.parse().expect("ip")));
            c.record_handshake_failure(a.parse().expect("ip"));
        }
        assert!(c.is_blocked("2001:db8:1:2:1234::1".parse().expect("ip")));
        assert!(!c.is_blocked("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(c.counters().abuse_blocks, 1);
        // IPv4 stays per address; mapped addresses are the same source.
        for _ in 0..3 {
            c.record_handshake_failure("::ffff:192.0.2.7".parse().expect("ip"));
        }
        assert!(c.is_blocked("192.0.2.7".parse().expect("ip")));
        assert!(!c.is_blocked("192.0.2.8".parse().expect("ip")));
        assert_eq!(
            abuse_key("2001:db8::1:2:3:4".parse().expect("ip")).to_string(),
            "2001:db8::"
        );
    }

    #[test]
    fn attach_rejects_a_cpu_named_twice() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        use std::os::fd::AsFd;
        let group = ReuseportGroup {
            port: 1,
            sockets: vec![
                GroupSocket {
                    cpu: 0,
                    fd: a.as_fd(),
                },
                GroupSocket {
                    cpu: 0,
                    fd: b.as_fd(),
                },
            ],
        };
        let err = attach(&SteeringConfig::default(), &[group]).expect_err("duplicate CPU");
        assert!(
            matches!(err, SteeringError::InvalidGroup { port: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn unpinned_workers_run_on_the_kernel_hash_or_refuse_when_required() {
        use std::os::fd::AsFd;
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
        let listeners = [(port, vec![a.as_fd()])];
        let cfg = SteeringConfig {
            mode: SteeringMode::ReuseportCbpf,
            ..SteeringConfig::default()
        };
        let h = attach_workers(&cfg, &[None], &listeners).expect("falls back");
        assert_eq!(h.report().selection, SocketSelection::KernelHash);
        assert!(h.report().missing[0].contains("not pinned"));
        let required = SteeringConfig {
            required: true,
            ..cfg
        };
        let err = attach_workers(&required, &[None], &listeners).expect_err("refuses");
        assert!(matches!(err, SteeringError::Unavailable { .. }), "{err}");
    }

    #[test]
    fn probe_describes_itself() {
        let p = probe();
        assert!(p.to_string().contains("best steering mode available"));
    }
}
