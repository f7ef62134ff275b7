//! Abuse blocking counts only what the client did wrong, through a gateway on loopback
//! (workers enforce the blocklist at accept; XDP is not needed here):
//!
//! * connect-then-close health checks, plain HTTP, garbage and half ClientHellos never
//!   count, however many;
//! * a revocation outage (no status can be had) refuses good clients but never blocks them;
//! * untrusted certificates and a missing certificate on a SENSITIVE listener do count:
//!   `max_failures` of them block the source.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_tests::backend::EchoBackend;
use gateway_tests::gw::{listener_toml, TestGateway, GLOBAL};
use gateway_tests::pki::{LeafSpec, TestCa};
use gateway_tests::raw;

const ABUSE: &str = "\n[steering]\nmode = \"off\"\n[steering.abuse]\nenabled = true\n\
                     max_failures = 3\nwindow_secs = 60\ncooldown_secs = 60\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    _backend: EchoBackend,
    gw: TestGateway,
    good: Arc<rustls::ClientConfig>,
    intruder: Arc<rustls::ClientConfig>,
    anonymous: Arc<rustls::ClientConfig>,
}

fn fixture(revocation: impl Fn(&Path) -> String) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = TestCa::new("Abuse Client CA");
    let ca_file = ca.write_cert(dir, "ca.pem");
    let intruder_ca = TestCa::new("Intruder CA");
    let server_ca = TestCa::new("Abuse Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let alice = ca.issue(dir, "alice", &LeafSpec::client("alice"));
    let mallory = intruder_ca.issue(dir, "mallory", &LeafSpec::client("mallory"));
    let backend = EchoBackend::start();
    let toml = format!(
        "{GLOBAL}{}{ABUSE}",
        listener_toml(
            &backend.url(),
            &server.cert,
            &server.key,
            &[ca_file.as_path()],
            "sensitive",
            &revocation(&ca_file),
        )
    );
    let gw = TestGateway::start(dir, &toml);
    Fixture {
        good: raw::client_config(&server_ca, Some(&alice), &["http/1.1"]),
        intruder: raw::client_config(&server_ca, Some(&mallory), &["http/1.1"]),
        anonymous: raw::client_config(&server_ca, None, &["http/1.1"]),
        _tmp: tmp,
        _backend: backend,
        gw,
    }
}

fn served(f: &Fixture) -> bool {
    raw::exchange(
        f.gw.port(),
        &f.good,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .is_ok_and(|r| r.status == 200)
}

/// Sends `bytes` (maybe none), half-closes, waits for the gateway to close.
fn send_and_close(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    if !bytes.is_empty() {
        let _ = s.write_all(bytes);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

fn blocked(f: &Fixture) -> bool {
    f.gw.steering()
        .is_some_and(|c| c.is_blocked("127.0.0.1".parse().expect("ip")))
}

/// Waits briefly for a block to be recorded (reports follow the close).
fn eventually_blocked(f: &Fixture) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if blocked(f) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The first bytes of a TLS ClientHello record header claiming 512 bytes, then nothing.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];

#[test]
fn health_checks_scanners_and_half_hellos_never_block_but_bad_certificates_do() {
    let f = fixture(|_| String::new());
    let port = f.gw.port();
    assert!(served(&f), "good client served");
    for _ in 0..5 {
        send_and_close(port, b""); // connect-then-close health check
        send_and_close(port, b"GET / HTTP/1.0\r\n\r\n"); // plain HTTP to the TLS port
        send_and_close(port, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0]); // garbage
        send_and_close(port, HALF_CLIENT_HELLO); // half a ClientHello
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !blocked(&f),
        "20 client-harmless failures must not block the source"
    );
    assert_eq!(f.gw.steering().map(|c| c.counters().abuse_blocks), Some(0));
    assert!(served(&f), "still served");

    // Now the client's own fault: an untrusted certificate, twice, and no certificate on
    // a SENSITIVE listener: three strikes.
    for cfg in [&f.intruder, &f.intruder, &f.anonymous] {
        let r = raw::exchange(
            port,
            cfg,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(r.map(|r| r.status != 200).unwrap_or(true));
    }
    assert!(
        eventually_blocked(&f),
        "blocked after 3 client-caused failures"
    );
    assert!(!served(&f), "the blocked source is closed at accept");
}

#[test]
fn a_revocation_outage_refuses_good_clients_but_never_blocks_them() {
    // Status only from an OCSP responder that is down: every check is "unavailable".
    let f = fixture(|ca| {
        format!(
            "[listener.revocation]\norder = \"ocsp-only\"\nfetch_timeout_ms = 300\n\
             ocsp_responders = [{{ issuer_cert = {:?}, url = \"http://127.0.0.1:9/\" }}]\n",
            ca.display().to_string()
        )
    });
    for i in 0..6 {
        assert!(!served(&f), "attempt {i}: no status, fail closed");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !blocked(&f),
        "six refusals caused by the outage must not block the client"
    );
    // Abuse blocking is on: the client's own faults still count.
    for _ in 0..3 {
        let _ = raw::exchange(
            f.gw.port(),
            &f.intruder,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
    }
    assert!(eventually_blocked(&f));
}
