//! Real, independent TLS clients: curl and `openssl s_client`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a client run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// True if an HTTP 200 came back.
    pub fn ok_200(&self) -> bool {
        self.code == 0
            && (self.stdout.contains("HTTP/1.1 200")
                || self.stdout.contains("HTTP/2 200")
                || self.stdout.starts_with('{'))
    }
}

/// Runs curl against `https://localhost:port{path}` with the given CA, optional client
/// certificate and extra arguments. `-i` is always set (status line in stdout).
pub fn curl(
    port: u16,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    extra: &[&str],
) -> Outcome {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "--max-time", "10", "--cacert"])
        .arg(ca);
    if let Some((cert, key)) = client {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    c.args(extra);
    c.arg(format!("https://localhost:{port}{path}"));
    let out = c.output().expect("run curl");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `openssl s_client` to `127.0.0.1:port` with `args`, sends one HTTP/1.1 request and
/// reads until the server closes (`-ign_eof`), so a post-handshake rejection is seen too.
pub fn s_client(port: u16, args: &[&str]) -> Outcome {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-ign_eof",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    }
    let out = child.wait_with_output().expect("wait s_client");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
