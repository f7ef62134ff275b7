//! Parking of idle HTTP/1.1 connections ([`ParkingH1`] under [`serve_loop`]) over a real
//! loopback TLS connection: hyper's connection (and with it its read and write buffers) is
//! ended and dropped after [`PARK_AFTER`] of quiet, the next request is served from the kept
//! TLS stream, and nothing in flight (a partial request head, a response body still being
//! sent, pipelined requests) is ever cut.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream as ClientTls;

use super::*;
use crate::lifetime::PARK_AFTER;

#[cfg(feature = "aws-lc-rs")]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(not(feature = "aws-lc-rs"))]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection over loopback: (server side, client side), ALPN http/1.1.
async fn tls_pair() -> (TlsSession, ClientTls<TcpStream>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let mut sc = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut cc = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cc))
            .connect(name, tcp)
            .await
            .unwrap()
    });
    let (tcp, _) = l.accept().await.unwrap();
    sc.enable_secret_extraction = true;
    let server = crate::tls::handshake::accept(&Arc::new(sc), tcp)
        .await
        .map_err(|(e, _)| e)
        .unwrap()
        .session;
    (server, client.await.unwrap())
}

/// A body that sends "slow" after a delay (a backend still streaming its response).
struct SlowBody {
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.done = true;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"slow")))))
    }
}

/// No status re-check.
type NoRecheck = fn() -> std::future::Ready<Result<(), String>>;

/// Serves `/` ("ok") and `/slow` (body after 1.5 s) on `tls` with [`ParkingH1`] under
/// [`serve_loop`], as `serve_http` does.
fn serve(
    tls: TlsSession,
) -> (
    Arc<Activity>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let activity = Arc::new(Activity::new(true));
    let act = activity.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let act = act.clone();
        async move {
            let in_flight = act.enter(false);
            let body: BoxBody<Bytes, Infallible> = if req.uri().path() == "/slow" {
                SlowBody {
                    sleep: Box::pin(tokio::time::sleep(Duration::from_millis(1500))),
                    done: false,
                }
                .boxed()
            } else {
                Full::new(Bytes::from_static(b"ok")).boxed()
            };
            let resp = http::Response::new(TrackedBody::new(body, act.clone()));
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let (tx, mut rx) = watch::channel(false);
    let a = activity.clone();
    let task = tokio::spawn(async move {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(None);
        let conn = ParkingH1::new(&h1, ActivityIo::new(Box::new(tls), a.clone()), service);
        tokio::pin!(conn);
        let limits = Limits::default();
        let ends = LoopEnds {
            peer: "127.0.0.1:1".parse().unwrap(),
            activity: &a,
            limits: &limits,
            name: "test",
        };
        let mut none: Option<NoRecheck> = None;
        serve_loop(conn, &ends, &mut none, &mut rx).await;
    });
    (activity, tx, task)
}

/// Reads one response (head + body, by Content-Length or chunked end) and returns it.
async fn read_response(c: &mut ClientTls<TcpStream>) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let body = &text[end + 4..];
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse::<usize>().unwrap());
            match len {
                Some(n) if body.len() >= n => return text,
                None if body.ends_with("0\r\n\r\n") => return text,
                _ => {}
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("response within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-response; got {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Waits long enough for a quiet connection to be parked.
async fn quiet() {
    tokio::time::sleep(PARK_AFTER + Duration::from_millis(400)).await;
}

#[tokio::test]
async fn idle_http1_connection_releases_hyper_and_serves_the_next_request() {
    let (server, mut client) = tls_pair().await;
    let (activity, _tx, task) = serve(server);
    client.write_all(GET).await.unwrap();
    let r = read_response(&mut client).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    assert_eq!(activity.parks(), 0, "not parked while just used");
    quiet().await;
    assert_eq!(
        activity.parks(),
        1,
        "hyper's connection ended after PARK_AFTER of quiet"
    );
    // The next request on the same TLS connection: a new hyper connection serves it.
    client.write_all(GET).await.unwrap();
    let r = read_response(&mut client).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    quiet().await;
    assert_eq!(activity.parks(), 2, "parked again");
    // The client closes while parked: the connection task ends.
    client.shutdown().await.unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("connection task ends when the client closes")
        .unwrap();
}

#[tokio::test]
async fn partial_head_slow_body_and_pipelining_are_never_parked() {
    let (server, mut client) = tls_pair().await;
    let (activity, _tx, _task) = serve(server);
    // A request head arriving in two parts with a long pause: not parked in between (hyper
    // holds the first part), answered once complete.
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    client.flush().await.unwrap();
    quiet().await;
    assert_eq!(activity.parks(), 0, "a started head keeps hyper");
    client.write_all(b"st: localhost\r\n\r\n").await.unwrap();
    let r = read_response(&mut client).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    // A response body that takes longer than PARK_AFTER: not parked while it is sent.
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut client).await;
    assert!(
        r.ends_with("slow\r\n0\r\n\r\n") || r.ends_with("slow"),
        "{r}"
    );
    assert_eq!(activity.parks(), 0, "no park while a response body is open");
    // Two pipelined requests in one write after a park: both answered, in order.
    quiet().await;
    assert_eq!(activity.parks(), 1);
    let mut two = GET.to_vec();
    two.extend_from_slice(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n");
    client.write_all(&two).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).ends_with("slow\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("responses within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let r = String::from_utf8_lossy(&got);
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
    assert!(r.find("\r\n\r\nok") < r.find("slow"), "in order: {r}");
}

#[tokio::test]
async fn shutdown_closes_a_parked_connection_with_close_notify() {
    let (server, mut client) = tls_pair().await;
    let (activity, tx, task) = serve(server);
    client.write_all(GET).await.unwrap();
    read_response(&mut client).await;
    quiet().await;
    assert_eq!(activity.parks(), 1);
    tx.send(true).unwrap();
    let mut buf = [0u8; 64];
    // A clean TLS end (close_notify, then EOF), not a reset or a truncation error.
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .expect("clean close_notify");
    assert_eq!(n, 0);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
