//! The server handshake of a client connection, driven over rustls' unbuffered API, ending
//! in a [`TlsSession`] that runs the record layer itself (see [`crate::tls::session`]).
//!
//! Every TLS decision is rustls': the handshake messages, the client-certificate verifier,
//! tickets, alerts on failure. This module only moves bytes between the socket and rustls,
//! keeps what the connection needs to know afterwards ([`SessionInfo`]), and takes the
//! session keys out once the handshake is complete.

use std::io;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, SupportedCipherSuite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client_hello;
use super::session::{SessionKeys, TlsSession};

/// Most handshake bytes buffered from the client (rustls joins a handshake message of up to
/// 64 KiB in place).
const MAX_HANDSHAKE_BUFFER: usize = 72 * 1024;
/// Room for one read during the handshake.
const HANDSHAKE_READ: usize = 8 * 1024;

/// What the connection knows of its session after the handshake.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The client's certificate chain (leaf first), when it presented one.
    pub peer_certificates: Option<Vec<CertificateDer<'static>>>,
    /// The ALPN protocol chosen.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (SNI), lower case.
    pub server_name: Option<String>,
    /// The protocol version.
    pub version: Option<ProtocolVersion>,
    /// The cipher suite.
    pub suite: Option<SupportedCipherSuite>,
    /// Whether the session was resumed.
    pub resumed: bool,
}

impl SessionInfo {
    /// The facts of a (buffered) rustls server connection, e.g. one made by `tokio-rustls`.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        SessionInfo {
            peer_certificates: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name: conn.server_name().map(str::to_ascii_lowercase),
            version: conn.protocol_version(),
            suite: conn.negotiated_cipher_suite(),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

/// An established client connection: the session and what the handshake decided.
pub(crate) struct Established {
    /// The session (record layer over the TCP stream).
    pub session: TlsSession,
    /// The handshake's facts.
    pub info: SessionInfo,
}

fn io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs the server handshake on `tcp` under `config`. On failure the alert rustls chose has
/// been sent (when the socket took it) and the stream is handed back with the error (a
/// `rustls::Error` inside the `io::Error` for protocol and certificate failures).
pub(crate) async fn accept(
    config: &Arc<ServerConfig>,
    mut tcp: TcpStream,
) -> Result<Established, (io::Error, TcpStream)> {
    let mut conn = match UnbufferedServerConnection::new(config.clone()) {
        Ok(c) => c,
        Err(e) => return Err((io_error(e), tcp)),
    };
    // Received, not yet processed (a prefix is discarded as rustls consumes it).
    let mut incoming: Vec<u8> = Vec::new();
    // Encoded, not yet sent.
    let mut outgoing: Vec<u8> = Vec::new();
    let mut out_used = 0usize;
    // Application data rustls opened during the handshake (a request sent with the
    // client's Finished).
    let mut early_plain: Vec<u8> = Vec::new();
    let mut sni: Option<String> = None;
    let mut failure: Option<rustls::Error> = None;
    // Encoded bytes are due to go out (rustls asked for them to be sent).
    let mut transmit_due = false;
    // The first flight went out: the ClientHello is no longer at the front of `incoming`.
    let mut answered = false;
    // close_notify arrived with the client's last handshake flight.
    let mut peer_closed = false;
    loop {
        if peer_closed && failure.is_none() && conn.is_handshaking() {
            failure = Some(rustls::Error::General(
                "the client closed the connection during the handshake".into(),
            ));
        }
        if transmit_due {
            transmit_due = false;
            // During the handshake a flight goes out at once. Once a TLS 1.3 handshake is
            // complete, what is left (the ticket) waits for the first response, or for the
            // session's first wait on the client. (A TLS 1.2 server's last flight holds its
            // Finished, which the client waits for: it goes at once.)
            if failure.is_some()
                || conn.is_handshaking()
                || conn.protocol_version() != Some(ProtocolVersion::TLSv1_3)
            {
                if let Err(e) = tcp
                    .write_all(outgoing.get(..out_used).unwrap_or_default())
                    .await
                {
                    return Err((e, tcp));
                }
                out_used = 0;
                answered = true;
            }
        }
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut incoming);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                while let Some(room) = outgoing.get_mut(out_used..) {
                    match e.encode(room) {
                        Ok(n) => {
                            out_used += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(s)) => {
                            outgoing.resize(out_used + s.required_size, 0);
                        }
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                t.done();
                transmit_due = true;
            }
            Ok(ConnectionState::BlockedHandshake) => {
                if failure.is_some() {
                    break;
                }
                if incoming.len() >= MAX_HANDSHAKE_BUFFER {
                    failure = Some(rustls::Error::General(
                        "handshake messages larger than 72 KiB".into(),
                    ));
                    continue;
                }
                incoming.reserve(HANDSHAKE_READ);
                match tcp.read_buf(&mut incoming).await {
                    Ok(0) => {
                        return Err((
                            io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"),
                            tcp,
                        ))
                    }
                    Ok(_) => {
                        if sni.is_none() && !answered {
                            sni = client_hello::server_name(&incoming);
                        }
                    }
                    Err(e) => return Err((e, tcp)),
                }
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => {
                            early_plain.extend_from_slice(rec.payload);
                            discard += rec.discard;
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
            Ok(ConnectionState::WriteTraffic(_)) => {
                if failure.is_some() {
                    break;
                }
                incoming.drain(..discard.min(incoming.len()));
                break;
            }
            Ok(ConnectionState::PeerClosed) => {
                // With its last flight (checked at the top of the loop) or a failure.
                peer_closed = true;
            }
            Ok(ConnectionState::Closed) => {
                failure.get_or_insert(rustls::Error::General(
                    "the client closed the connection during the handshake".into(),
                ));
                break;
            }
            Ok(_) => {
                // Early data is never accepted (no 0-RTT).
                failure.get_or_insert(rustls::Error::General("unexpected early data".into()));
                break;
            }
            Err(e) => {
                if failure.is_some() {
                    break;
                }
                // Once more round the loop: the alert rustls queued goes out first.
                failure = Some(e);
            }
        }
        incoming.drain(..discard.min(incoming.len()));
    }
    if let Some(e) = failure {
        if out_used > 0 {
            let _ = tcp
                .write_all(outgoing.get(..out_used).unwrap_or_default())
                .await;
        }
        return Err((io_error(e), tcp));
    }
    let info = SessionInfo {
        peer_certificates: conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        server_name: sni,
        version: conn.protocol_version(),
        suite: conn.negotiated_cipher_suite(),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    };
    let Some(suite) = info.suite else {
        return Err((io_error(rustls::Error::HandshakeNotComplete), tcp));
    };
    let (secrets, kernel) = match conn.dangerous_into_kernel_connection() {
        Ok(k) => k,
        Err(e) => return Err((io_error(e), tcp)),
    };
    let keys = SessionKeys {
        suite,
        tx: secrets.tx,
        rx: secrets.rx,
        kernel,
    };
    outgoing.truncate(out_used);
    match TlsSession::new(tcp, keys, incoming, early_plain, outgoing, peer_closed) {
        Ok(session) => Ok(Established { session, info }),
        Err((e, tcp)) => Err((io_error(e), tcp)),
    }
}
