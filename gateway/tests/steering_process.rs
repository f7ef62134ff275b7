//! Steering, judged from outside the `gateway` process: required steering without privileges
//! refuses to start with a clear error, and an XDP program never outlives the process, even
//! after SIGKILL. Needs root and the eBPF programs (`cargo xtask build-ebpf`): skipped with
//! a message outside CI, failing under `CI=true`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The one skip policy, shared with the `gateway-tests` crate (each test file uses part of it).
#[allow(dead_code)]
#[path = "../../tests/src/skip.rs"]
mod skip;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn can_run(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let mut missing = Vec::new();
    if !root {
        missing.push("root");
    }
    if !gateway::steering::ebpf_programs_embedded() {
        missing.push("the eBPF programs (cargo xtask build-ebpf)");
    }
    for tool in ["ip", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(tool);
        }
    }
    let _ = test;
    skip::can_run(&missing.iter().map(|m| m.to_string()).collect::<Vec<_>>())
}

/// A network namespace with `lo` up, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("gwproc{}{tag}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add");
        let ok = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "lo up");
        Netns(name)
    }

    fn xdp_on_lo(&self) -> bool {
        Command::new("ip")
            .args(["-n", &self.0, "link", "show", "dev", "lo"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A development PKI and a config whose steering requires XDP on `lo`.
fn config(dir: &Path) -> std::path::PathBuf {
    let st = Command::new(BIN)
        .arg("dev-pki")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("gateway dev-pki");
    assert!(st.success());
    let p = |f: &str| format!("{:?}", dir.join(f).display().to_string());
    let text = format!(
        "[global]\nmetrics_interval_secs = 0\nshutdown_grace_secs = 1\nuser = \"nobody\"\n\n[[listener]]\n\
         bind = \"127.0.0.1:8443\"\nclassification = \"sensitive\"\nbackend = \"builtin:identity\"\n\
         server_cert = {}\nserver_key = {}\ntrusted_cas = [{}]\n\n[steering]\nmode = \"xdp\"\n\
         required = true\ninterfaces = [\"lo\"]\nxdp_attach = \"generic\"\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn required_xdp_without_capabilities_refuses_to_start_with_a_clear_error() {
    if !can_run("required_xdp_without_capabilities_refuses_to_start_with_a_clear_error") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let ns = Netns::new("r");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "setpriv", "--inh-caps=-all"])
        .args([
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
            BIN,
            "serve",
            "-c",
        ])
        .arg(&cfg)
        .output()
        .expect("run gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {stderr}");
    assert!(
        stderr.contains("steering mode \"xdp\" is required")
            && stderr.contains("CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
        "the error names the mode and the missing capabilities: {stderr}"
    );
    assert!(!ns.xdp_on_lo());
}

#[test]
fn no_xdp_program_outlives_the_gateway_even_after_sigkill() {
    if !can_run("no_xdp_program_outlives_the_gateway_even_after_sigkill") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let ns = Netns::new("k");
    // `ip netns exec` execs the gateway: the child is the gateway process itself.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN, "serve", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.xdp_on_lo() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let attached = ns.xdp_on_lo();
    let _ = child.kill(); // SIGKILL: no destructor runs.
    let _ = child.wait();
    assert!(attached, "the gateway attached XDP to lo");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ns.xdp_on_lo() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !ns.xdp_on_lo(),
        "the kernel detached XDP when the process died"
    );
}
