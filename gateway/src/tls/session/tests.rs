//! The gateway's record layer against rustls' own client over loopback: data both ways in
//! TLS 1.3 and 1.2 (small, vectored and bulk), key updates, close_notify, buffers released
//! when idle, and what a misbehaving peer gets (a corrupted record, an oversized record).

use std::io::{Read, Write};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tls::handshake;

/// The provider, with only the suites whose name contains `suite` (all for "").
fn provider_with(suite: &str) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = crate::pki::compiled_in_provider();
    p.cipher_suites
        .retain(|s| format!("{:?}", s.suite()).contains(suite));
    Arc::new(p)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    provider_with("")
}

/// (server config, client config) for `localhost`, one protocol version.
fn configs(
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    configs_with(version, "")
}

/// As [`configs`], the server offering only suites named like `suite`.
fn configs_with(
    version: &'static rustls::SupportedProtocolVersion,
    suite: &str,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let mut sc = rustls::ServerConfig::builder_with_provider(provider_with(suite))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    sc.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let cc = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(sc), Arc::new(cc))
}

/// A server session and a connected rustls client (tokio).
async fn pair(
    version: &'static rustls::SupportedProtocolVersion,
) -> (TlsSession, tokio_rustls::client::TlsStream<TcpStream>) {
    pair_with(version, "").await
}

async fn pair_with(
    version: &'static rustls::SupportedProtocolVersion,
    suite: &str,
) -> (TlsSession, tokio_rustls::client::TlsStream<TcpStream>) {
    let (sc, cc) = configs_with(version, suite);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(cc)
            .connect(name, tcp)
            .await
            .unwrap()
    });
    let (tcp, _) = l.accept().await.unwrap();
    let est = handshake::accept(&sc, tcp)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (est.session, client.await.unwrap())
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn exchange(version: &'static rustls::SupportedProtocolVersion, suite: &str) {
    let (mut server, mut client) = pair_with(version, suite).await;
    let negotiated = format!(
        "{:?}",
        client
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .unwrap()
            .suite()
    );
    assert!(negotiated.contains(suite), "{negotiated} is not {suite}");
    // Small, both ways.
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut b = [0u8; 4];
    server.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    server.write_all(b"pong").await.unwrap();
    server.flush().await.unwrap();
    client.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"pong");
    // Vectored, across record boundaries.
    let (x, y) = (pattern(20_000), pattern(30_001));
    let mut written = 0;
    while written < x.len() + y.len() {
        let bufs: Vec<IoSlice<'_>> = if written < x.len() {
            vec![IoSlice::new(&x[written..]), IoSlice::new(&y)]
        } else {
            vec![IoSlice::new(&y[written - x.len()..])]
        };
        written += server.write_vectored(&bufs).await.unwrap();
    }
    server.flush().await.unwrap();
    let mut got = vec![0u8; x.len() + y.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..x.len()], &x[..]);
    assert_eq!(&got[x.len()..], &y[..]);
    // Bulk, both ways at once (4 MiB each).
    let big = pattern(4 << 20);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = big.clone();
    let up_task = tokio::spawn(async move {
        cw.write_all(&up).await.unwrap();
        cw.flush().await.unwrap();
        cw
    });
    let down = big.clone();
    let down_task = tokio::spawn(async move {
        sw.write_all(&down).await.unwrap();
        sw.flush().await.unwrap();
        sw
    });
    let n = big.len();
    let client_reads = tokio::spawn(async move {
        let mut at_client = vec![0u8; n];
        cr.read_exact(&mut at_client).await.unwrap();
        (cr, at_client)
    });
    let mut at_server = vec![0u8; n];
    sr.read_exact(&mut at_server).await.unwrap();
    let (mut cr, at_client) = client_reads.await.unwrap();
    assert!(at_server == big, "upload corrupted");
    assert!(at_client == big, "download corrupted");
    let (mut sw, mut cw) = (down_task.await.unwrap(), up_task.await.unwrap());
    // close_notify: each side reads a clean end.
    sw.shutdown().await.unwrap();
    let mut rest = Vec::new();
    cr.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    cw.shutdown().await.unwrap();
    let mut rest = Vec::new();
    sr.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn tls13_data_both_ways_and_close_notify() {
    for suite in ["AES_128_GCM", "AES_256_GCM", "CHACHA20"] {
        exchange(&rustls::version::TLS13, suite).await;
    }
}

#[tokio::test]
async fn tls12_data_both_ways_and_close_notify() {
    for suite in ["AES_128_GCM", "AES_256_GCM", "CHACHA20"] {
        exchange(&rustls::version::TLS12, suite).await;
    }
}

#[tokio::test]
async fn tls13_key_updates_asked_by_the_client_are_answered() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    for round in 0..3u8 {
        // update_requested: the server must switch its own sending key too.
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 3]).await.unwrap();
        client.flush().await.unwrap();
        let mut b = [0u8; 3];
        server.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [round; 3]);
        server.write_all(&[round + 10; 2]).await.unwrap();
        server.flush().await.unwrap();
        let mut b = [0u8; 2];
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [round + 10; 2]);
    }
}

#[tokio::test]
async fn an_idle_session_holds_no_buffers() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    client.write_all(&pattern(40_000)).await.unwrap();
    client.flush().await.unwrap();
    let mut got = vec![0u8; 40_000];
    server.read_exact(&mut got).await.unwrap();
    server.write_all(&pattern(100_000)).await.unwrap();
    server.flush().await.unwrap();
    let mut got = vec![0u8; 100_000];
    client.read_exact(&mut got).await.unwrap();
    assert!(server.holds_no_buffers());
}

/// A read that finds nothing within 50 ms.
async fn wait_for_nothing(server: &mut TlsSession) {
    let mut b = [0u8; 16];
    let read = server.read(&mut b);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), read)
            .await
            .is_err(),
        "nothing to read"
    );
}

/// The client sends `request`, which arrives before the server's first read (as a request
/// sent with the Finished does); the server reads it, then finds nothing more.
async fn request_then_nothing(
    client: &mut tokio_rustls::client::TlsStream<TcpStream>,
    server: &mut TlsSession,
    request: &[u8],
) {
    client.write_all(request).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut b = vec![0u8; request.len()];
    server.read_exact(&mut b).await.unwrap();
    wait_for_nothing(server).await;
}

/// The handshake's last flight (the TLS 1.3 ticket) goes out before the session first waits
/// for a client that has sent nothing; once the client's data was handed over, it waits for
/// the answer and goes out with it (one segment less), or with the close.
#[tokio::test]
async fn the_ticket_goes_with_the_first_answer() {
    // Nothing from the client yet: written before the wait.
    let (mut server, _client) = pair(&rustls::version::TLS13).await;
    assert!(
        server.flight_queued && !server.wq.is_empty(),
        "a ticket is due"
    );
    wait_for_nothing(&mut server).await;
    assert!(server.wq.is_empty() && !server.flight_queued);

    // A request first: the ticket waits for the answer.
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    assert!(server.flight_queued);
    request_then_nothing(&mut client, &mut server, b"request").await;
    assert!(
        server.flight_queued && !server.wq.is_empty(),
        "held for the answer"
    );
    server.write_all(b"answer").await.unwrap();
    server.flush().await.unwrap();
    assert!(server.wq.is_empty() && !server.flight_queued);
    let mut b = [0u8; 6];
    client.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"answer");

    // A request and no answer: the ticket goes with close_notify.
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    request_then_nothing(&mut client, &mut server, b"x").await;
    assert!(server.flight_queued);
    server.shutdown().await.unwrap();
    assert!(server.wq.is_empty());
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// Parked keys (an idle connection) are made again by the next record, both ways, in both
/// versions, and the session carries on where it was (sequence numbers included).
#[tokio::test]
async fn parked_keys_are_made_again_by_the_next_record() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (mut server, mut client) = pair(version).await;
        for round in 0..3u8 {
            server.park_keys();
            assert!(server.keys_parked());
            client
                .write_all(&pattern(20_000 + usize::from(round)))
                .await
                .unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; 20_000 + usize::from(round)];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, pattern(got.len()));
            server.park_keys();
            server.write_all(&pattern(30_000)).await.unwrap();
            server.flush().await.unwrap();
            assert!(!server.keys_parked(), "in use again");
            let mut got = vec![0u8; 30_000];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, pattern(30_000));
        }
    }
}

/// A rustls client driven by hand over a blocking socket (to send what a real client would
/// not).
fn raw_client(
    addr: std::net::SocketAddr,
    cc: Arc<rustls::ClientConfig>,
) -> (rustls::ClientConnection, std::net::TcpStream) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(cc, name).unwrap();
    while c.is_handshaking() {
        c.complete_io(&mut tcp).unwrap();
    }
    (c, tcp)
}

/// What the server's read gives after the client sent `bytes` (built from a connected
/// client) instead of a well-formed record.
async fn server_read_after(
    make: impl FnOnce(&mut rustls::ClientConnection) -> Vec<u8> + Send + 'static,
) -> io::Error {
    let (sc, cc) = configs(&rustls::version::TLS13);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let (mut c, mut tcp) = raw_client(addr, cc);
        let bytes = make(&mut c);
        tcp.write_all(&bytes).unwrap();
        // Whatever the server answers (an alert), then its close.
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    });
    let (tcp, _) = l.accept().await.unwrap();
    let mut server = handshake::accept(&sc, tcp)
        .await
        .map_err(|(e, _)| e)
        .unwrap()
        .session;
    let mut b = [0u8; 64];
    let err = loop {
        match server.read(&mut b).await {
            Ok(0) => panic!("clean end instead of an error"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    drop(server);
    client.join().unwrap();
    err
}

fn rustls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<Error>())
}

#[tokio::test]
async fn a_corrupted_record_is_refused() {
    let err = server_read_after(|c| {
        c.writer().write_all(b"hello").unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        let last = out.len() - 1;
        out[last] ^= 1;
        out
    })
    .await;
    assert!(
        matches!(rustls_error(&err), Some(Error::DecryptError)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_oversized_record_is_refused() {
    let err = server_read_after(|_| {
        let mut rec = vec![23u8, 3, 3, 0x48, 0x01];
        rec.resize(5 + 0x4801, 0);
        rec
    })
    .await;
    assert!(
        matches!(rustls_error(&err), Some(Error::PeerSentOversizedRecord)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_plaintext_record_after_the_handshake_is_refused() {
    let err = server_read_after(|_| vec![22u8, 3, 3, 0, 4, 1, 0, 0, 0]).await;
    assert!(
        matches!(rustls_error(&err), Some(Error::InappropriateMessage { .. })),
        "{err:?}"
    );
}
