//! A raw TLS client (rustls, blocking): sends exactly the bytes a test writes, so request
//! targets, header names and timing are under the test's control (curl normalises paths and
//! header names; an attacker does not).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::pki::{Leaf, TestCa};

/// A client configuration trusting `server_ca`, presenting `leaf` (if any), offering `alpn`.
///
/// # Panics
/// If the key file cannot be read.
pub fn client_config(
    server_ca: &TestCa,
    leaf: Option<&Leaf>,
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der.clone()))
        .expect("root");
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let mut cfg = match leaf {
        Some(leaf) => {
            let chain = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("client key");
            b.with_client_auth_cert(chain, key).expect("client auth")
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection to the gateway on 127.0.0.1, handshake completed.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake.
///
/// # Errors
/// The handshake or connect error, as text.
pub fn connect(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Result<TlsStream, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(s)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code (0 if none was read).
    pub status: u16,
    /// The head (status line and headers) as text.
    pub head: String,
    /// The body as text (de-chunked if needed).
    pub body: String,
}

impl RawResponse {
    /// The echo backend's JSON body.
    ///
    /// # Panics
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }
}

/// Parses one response from raw bytes (enough for the gateway's and the echo backend's
/// replies: Content-Length or chunked, or until close).
pub fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            r = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        rest.to_string()
    };
    RawResponse {
        status,
        head: head.to_string(),
        body,
    }
}

/// Sends `request` (raw bytes; should say `Connection: close`) and reads to the end.
///
/// # Errors
/// Connect/handshake errors, as text.
pub fn exchange(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
    request: &[u8],
) -> Result<RawResponse, String> {
    let mut s = connect(port, cfg)?;
    s.write_all(request).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A reset or an unclean close after a complete response still counts as read.
    let _ = s.read_to_end(&mut out);
    Ok(parse_response(&out))
}

/// `GET target` with `Host: localhost`, the extra header lines, `Connection: close`.
///
/// # Panics
/// If the connection cannot be made.
pub fn get(
    port: u16,
    cfg: &Arc<rustls::ClientConfig>,
    target: &str,
    headers: &[&str],
) -> RawResponse {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    exchange(port, cfg, req.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// Reads from `s` until the peer closes or `limit` passes; returns how long the close took
/// (None: still open at the limit).
pub fn time_until_closed<R: Read>(s: &mut R, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}
