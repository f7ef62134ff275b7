//! Without XDP (here: classic-BPF reuseport steering, no privileges needed) the blocklist is
//! still enforced: the worker closes a blocked source's connection at accept, before any TLS.

use std::time::Duration;

use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{LeafSpec, TestCa};
use tokio::io::AsyncReadExt;

/// Connects from `src` and reports whether the server closed the connection unprompted
/// within a second (a blocked source) rather than waiting for a ClientHello.
async fn closed_at_once(src: &str, port: u16) -> bool {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{src}:0").parse().expect("addr"))
        .expect("bind source");
    let mut s = sock
        .connect(format!("127.0.0.1:{port}").parse().expect("addr"))
        .await
        .expect("TCP connect");
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false, // still open, waiting for our ClientHello
    }
}

#[tokio::test]
async fn blocklisted_source_is_closed_at_accept_without_xdp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("CA");
    let ca_file = ca.write_cert(dir.path(), "ca.pem");
    let server = ca.issue(dir.path(), "server", &LeafSpec::server());
    let toml = format!(
        "{GLOBAL}[steering]\nmode = \"reuseport-cbpf\"\nblocklist = [\"127.0.0.2/32\"]\n{}",
        listener_toml(
            "builtin:identity",
            &server.cert,
            &server.key,
            &[&ca_file],
            "sensitive",
            ""
        )
    );
    let gw = TestGateway::start(dir.path(), &toml);
    let port = gw.port();
    assert!(
        closed_at_once("127.0.0.2", port).await,
        "blocked source was served"
    );
    assert!(
        !closed_at_once("127.0.0.1", port).await,
        "allowed source was closed"
    );
    let m = gw.metrics();
    assert_eq!(m.blocked, 1, "{m:?}");
    // Removing the entry restores access.
    let ctl = gw.steering().expect("steering control");
    ctl.unblock("127.0.0.2/32".parse().expect("cidr"))
        .expect("unblock");
    assert!(
        !closed_at_once("127.0.0.2", port).await,
        "unblocked source still closed"
    );
}
