//! Dropping privileges after start-up.
//!
//! The gateway starts as root or with capabilities (`CAP_NET_BIND_SERVICE` for port 443,
//! `CAP_BPF`/`CAP_NET_ADMIN`/`CAP_PERFMON` for eBPF), binds its sockets, attaches its eBPF
//! programs and reads its keys, and then, before any worker parses a byte from the network:
//!
//! 1. drops the capability bounding set and clears the ambient set, and sets
//!    `PR_SET_NO_NEW_PRIVS` (so no `execve` can ever regain privileges), **on every thread**;
//! 2. switches to the configured group and user (`setgroups`, `setresgid`, `setresuid`;
//!    glibc applies these to every thread of the process);
//! 3. clears the permitted, effective and inheritable capability sets on every thread;
//! 4. reads `/proc/self/task/*/status` back and refuses to go on unless every thread has
//!    no capability at all, `NoNewPrivs: 1`, and the expected user and groups.
//!
//! Capabilities, the bounding set and no_new_privs are per-thread attributes on Linux, and
//! a few threads exist before the workers (the revocation fetch thread, the steering
//! control thread): steps 1 and 3 therefore run on each thread, the way glibc runs
//! `setresuid` on each thread: a real-time signal is sent to every other thread of the
//! process and its handler makes the (async-signal-safe) system calls on that thread. File
//! descriptors are process-wide, so the sockets and eBPF map/link descriptors opened before
//! stay usable.
//!
//! Still running as root after this (no `user` configured, started as root) is refused
//! unless `[global] allow_root = true`, a relaxation that is logged (capabilities are still
//! all dropped).

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What to switch to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivilegeConfig {
    /// User name (or numeric id) to run as after start-up.
    pub user: Option<String>,
    /// Group name (or numeric id); default: the user's primary group.
    pub group: Option<String>,
    /// Keep running as uid 0 when started as root without `user` (relaxation).
    pub allow_root: bool,
}

/// Errors dropping privileges. Each one stops the start-up: the gateway never serves with
/// more privileges than it meant to keep.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The configured user does not exist.
    #[error("no such user {0:?} (global.user)")]
    NoUser(String),
    /// The configured group does not exist.
    #[error("no such group {0:?} (global.group)")]
    NoGroup(String),
    /// A group without a user.
    #[error("global.group is set without global.user; set both (or neither)")]
    GroupWithoutUser,
    /// Started as root, nothing to switch to, no relaxation.
    #[error(
        "refusing to keep running as root after start-up: set [global] user = \"...\" (e.g. a \
         dedicated `gateway` user, or \"nobody\") so the gateway switches to it after binding \
         and loading its keys, or set [global] allow_root = true (a relaxation)"
    )]
    Root,
    /// The configured user is root.
    #[error("user {0:?} is uid 0: choose an unprivileged user (global.user)")]
    UserIsRoot(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was attempted.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread did not drop (found when reading the state back).
    #[error("privilege drop incomplete: {0}")]
    Incomplete(String),
}

/// What was done, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Real/effective/saved uid now.
    pub uid: u32,
    /// Real/effective/saved gid now.
    pub gid: u32,
    /// Threads checked.
    pub threads: usize,
    /// Whether the bounding set could be emptied (needs `CAP_SETPCAP` at start).
    pub bounding_cleared: bool,
}

/// A resolved target user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    uid: u32,
    gid: u32,
}

fn sys_err(what: impl Into<String>) -> PrivilegeError {
    PrivilegeError::Sys {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// Looks up a user: `(uid, primary gid)`.
fn lookup_user(name: &str) -> Result<(u32, u32), PrivilegeError> {
    let c = CString::new(name).map_err(|_| PrivilegeError::NoUser(name.into()))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives the use of `pwd`.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    // A numeric id that is not in the user database.
    match name.parse::<u32>() {
        Ok(uid) => Ok((uid, uid)),
        Err(_) => Err(PrivilegeError::NoUser(name.into())),
    }
}

/// Looks up a group id.
fn lookup_group(name: &str) -> Result<u32, PrivilegeError> {
    let c = CString::new(name).map_err(|_| PrivilegeError::NoGroup(name.into()))?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let rc =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() {
        return Ok(grp.gr_gid);
    }
    name.parse::<u32>()
        .map_err(|_| PrivilegeError::NoGroup(name.into()))
}

impl PrivilegeConfig {
    /// Checks that the user and group exist (for `check-config`).
    ///
    /// # Errors
    /// [`PrivilegeError`] naming the key.
    pub fn validate(&self) -> Result<(), PrivilegeError> {
        self.target().map(|_| ())
    }

    fn target(&self) -> Result<Option<Target>, PrivilegeError> {
        let Some(user) = &self.user else {
            return match self.group {
                Some(_) => Err(PrivilegeError::GroupWithoutUser),
                None => Ok(None),
            };
        };
        let (uid, primary) = lookup_user(user)?;
        if uid == 0 {
            return Err(PrivilegeError::UserIsRoot(user.clone()));
        }
        let gid = match &self.group {
            Some(g) => lookup_group(g)?,
            None => primary,
        };
        Ok(Some(Target { uid, gid }))
    }
}

// ---- running a function on every thread --------------------------------------------------

/// The step the signal handler runs on its thread.
const STEP_NONE: u8 = 0;
const STEP_BOUNDING: u8 = 1;
const STEP_CLEAR: u8 = 2;

static STEP: AtomicU8 = AtomicU8::new(STEP_NONE);
static ACKS: AtomicUsize = AtomicUsize::new(0);
/// First errno a handler hit (0: none).
static HANDLER_ERRNO: AtomicI32 = AtomicI32::new(0);
/// Whether dropping the bounding set is attempted (needs CAP_SETPCAP).
static TRY_BOUNDING: AtomicU8 = AtomicU8::new(0);

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number the kernel may know (`/proc/sys/kernel/cap_last_cap` is the
/// exact one; dropping unknown numbers fails with EINVAL, which is ignored).
const CAP_LAST_GUESS: libc::c_ulong = 63;

/// Drops the bounding set, clears the ambient set, sets no_new_privs: calling thread only.
/// Async-signal-safe (raw system calls only). Returns 0 or an errno.
fn step_bounding() -> i32 {
    // SAFETY: prctl with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return *libc::__errno_location();
        }
        // Clearing the ambient set needs no privilege; EINVAL on kernels without it.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if TRY_BOUNDING.load(Ordering::Acquire) == 1 {
            for cap in 0..=CAP_LAST_GUESS {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    let e = *libc::__errno_location();
                    if e != libc::EINVAL {
                        return e;
                    }
                }
            }
        }
    }
    0
}

/// Empties the permitted, effective and inheritable sets: calling thread only.
/// Async-signal-safe. Returns 0 or an errno.
fn step_clear() -> i32 {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset with a valid header and two data words (version 3).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        // SAFETY: reading this thread's errno.
        return unsafe { *libc::__errno_location() };
    }
    // SAFETY: prctl with integer arguments (set again: harmless if already set).
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    0
}

fn run_step(step: u8) -> i32 {
    match step {
        STEP_BOUNDING => step_bounding(),
        STEP_CLEAR => step_clear(),
        _ => 0,
    }
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // SAFETY: saving and restoring this thread's errno around the handler.
    let saved = unsafe { *libc::__errno_location() };
    let e = run_step(STEP.load(Ordering::Acquire));
    if e != 0 {
        let _ = HANDLER_ERRNO.compare_exchange(0, e, Ordering::AcqRel, Ordering::Acquire);
    }
    ACKS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn thread_ids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `step` on the calling thread and, through a signal, on every other thread of the
/// process; waits for all of them. Threads created meanwhile are caught by the read-back
/// check (the caller repeats the step for them).
fn on_every_thread(step: u8, only: Option<&[i32]>) -> Result<usize, PrivilegeError> {
    let sig = libc::SIGRTMIN() + 3;
    STEP.store(step, Ordering::Release);
    ACKS.store(0, Ordering::Release);
    HANDLER_ERRNO.store(0, Ordering::Release);
    // SAFETY: installing a handler that only makes async-signal-safe calls.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, &mut old) != 0 {
            return Err(sys_err("sigaction"));
        }
    }
    let me = gettid();
    let mine = run_step(step);
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let mut sent = 0;
    for tid in thread_ids() {
        if tid == me || only.is_some_and(|o| !o.contains(&tid)) {
            continue;
        }
        // SAFETY: tgkill to a thread of this process; ESRCH (it exited) is fine.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
        if rc == 0 {
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ACKS.load(Ordering::Acquire) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let acks = ACKS.load(Ordering::Acquire);
    // SAFETY: restoring the previous action.
    unsafe {
        libc::sigaction(sig, &old, std::ptr::null_mut());
    }
    STEP.store(STEP_NONE, Ordering::Release);
    let what = match step {
        STEP_BOUNDING => "dropping the capability bounding set / no_new_privs",
        _ => "clearing capabilities",
    };
    if mine != 0 {
        return Err(PrivilegeError::Sys {
            what: what.into(),
            source: std::io::Error::from_raw_os_error(mine),
        });
    }
    let e = HANDLER_ERRNO.load(Ordering::Acquire);
    if e != 0 {
        return Err(PrivilegeError::Sys {
            what: format!("{what} on another thread"),
            source: std::io::Error::from_raw_os_error(e),
        });
    }
    if acks < sent {
        return Err(PrivilegeError::Incomplete(format!(
            "{} of {sent} threads did not answer the drop signal within 5 s",
            sent - acks
        )));
    }
    Ok(sent + 1)
}

// ---- reading the state back ---------------------------------------------------------------

/// One thread's credentials as `/proc/<pid>/task/<tid>/status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadCreds {
    /// Thread id.
    pub tid: i32,
    /// Real, effective, saved, filesystem uid.
    pub uids: Vec<u32>,
    /// Real, effective, saved, filesystem gid.
    pub gids: Vec<u32>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// CapInh, CapPrm, CapEff, CapBnd, CapAmb.
    pub caps: [u64; 5],
    /// NoNewPrivs.
    pub no_new_privs: bool,
}

impl ThreadCreds {
    /// Parses a `status` file.
    pub fn parse(tid: i32, status: &str) -> Self {
        let mut c = ThreadCreds {
            tid,
            ..Default::default()
        };
        let nums = |v: &str| -> Vec<u32> {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        };
        for line in status.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let hex = || u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX);
            match k {
                "Uid" => c.uids = nums(v),
                "Gid" => c.gids = nums(v),
                "Groups" => c.groups = nums(v),
                "CapInh" => c.caps[0] = hex(),
                "CapPrm" => c.caps[1] = hex(),
                "CapEff" => c.caps[2] = hex(),
                "CapBnd" => c.caps[3] = hex(),
                "CapAmb" => c.caps[4] = hex(),
                "NoNewPrivs" => c.no_new_privs = v.trim() == "1",
                _ => {}
            }
        }
        c
    }
}

/// The credentials of every thread of process `pid` (`"self"` for this one).
pub fn thread_creds(pid: &str) -> Vec<ThreadCreds> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(&dir) {
        for e in d.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(e.path().join("status")) {
                out.push(ThreadCreds::parse(tid, &s));
            }
        }
    }
    out
}

/// Threads that still hold something: `(tid, what)`.
fn offenders(expect: Option<Target>, bounding: bool) -> Vec<(i32, String)> {
    thread_creds("self")
        .into_iter()
        .filter_map(|c| {
            let mut bad = Vec::new();
            let [inh, prm, eff, bnd, amb] = c.caps;
            if inh | prm | eff | amb != 0 {
                bad.push(format!(
                    "capabilities inh={inh:x} prm={prm:x} eff={eff:x} amb={amb:x}"
                ));
            }
            if bounding && bnd != 0 {
                bad.push(format!("bounding set {bnd:x}"));
            }
            if !c.no_new_privs {
                bad.push("no_new_privs not set".into());
            }
            if let Some(t) = expect {
                if c.uids.iter().any(|u| *u != t.uid) || c.gids.iter().any(|g| *g != t.gid) {
                    bad.push(format!("uids {:?} gids {:?}", c.uids, c.gids));
                }
                if c.groups.iter().any(|g| *g != t.gid) {
                    bad.push(format!("supplementary groups {:?}", c.groups));
                }
            }
            (!bad.is_empty()).then(|| (c.tid, bad.join(", ")))
        })
        .collect()
}

/// Whether the calling thread has `CAP_SETPCAP` in its effective set.
fn have_setpcap() -> bool {
    thread_creds("self")
        .into_iter()
        .find(|c| c.tid == gettid())
        .is_some_and(|c| c.caps[2] & (1 << 8) != 0)
}

/// Drops privileges for good (see the module documentation). Call it after binding,
/// attaching eBPF and reading keys, before the workers start.
///
/// # Errors
/// [`PrivilegeError`]: an unknown user or group, running as root without `user` and
/// without `allow_root`, a failed system call, or a thread found still privileged.
pub fn drop_privileges(cfg: &PrivilegeConfig) -> Result<Dropped, PrivilegeError> {
    let target = cfg.target()?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && target.is_none() && !cfg.allow_root {
        return Err(PrivilegeError::Root);
    }
    let bounding = have_setpcap();
    TRY_BOUNDING.store(u8::from(bounding), Ordering::Release);

    // 1. Bounding set, ambient set, no_new_privs on every thread (needs CAP_SETPCAP, which
    //    the uid change below takes away).
    let mut threads = on_every_thread(STEP_BOUNDING, None)?;

    // 2. Group and user: glibc runs these on every thread (its SETXID broadcast).
    if let Some(t) = target {
        let gids = [t.gid as libc::gid_t];
        // SAFETY: plain system call wrappers with valid arguments.
        unsafe {
            if libc::setgroups(1, gids.as_ptr()) != 0 {
                return Err(sys_err(format!("setgroups([{}])", t.gid)));
            }
            if libc::setresgid(t.gid, t.gid, t.gid) != 0 {
                return Err(sys_err(format!("setresgid({})", t.gid)));
            }
            if libc::setresuid(t.uid, t.uid, t.uid) != 0 {
                return Err(sys_err(format!("setresuid({})", t.uid)));
            }
        }
    }

    // 3. Whatever capabilities remain (a non-root start with capabilities keeps them across
    //    a same-uid "switch"): cleared on every thread.
    threads = threads.max(on_every_thread(STEP_CLEAR, None)?);

    // 4. Read back; threads born during the steps get the steps again, a few times.
    for _ in 0..5 {
        let bad = offenders(target, bounding);
        if bad.is_empty() {
            // SAFETY: getuid/getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            if euid == 0 && uid == 0 {
                tracing::warn!(
                    relaxation = "global.allow_root = true: still uid 0 after start-up (every capability dropped)",
                    "policy relaxed by configuration"
                );
            }
            return Ok(Dropped {
                uid,
                gid,
                threads,
                bounding_cleared: bounding,
            });
        }
        let tids: Vec<i32> = bad.iter().map(|(t, _)| *t).collect();
        if bad
            .iter()
            .any(|(_, w)| w.contains("uids") || w.contains("groups"))
        {
            // A thread with other ids cannot be fixed from here.
            return Err(PrivilegeError::Incomplete(format!("{bad:?}")));
        }
        let _ = on_every_thread(STEP_BOUNDING, Some(&tids));
        let _ = on_every_thread(STEP_CLEAR, Some(&tids));
    }
    Err(PrivilegeError::Incomplete(format!(
        "{:?}",
        offenders(target, bounding)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tgateway\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                 Groups:\t65534 \nNoNewPrivs:\t1\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                 CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let c = ThreadCreds::parse(7, s);
        assert_eq!(c.uids, vec![65534; 4]);
        assert_eq!(c.groups, vec![65534]);
        assert_eq!(c.caps, [0, 0, 0, 0x1ff_ffff_ffff, 0]);
        assert!(c.no_new_privs);
    }

    #[test]
    fn unknown_user_and_group_are_named() {
        let cfg = PrivilegeConfig {
            user: Some("no-such-user-xyz".into()),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(PrivilegeError::NoUser(_))));
        let cfg = PrivilegeConfig {
            user: Some("nobody".into()),
            group: Some("no-such-group-xyz".into()),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(PrivilegeError::NoGroup(_))));
        let cfg = PrivilegeConfig {
            group: Some("nogroup".into()),
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(PrivilegeError::GroupWithoutUser)
        ));
        let cfg = PrivilegeConfig {
            user: Some("root".into()),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(PrivilegeError::UserIsRoot(_))));
    }
}
