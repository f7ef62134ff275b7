//! Raw TCP mode: after the handshake and the access decision, the decrypted byte stream is
//! relayed to a TCP backend, preceded by a PROXY protocol v2 header (encoded with the `ppp`
//! crate) that carries the client's address and what TLS established:
//!
//! * `PP2_TYPE_SSL` (0x20) with `client` = `PP2_CLIENT_SSL` (+ `PP2_CLIENT_CERT_CONN` and
//!   `PP2_CLIENT_CERT_SESS` when a certificate was presented), `verify` = 0 when a client
//!   certificate was verified (1 otherwise), and the sub-TLVs
//!   `PP2_SUBTYPE_SSL_VERSION` (0x21, e.g. `TLSv1.3`), `PP2_SUBTYPE_SSL_CIPHER` (0x23, the
//!   IANA suite name), `PP2_SUBTYPE_SSL_CN` (0x22, subject CN) and
//!   [`PP2_SUBTYPE_SSL_CLIENT_DN`] (0xE0, from the custom range: the RFC 4514 subject DN).
//! * `PP2_TYPE_AUTHORITY` (0x02) with the SNI host name, if any.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::access::ListenerAccess;
use crate::pki::identity::CertIdentity;

/// `PP2_TYPE_AUTHORITY`.
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// `PP2_TYPE_SSL`.
pub const PP2_TYPE_SSL: u8 = 0x20;
/// `PP2_SUBTYPE_SSL_VERSION`.
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// `PP2_SUBTYPE_SSL_CN`.
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// `PP2_SUBTYPE_SSL_CIPHER`.
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
/// The client's subject DN (RFC 4514), a sub-TLV of `PP2_TYPE_SSL` from the custom range.
pub const PP2_SUBTYPE_SSL_CLIENT_DN: u8 = 0xE0;
/// `PP2_CLIENT_SSL`.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the TLS layer established, for the PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// A client certificate was presented and verified.
    pub client_cert_verified: bool,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// IANA cipher suite name.
    pub cipher: String,
    /// Client certificate subject CN.
    pub cn: Option<String>,
    /// Client certificate subject DN, RFC 4514.
    pub subject_dn: Option<String>,
    /// SNI host name sent by the client.
    pub sni: Option<String>,
}

impl TlsInfo {
    /// Reads the negotiated parameters of a client session; `identity` is the verified
    /// client certificate's identity, if any.
    pub fn from_session(conn: &crate::tls::SessionInfo, identity: Option<&CertIdentity>) -> Self {
        let version = match conn.version {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher = conn
            .suite
            .and_then(|s| s.suite().as_str().map(str::to_string))
            .unwrap_or_default();
        TlsInfo {
            client_cert_verified: identity.is_some(),
            version,
            cipher,
            cn: identity.and_then(|i| i.subject_attr("CN").map(str::to_string)),
            subject_dn: identity.map(|i| i.subject.clone()),
            sni: conn.server_name.clone(),
        }
    }
}

/// Errors of the TCP proxy.
#[derive(Debug, thiserror::Error)]
pub enum TcpProxyError {
    /// The PROXY header could not be built (a TLV over 64 KiB).
    #[error("cannot build PROXY v2 header: {0}")]
    Header(std::io::Error),
    /// The backend could not be reached in time.
    #[error("cannot connect to TCP backend {addr}: {source}")]
    Connect {
        /// The backend.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Relaying failed.
    #[error("relay between client and backend {addr} failed: {source}")]
    Relay {
        /// The backend.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A limit ended the relay (idle, age, or the certificate status re-check refused).
    #[error("relay closed: {0}")]
    Limit(String),
}

fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), TcpProxyError> {
    let len = u16::try_from(value.len())
        .map_err(|_| TcpProxyError::Header(std::io::Error::other("TLV longer than 65535 bytes")))?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// The value of the `PP2_TYPE_SSL` TLV (client flags, verify, sub-TLVs).
///
/// # Errors
/// [`TcpProxyError::Header`] if a field is over 64 KiB.
pub fn ssl_tlv_value(info: &TlsInfo) -> Result<Vec<u8>, TcpProxyError> {
    let mut v = Vec::with_capacity(128);
    let mut client = PP2_CLIENT_SSL;
    if info.client_cert_verified {
        client |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
    }
    v.push(client);
    let verify: u32 = if info.client_cert_verified { 0 } else { 1 };
    v.extend_from_slice(&verify.to_be_bytes());
    push_tlv(&mut v, PP2_SUBTYPE_SSL_VERSION, info.version.as_bytes())?;
    if !info.cipher.is_empty() {
        push_tlv(&mut v, PP2_SUBTYPE_SSL_CIPHER, info.cipher.as_bytes())?;
    }
    if let Some(cn) = &info.cn {
        push_tlv(&mut v, PP2_SUBTYPE_SSL_CN, cn.as_bytes())?;
    }
    if let Some(dn) = &info.subject_dn {
        push_tlv(&mut v, PP2_SUBTYPE_SSL_CLIENT_DN, dn.as_bytes())?;
    }
    Ok(v)
}

/// Both addresses in one family (an IPv4 address is IPv4-mapped if the other is IPv6).
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    match (a, b) {
        (SocketAddr::V4(_), SocketAddr::V6(_)) | (SocketAddr::V6(_), SocketAddr::V4(_)) => {
            (v6(a), v6(b))
        }
        _ => (a, b),
    }
}

/// Encodes the PROXY v2 header: `PROXY` command, TCP over the peers' family, source =
/// client, destination = the gateway's local address, then the TLVs.
///
/// # Errors
/// [`TcpProxyError::Header`] if a TLV is too long.
pub fn proxy_header(
    peer: SocketAddr,
    local: SocketAddr,
    info: &TlsInfo,
) -> Result<Vec<u8>, TcpProxyError> {
    let ssl = ssl_tlv_value(info)?;
    let mut b = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        same_family(peer, local),
    );
    if let Some(sni) = &info.sni {
        b = b
            .write_tlv(PP2_TYPE_AUTHORITY, sni.as_bytes())
            .map_err(TcpProxyError::Header)?;
    }
    b.write_tlv(PP2_TYPE_SSL, &ssl)
        .and_then(Builder::build)
        .map_err(TcpProxyError::Header)
}

/// The deadlines of a relay (from the listener's limits).
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Backend connect deadline.
    pub connect_timeout: Duration,
    /// No byte in either direction for this long: the relay closes.
    pub idle_timeout: Duration,
    /// The relay's lifetime (None: unlimited).
    pub max_age: Option<Duration>,
    /// Re-check the client certificate's status this often (None: never).
    pub recheck_interval: Option<Duration>,
}

impl Default for RelayLimits {
    fn default() -> Self {
        let l = crate::limits::Limits::default();
        RelayLimits {
            connect_timeout: l.upstream_connect_timeout,
            idle_timeout: l.tcp_idle_timeout,
            max_age: l.max_connection_age,
            recheck_interval: None,
        }
    }
}

/// No certificate status re-check (for [`proxy_tcp`] callers without one).
pub type NoRecheck = fn() -> std::future::Ready<Result<(), String>>;

/// Relays `client` (the TLS stream after the handshake) to `backend`, sending the PROXY v2
/// header first, until either side closes, the relay is idle for `limits.idle_timeout`,
/// reaches `limits.max_age`, or `recheck` (called every `limits.recheck_interval`) refuses
/// the client's certificate. Returns the bytes copied (client to backend, backend to
/// client).
///
/// # Errors
/// A [`TcpProxyError`] naming the step that failed or the limit that ended the relay.
pub async fn proxy_tcp<S, F, Fut>(
    client: S,
    peer: SocketAddr,
    local: SocketAddr,
    info: &TlsInfo,
    backend: SocketAddr,
    limits: RelayLimits,
    mut recheck: Option<F>,
) -> Result<(u64, u64), TcpProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    use crate::lifetime::{Activity, ActivityIo};
    let header = proxy_header(peer, local, info)?;
    let connect_err = |source| TcpProxyError::Connect {
        addr: backend,
        source,
    };
    let mut up = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(backend))
        .await
        .map_err(|_| connect_err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_err)?;
    let _ = up.set_nodelay(true);
    up.write_all(&header).await.map_err(connect_err)?;
    // Every byte to or from the client passes through `client`: its activity is the relay's.
    let activity = std::sync::Arc::new(Activity::new(true));
    let mut client = ActivityIo::new(client, activity.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut up);
    tokio::pin!(copy);
    let ms = |d: Duration| d.as_millis() as u64;
    let mut next_check = limits.recheck_interval.map(ms);
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let idle_at = activity.last_active_ms() + ms(limits.idle_timeout);
        let age_at = limits.max_age.map_or(u64::MAX, ms);
        let wake = idle_at.min(age_at).min(next_check.unwrap_or(u64::MAX));
        sleep
            .as_mut()
            .reset(tokio::time::Instant::from_std(activity.at(wake)));
        tokio::select! {
            res = &mut copy => {
                return res.map_err(|source| TcpProxyError::Relay { addr: backend, source });
            }
            () = &mut sleep => {
                let now = activity.elapsed_ms();
                if now >= activity.last_active_ms() + ms(limits.idle_timeout) {
                    return Err(TcpProxyError::Limit("idle for tcp_idle_timeout_secs".into()));
                }
                if now >= age_at {
                    return Err(TcpProxyError::Limit("max_connection_age_secs reached".into()));
                }
                if let (Some(at), Some(every), Some(f)) =
                    (next_check, limits.recheck_interval, recheck.as_mut())
                {
                    if now >= at {
                        f().await.map_err(TcpProxyError::Limit)?;
                        next_check = Some(now + ms(every));
                    }
                }
            }
        }
    }
}

/// Why a TCP-mode connection was not relayed.
#[derive(Debug, thiserror::Error)]
pub enum TcpRefusal {
    /// No client certificate: TCP mode has no password fallback.
    #[error("no client certificate (tcp:// listeners accept certificates only)")]
    NoCertificate,
    /// The rules denied the certificate.
    #[error("denied by rules: {0}")]
    Denied(String),
    /// The backend address does not resolve.
    #[error("backend {addr}: {source}")]
    Resolve {
        /// The configured `host:port`.
        addr: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Relaying failed.
    #[error(transparent)]
    Proxy(#[from] TcpProxyError),
}

/// Serves one TCP-mode connection after the handshake (and status check): requires a
/// verified certificate, asks the listener's access decision with path `/` (the same
/// [`ListenerAccess::authorize`] HTTP requests go through), then relays to `backend`
/// (`host:port`) with the PROXY v2 header.
///
/// # Errors
/// A [`TcpRefusal`] for the log; the connection is simply closed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_tcp_connection<F, Fut>(
    tls: crate::tls::session::TlsSession,
    session: &crate::tls::SessionInfo,
    peer: SocketAddr,
    local: SocketAddr,
    identity: Option<&CertIdentity>,
    access: &ListenerAccess,
    backend: &str,
    limits: RelayLimits,
    recheck: Option<F>,
) -> Result<(u64, u64), TcpRefusal>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let id = identity.ok_or(TcpRefusal::NoCertificate)?;
    access
        .authorize(
            peer.ip(),
            Some(id),
            &crate::path::CanonicalPath::root(),
            &http::HeaderMap::new(),
        )
        .await
        .map_err(|refused| TcpRefusal::Denied(refused.log_reason))?;
    let addr = crate::upstream::resolve(backend)
        .await
        .map_err(|source| TcpRefusal::Resolve {
            addr: backend.to_string(),
            source,
        })?;
    let info = TlsInfo::from_session(session, Some(id));
    Ok(proxy_tcp(tls, peer, local, &info, addr, limits, recheck).await?)
}
