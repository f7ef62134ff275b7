//! systemd readiness notification (`Type=notify`): one datagram to `$NOTIFY_SOCKET`
//! (`READY=1`, `RELOADING=1`, `STOPPING=1`). A no-op when not started by systemd.
//!
//! The protocol is one `sendto` on a Unix datagram socket (a path, or an abstract name when
//! it starts with `@`), so it is implemented here rather than through a crate.

/// Sends `state` (e.g. `READY=1`) to systemd when `$NOTIFY_SOCKET` is set; logs at debug
/// level and carries on when it cannot.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(socket = ?path, %state, error = %e, "sd_notify failed");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    let mut msg = state.to_string();
    if state.starts_with("RELOADING=1") {
        // systemd 253+ wants the monotonic time of the reload request with RELOADING=1.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into a valid pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0 {
            let usec = (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
            msg.push_str(&format!("\nMONOTONIC_USEC={usec}"));
        }
    }
    sock.send_to_addr(msg.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_state_to_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).expect("bind");
        send(p.as_os_str(), "READY=1").expect("send");
        let mut buf = [0u8; 128];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        send(p.as_os_str(), "RELOADING=1").expect("send");
        let n = rx.recv(&mut buf).expect("recv");
        let got = std::str::from_utf8(&buf[..n]).expect("utf8");
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
    }
}
