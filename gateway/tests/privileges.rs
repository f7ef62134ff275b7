//! Privileges, judged from outside the `gateway` process: started as root, `gateway serve`
//! binds, reads its keys, then every thread runs as the configured user with no capability
//! at all and no_new_privs, and still serves; started as root without `global.user` it
//! refuses (unless `allow_root`, which keeps uid 0 but drops every capability). Private keys
//! (dev PKI, `gateway passwd`) are created with mode 0600, never chmod-ed afterwards.
//!
//! The root tests are skipped with a message outside CI and fail under `CI=true` when not
//! root; the strace test likewise needs `strace` (installed by `cargo xtask test`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::privileges::{thread_creds, ThreadCreds};

/// The one skip policy, shared with the `gateway-tests` crate (each test file uses part of it).
#[allow(dead_code)]
#[path = "../../tests/src/skip.rs"]
mod skip;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn is_root() -> bool {
    thread_creds("self")
        .first()
        .is_some_and(|c| c.uids.get(1) == Some(&0))
}

fn can_run(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push((*tool).to_string());
        }
    }
    let _ = test;
    skip::can_run(&missing)
}

fn uid_gid(name: &str) -> (u32, u32) {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = line.trim().split(':').collect();
    (
        f.get(2).and_then(|v| v.parse().ok()).expect("uid"),
        f.get(3).and_then(|v| v.parse().ok()).expect("gid"),
    )
}

/// A dev PKI in a directory the target user can traverse (the CRL is re-read after the
/// drop; the keys stay root-only, read before it), and a config with `global_extra`.
fn config(dir: &Path, port: u16, global_extra: &str) -> std::path::PathBuf {
    let st = Command::new(BIN)
        .arg("dev-pki")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("gateway dev-pki");
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let p = |f: &str| format!("{:?}", dir.join(f).display().to_string());
    let text = format!(
        "[global]\nworkers = 2\nmetrics_interval_secs = 0\nshutdown_grace_secs = 1\n{global_extra}\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\nclassification = \"sensitive\"\n\
         backend = \"builtin:identity\"\nserver_cert = {}\nserver_key = {}\ntrusted_cas = [{}]\n\n\
         [listener.revocation]\norder = \"crl-only\"\ncrl_files = [{}]\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem"),
        p("ca.crl.pem"),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `gateway serve -c cfg` and waits for the "privileges dropped" line (or exit).
fn serve(cfg: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("privileges dropped");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// Every thread of `pid`, waiting until the worker threads exist.
fn threads_of(pid: u32, at_least: usize) -> Vec<ThreadCreds> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = thread_creds(&pid.to_string());
        if t.len() >= at_least || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl_identity(dir: &Path, port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("client.pem"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn serve_as_root_switches_user_and_drops_every_capability_on_every_thread() {
    if !can_run(
        "serve_as_root_switches_user_and_drops_every_capability_on_every_thread",
        &["curl", "getent"],
    ) {
        return;
    }
    let (uid, gid) = uid_gid("nobody");
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = config(tmp.path(), port, "user = \"nobody\"\n");
    let (child, log) = serve(&cfg);
    let pid = child.id();
    // Main thread, 2 workers, the revocation fetch thread at least.
    let threads = threads_of(pid, 4);
    let body = curl_identity(tmp.path(), port);
    // Threads the traffic may have started (blocking pool) are checked too.
    let after = thread_creds(&pid.to_string());
    stop(child);
    assert!(
        log.iter().any(|l| l.contains("privileges dropped")),
        "{log:#?}"
    );
    assert!(threads.len() >= 4, "{threads:#?}");
    for t in threads.iter().chain(&after) {
        assert_eq!(t.uids, vec![uid; 4], "thread {}: {t:?}", t.tid);
        assert_eq!(t.gids, vec![gid; 4], "thread {}: {t:?}", t.tid);
        assert!(
            t.groups.iter().all(|g| *g == gid),
            "thread {}: {t:?}",
            t.tid
        );
        assert_eq!(
            t.caps, [0; 5],
            "thread {}: CapInh/Prm/Eff/Bnd/Amb must all be empty: {t:?}",
            t.tid
        );
        assert!(t.no_new_privs, "thread {}: {t:?}", t.tid);
    }
    assert!(body.contains("Dev User"), "still serves: {body}");
}

#[test]
fn serve_as_root_without_user_refuses_and_allow_root_is_a_logged_relaxation() {
    if !can_run(
        "serve_as_root_without_user_refuses_and_allow_root_is_a_logged_relaxation",
        &["curl"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = config(tmp.path(), port, "");
    let out = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&cfg)
        .output()
        .expect("run gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not serve as root: {stderr}");
    assert!(
        stderr.contains("refusing to keep running as root") && stderr.contains("global"),
        "{stderr}"
    );

    let cfg = config(tmp.path(), port, "allow_root = true\n");
    let (child, log) = serve(&cfg);
    let threads = threads_of(child.id(), 4);
    let body = curl_identity(tmp.path(), port);
    stop(child);
    assert!(
        log.iter()
            .any(|l| l.contains("relaxation") && l.contains("allow_root")),
        "{log:#?}"
    );
    assert!(threads.len() >= 4, "{threads:#?}");
    for t in &threads {
        assert_eq!(t.uids, vec![0; 4], "{t:?}");
        assert_eq!(t.caps, [0; 5], "thread {}: {t:?}", t.tid);
        assert!(t.no_new_privs, "{t:?}");
    }
    assert!(body.contains("Dev User"), "{body}");
}

/// Private keys are created with mode 0600 by the open call itself (O_CREAT with 0600),
/// never written world-readable and chmod-ed afterwards: traced with strace.
#[test]
fn private_keys_are_created_0600_at_open() {
    if !skip::require_tool("strace") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = tmp.path().join("pki");
    let trace = tmp.path().join("trace");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-o"])
        .arg(&trace)
        .arg(BIN)
        .arg("dev-pki")
        .arg(&pki)
        .stdout(Stdio::null())
        .status()
        .expect("strace");
    assert!(st.success());
    let mut passwd = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-o"])
        .arg(tmp.path().join("trace2"))
        .arg(BIN)
        .arg("passwd")
        .arg(tmp.path().join("users"))
        .arg("alice")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace passwd");
    {
        use std::io::Write;
        let mut i = passwd.stdin.take().expect("stdin");
        i.write_all(b"a long enough password\n").expect("write");
    }
    assert!(passwd.wait().expect("wait").success());
    let text = std::fs::read_to_string(&trace).expect("trace")
        + &std::fs::read_to_string(tmp.path().join("trace2")).expect("trace2");
    let mut checked = 0;
    for name in ["ca.key", "server.key", "client.key", "client.p12", "users"] {
        let creates: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(name) && l.contains("O_CREAT"))
            .collect();
        assert!(!creates.is_empty(), "no creation of {name} traced:\n{text}");
        for l in creates {
            assert!(
                l.contains(", 0600)"),
                "{name} created with another mode: {l}"
            );
            checked += 1;
        }
    }
    assert!(!text.contains("chmod"), "no chmod needed");
    assert!(checked >= 5);
    for name in ["ca.key", "server.key", "client.key", "client.p12"] {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(pki.join(name)).expect("meta");
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{name}");
    }
}

/// Started as an unprivileged user with an ambient capability (as systemd's
/// `AmbientCapabilities=` does), the gateway uses it to bind a port below 1024, then clears
/// it on every thread: no capability is left anywhere, no_new_privs is set.
#[test]
fn started_with_capabilities_drops_them_on_every_thread() {
    if !can_run(
        "started_with_capabilities_drops_them_on_every_thread",
        &["curl", "setpriv", "getent"],
    ) {
        return;
    }
    let (uid, gid) = uid_gid("nobody");
    let tmp = tempfile::tempdir().expect("tempdir");
    // A privileged port nobody else uses on loopback.
    let port = (700..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024");
    let cfg = config(tmp.path(), port, "");
    // The gateway runs as `nobody` from the start: its files must be its own.
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(tmp.path())
        .status()
        .expect("chown");
    assert!(st.success());
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
            BIN,
            "serve",
            "-c",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway under setpriv");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("privileges dropped");
        log.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // setpriv execs the gateway: the child is the gateway process itself.
    let threads = threads_of(child.id(), 4);
    let body = curl_identity(tmp.path(), port);
    stop(child);
    assert!(
        log.iter().any(|l| l.contains("privileges dropped")),
        "{log:#?}"
    );
    assert!(threads.len() >= 4, "{threads:#?}");
    for t in &threads {
        assert_eq!(t.uids, vec![uid; 4], "{t:?}");
        let [inh, prm, eff, _bnd, amb] = t.caps;
        assert_eq!(
            [inh, prm, eff, amb],
            [0; 4],
            "thread {}: CAP_NET_BIND_SERVICE must be gone: {t:?}",
            t.tid
        );
        assert!(t.no_new_privs, "{t:?}");
    }
    assert!(body.contains("Dev User"), "{body}");
}
