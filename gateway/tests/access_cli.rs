//! The `gateway passwd` and `gateway probe` subcommands, run as the real binary.

/// The backend/client test PKI and TLS peers, from the test-support crate's sources
/// (tests/src).
#[path = "../../tests/src/tls_peers.rs"]
mod access_support;
/// The test PKI (one CA/leaf builder), from the test-support crate's sources (tests/src).
#[path = "../../tests/src/certs.rs"]
mod certs;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use access_support::Ca;
use gateway::access::password::PasswordFile;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn passwd(file: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("passwd")
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gateway passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write password");
    child.wait_with_output().expect("wait")
}

#[test]
fn passwd_reads_stdin_and_updates_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("users.passwd");
    let out = passwd(&file, &["alice", "--group", "staff"], "first secret\n");
    assert!(out.status.success(), "{out:?}");
    let out = passwd(&file, &["bob"], "bobs secret\n");
    assert!(out.status.success(), "{out:?}");
    let out = passwd(&file, &["alice"], "second secret\n");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed"),
        "{out:?}"
    );
    let f = PasswordFile::load(&file).expect("loads");
    assert!(f.verify("alice", "first secret").is_none());
    assert_eq!(
        f.verify("alice", "second secret").expect("alice").groups,
        vec!["staff"]
    );
    assert!(f.verify("bob", "bobs secret").is_some());

    let out = passwd(&file, &["carol"], "short\n");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too short"),
        "{out:?}"
    );
    let out = passwd(&file, &["bad:name"], "long enough secret\n");
    assert!(!out.status.success(), "{out:?}");
}

struct SServer(std::process::Child);

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s_server(dir: &std::path::Path, leaf: &access_support::Leaf, name: &str) -> (SServer, u16) {
    let (cert, key) = leaf.write(dir, name);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("/usr/bin/openssl")
        .args(["s_server", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let guard = SServer(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (guard, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("s_server did not start");
}

#[test]
fn probe_exit_status_follows_the_verdict() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("Probe CLI CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (_good, good_port) = s_server(dir.path(), &ca.server(false), "good");
    let (_old, old_port) = s_server(dir.path(), &ca.server(true), "expired");
    let probe = |port: u16, extra: &[&str]| {
        Command::new(BIN)
            .arg("probe")
            .arg(format!("https://localhost:{port}"))
            .arg("--ca")
            .arg(&ca_file)
            .args(extra)
            .output()
            .expect("run gateway probe")
    };
    let out = probe(good_port, &["--no-revocation"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verdict: PASS"), "{text}");
    let out = probe(good_port, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unknown revocation status fails closed"
    );
    let out = probe(old_port, &["--no-revocation"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
