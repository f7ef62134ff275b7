//! Upstream TLS: the gateway as a S.E.E. client of an `https://` backend (14.2.11-14.2.12).
//!
//! The backend's certificate must chain to a CA configured *for that backend*, be within
//! its validity period, carry good signatures, match the host name, pass the key policy
//! (RSA >= 2048, P-256/P-384, no SHA-1, serverAuth EKU), and have a current status that
//! is not revoked. The status check runs through a [`StatusCheck`] (the revocation
//! machinery) right after the handshake and before a single byte of the request is sent;
//! an unknown status refuses the connection (fail closed). The caller answers 502 and logs
//! the [`UpstreamError`].
//!
//! [`UpstreamConnector`] plugs this into `hyper_util::client::legacy::Client`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::pki::keypolicy::{KeyPolicy, KeyPolicyError, RequiredEku};
use crate::pki::{load_ca_bundle, load_certs, load_key};
use crate::status::{CertStatus, ChainStatus, StatusCheck, StatusFactory};

/// Whether the backend certificate's revocation status must be known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamRevocation {
    /// Check every certificate of the chain; refuse on revoked or unknown (the default).
    #[default]
    Require,
    /// Do not check (a relaxation, logged at start-up).
    Off,
}

/// TLS settings for an `https://` backend: `[listener.upstream]` or
/// `[listener.route.upstream]`.
#[derive(Debug, Clone, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM files/directories of the CAs trusted for this backend (not the listener's).
    pub trusted_cas: Vec<PathBuf>,
    /// Name to verify in the backend's certificate (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate chain for gateway-to-backend mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Minimum RSA size in the backend's chain.
    #[serde(default = "default_min_rsa")]
    pub min_rsa_bits: usize,
    /// `require` (default) or `off`.
    #[serde(default)]
    pub revocation: UpstreamRevocation,
    /// Seconds for TCP connect plus handshake plus status check.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_min_rsa() -> usize {
    2048
}

fn default_connect_timeout() -> u64 {
    10
}

impl UpstreamTlsConfig {
    /// Resolves relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.trusted_cas.iter_mut().for_each(fix);
        self.client_cert.iter_mut().for_each(fix);
        self.client_key.iter_mut().for_each(fix);
    }

    /// Validates values; `Err((key, message))` names the key below `upstream.`.
    ///
    /// # Errors
    /// No CA, a lone client cert or key, an RSA floor below 2048.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.trusted_cas.is_empty() {
            return Err((
                "trusted_cas".into(),
                "at least one CA for the backend is required".into(),
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err((
                "client_cert".into(),
                "client_cert and client_key go together".into(),
            ));
        }
        if self.min_rsa_bits < 2048 {
            return Err((
                "min_rsa_bits".into(),
                format!("{} is below the policy floor of 2048", self.min_rsa_bits),
            ));
        }
        if let Some(n) = &self.server_name {
            ServerName::try_from(n.as_str()).map_err(|e| {
                (
                    "server_name".to_string(),
                    format!("{n:?} is not a DNS name or IP ({e})"),
                )
            })?;
        }
        Ok(())
    }

    /// Relaxations, for the start-up log.
    pub fn relaxations(&self) -> Vec<String> {
        match self.revocation {
            UpstreamRevocation::Off => {
                vec!["upstream.revocation = \"off\": backend certificate status not checked".into()]
            }
            UpstreamRevocation::Require => Vec::new(),
        }
    }
}

/// Why an upstream connection was refused or failed. Logged by the caller, who answers 502.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Bad upstream configuration (files, keys).
    #[error("upstream TLS configuration: {0}")]
    Config(String),
    /// The backend URL cannot be used.
    #[error("upstream URL {0}")]
    Url(String),
    /// TCP connect failed.
    #[error("cannot connect to backend {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// Connect, handshake and status check took too long.
    #[error("backend {addr}: no connection within {secs}s")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The deadline.
        secs: u64,
    },
    /// The TLS handshake failed, including certificate verification (untrusted, expired,
    /// wrong name, key policy).
    #[error("TLS handshake with backend {addr} failed: {source}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// The error (rustls error inside).
        source: io::Error,
    },
    /// A certificate of the backend's chain is revoked.
    #[error("backend {addr}: certificate {subject:?} is revoked ({reason}; {origin})")]
    Revoked {
        /// `host:port`.
        addr: String,
        /// The certificate.
        subject: String,
        /// Reason.
        reason: String,
        /// Where the status came from.
        origin: String,
    },
    /// A certificate's status could not be established (fail closed).
    #[error("backend {addr}: no current revocation status for {subject:?} ({reason})")]
    StatusUnknown {
        /// `host:port`.
        addr: String,
        /// The certificate.
        subject: String,
        /// Why.
        reason: String,
    },
}

fn policy_error(e: KeyPolicyError) -> Error {
    e.into_tls_error("server")
}

/// A `ServerCertVerifier` applying the S.E.E. client rules: the RFC 5280 path validation
/// of [`crate::pki::path`] (trust in the given anchors only, validity, signatures,
/// basicConstraints, keyUsage, name constraints, serverAuth, the key policy) and the host
/// name (rustls' `verify_server_name`). webpki only verifies the handshake signatures.
#[derive(Debug)]
pub struct SeeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trust: crate::pki::path::TrustAnchors,
    algs: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    policy: KeyPolicy,
}

impl SeeServerVerifier {
    /// Builds a verifier trusting only `anchors`.
    ///
    /// # Errors
    /// [`UpstreamError::Config`] if an anchor is unusable or the set is empty.
    pub fn new(
        anchors: &[CertificateDer<'static>],
        provider: Arc<rustls::crypto::CryptoProvider>,
        policy: KeyPolicy,
    ) -> Result<Self, UpstreamError> {
        let mut roots = RootCertStore::empty();
        for (i, a) in anchors.iter().enumerate() {
            roots.add(a.clone()).map_err(|e| {
                UpstreamError::Config(format!("trusted CA #{i} is not a usable trust anchor: {e}"))
            })?;
        }
        let trust = crate::pki::path::TrustAnchors::new(anchors)
            .map_err(|e| UpstreamError::Config(format!("trusted CA: {e}")))?;
        let algs = provider.signature_verification_algorithms.all;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| UpstreamError::Config(format!("cannot build server verifier: {e}")))?;
        Ok(SeeServerVerifier {
            inner,
            trust,
            algs,
            policy,
        })
    }
}

impl ServerCertVerifier for SeeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.policy
            .check(end_entity, RequiredEku::ServerAuth)
            .map_err(policy_error)?;
        for c in intermediates {
            self.policy
                .check(c, RequiredEku::None)
                .map_err(policy_error)?;
        }
        let _ = ocsp_response; // status comes from the status check, not a staple
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let policy = crate::pki::path::PathPolicy {
            key_policy: self.policy,
            eku: RequiredEku::ServerAuth,
            target: crate::pki::path::Target::EndEntity,
            algs: self.algs,
            policy_inputs: crate::pki::path::PolicyInputs::default(),
        };
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        crate::pki::path::validate_path(&chain, &self.trust, at, &policy)
            .map_err(|e| e.to_rustls())?;
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        crate::tls::policy::without_sha1(self.inner.supported_verify_schemes())
    }
}

/// Runs `status` over a verified chain and turns its refusal (a revoked certificate, else
/// the first without a current status) into an error. A checker that reports nothing for
/// a certificate counts as unavailable.
///
/// # Errors
/// [`UpstreamError::Revoked`] or [`UpstreamError::StatusUnknown`].
pub async fn check_status(
    status: &dyn StatusCheck,
    presented: &[CertificateDer<'static>],
    addr: &str,
) -> Result<ChainStatus, UpstreamError> {
    let reports = status.check_chain(presented).await;
    if !reports.covers(presented.len()) {
        return Err(UpstreamError::StatusUnknown {
            addr: addr.into(),
            subject: format!("chain certificate #{}", reports.certs.len()),
            reason: "the status checker gave no answer for it".into(),
        });
    }
    match reports.refusal() {
        None => Ok(reports),
        Some(r) => Err(match &r.status {
            CertStatus::Revoked { source, .. } => UpstreamError::Revoked {
                addr: addr.into(),
                subject: r.subject.clone(),
                reason: r.status.to_string(),
                origin: source.to_string(),
            },
            _ => UpstreamError::StatusUnknown {
                addr: addr.into(),
                subject: r.subject.clone(),
                reason: r.status.to_string(),
            },
        }),
    }
}

/// A configured TLS client for one backend.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    status: Option<Arc<dyn StatusCheck>>,
    server_name: Option<ServerName<'static>>,
    timeout: Duration,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("status", &self.status)
            .field("server_name", &self.server_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl UpstreamTls {
    /// Builds the client from its configuration. `provider` is the policy-restricted crypto
    /// provider (see [`crate::tls::build_provider`]); `status` makes the revocation checker.
    ///
    /// # Errors
    /// [`UpstreamError::Config`] for unreadable CAs/keys, a bad client key, or
    /// `revocation = "require"` (the default) without a checker: the gateway refuses to
    /// start rather than connect unchecked.
    pub fn from_config(
        cfg: &UpstreamTlsConfig,
        provider: Arc<rustls::crypto::CryptoProvider>,
        status: Option<&StatusFactory>,
    ) -> Result<Self, UpstreamError> {
        cfg.validate()
            .map_err(|(k, m)| UpstreamError::Config(format!("upstream.{k}: {m}")))?;
        let anchors =
            load_ca_bundle(&cfg.trusted_cas).map_err(|e| UpstreamError::Config(e.to_string()))?;
        let status = match (cfg.revocation, status) {
            (UpstreamRevocation::Off, _) => None,
            (UpstreamRevocation::Require, Some(make)) => Some(make(&anchors).map_err(|e| {
                UpstreamError::Config(format!("upstream revocation checker: {e}"))
            })?),
            (UpstreamRevocation::Require, None) => {
                return Err(UpstreamError::Config(
                    "upstream.revocation = \"require\" but no revocation checker is available; \
                     configure revocation checking or set upstream.revocation = \"off\" (a logged relaxation)"
                        .into(),
                ))
            }
        };
        let verifier = SeeServerVerifier::new(
            &anchors,
            provider.clone(),
            KeyPolicy {
                min_rsa_bits: cfg.min_rsa_bits,
            },
        )?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| UpstreamError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => {
                let chain = load_certs(c).map_err(|e| UpstreamError::Config(e.to_string()))?;
                let key = load_key(k).map_err(|e| UpstreamError::Config(e.to_string()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    UpstreamError::Config(format!(
                        "client key {} does not fit {}: {e}",
                        k.display(),
                        c.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name =
            match &cfg.server_name {
                Some(n) => Some(ServerName::try_from(n.clone()).map_err(|e| {
                    UpstreamError::Config(format!("upstream.server_name {n:?}: {e}"))
                })?),
                None => None,
            };
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            status,
            server_name,
            timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
        })
    }

    /// Connects to `addr` (`host:port`), verifies the backend as `host` (or the configured
    /// `server_name`) and checks the chain's status. Nothing is sent before all of it passed.
    ///
    /// # Errors
    /// An [`UpstreamError`] saying which check refused the backend.
    pub async fn connect(
        &self,
        addr: &str,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let secs = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, self.connect_inner(addr, host))
            .await
            .map_err(|_| UpstreamError::Timeout {
                addr: addr.into(),
                secs,
            })?
    }

    async fn connect_inner(
        &self,
        addr: &str,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            )
            .map_err(|e| {
                UpstreamError::Url(format!("host {host:?} is not a DNS name or IP: {e}"))
            })?,
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls =
            self.connector
                .connect(name, tcp)
                .await
                .map_err(|source| UpstreamError::Handshake {
                    addr: addr.into(),
                    source,
                })?;
        if let Some(status) = &self.status {
            let presented: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            check_status(status.as_ref(), &presented, addr).await?;
        }
        Ok(tls)
    }
}

/// A connection to a backend, plain or TLS, usable by hyper-util's legacy client.
#[derive(Debug)]
pub enum UpstreamStream {
    /// `http://`.
    Plain(TokioIo<TcpStream>),
    /// `https://`, verified.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Deadline of a plain `http://` backend connect.
pub const PLAIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connector for `hyper_util::client::legacy::Client`: `http://` URIs get plain TCP,
/// `https://` URIs get [`UpstreamTls::connect`]. Build one client per backend that has its
/// own upstream TLS settings.
#[derive(Debug, Clone, Default)]
pub struct UpstreamConnector {
    tls: Option<Arc<UpstreamTls>>,
    /// Plain TCP connect deadline (`limits.upstream_connect_timeout_secs`).
    connect_timeout: Option<Duration>,
}

impl UpstreamConnector {
    /// A connector; `tls` is required for `https://` URIs.
    pub fn new(tls: Option<Arc<UpstreamTls>>) -> Self {
        UpstreamConnector {
            tls,
            connect_timeout: None,
        }
    }

    /// Sets the plain TCP connect deadline (default [`PLAIN_CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
}

fn uri_target(uri: &Uri) -> Result<(bool, String, String), UpstreamError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => {
            return Err(UpstreamError::Url(format!(
                "{uri}: scheme {other:?} not supported"
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| UpstreamError::Url(format!("{uri}: no host")))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((https, addr, host.to_string()))
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamStream;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let connect_timeout = self.connect_timeout.unwrap_or(PLAIN_CONNECT_TIMEOUT);
        Box::pin(async move {
            let (https, addr, host) = uri_target(&uri)?;
            if https {
                let tls = tls.ok_or_else(|| {
                    UpstreamError::Url(format!(
                        "{uri}: https backend without upstream TLS settings"
                    ))
                })?;
                Ok(UpstreamStream::Tls(Box::new(TokioIo::new(
                    tls.connect(&addr, &host).await?,
                ))))
            } else {
                let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&addr))
                    .await
                    .map_err(|_| UpstreamError::Timeout {
                        addr: addr.clone(),
                        secs: connect_timeout.as_secs(),
                    })?
                    .map_err(|source| UpstreamError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
                let _ = tcp.set_nodelay(true);
                Ok(UpstreamStream::Plain(TokioIo::new(tcp)))
            }
        })
    }
}

/// The whole cause chain of an error on one line, for the 502 log line
/// (`hyper_util` wraps the [`UpstreamError`] in its own error).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Resolves `addr` to a socket address (first result), for callers that need one.
///
/// # Errors
/// The resolver's error, or `NotFound` if it returned nothing.
pub async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")))
}

/// Where requests are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An HTTP/1.1 origin, `http://host:port`.
    Http {
        /// `host:port` to connect to.
        authority: String,
        /// Scheme+authority, for the Host header.
        base: String,
    },
    /// The built-in identity echo backend (answers with the identity it received, as JSON).
    BuiltinIdentity,
    /// An HTTPS origin, `https://host[:port]`: the gateway is a S.E.E. TLS client of it
    /// (see [`UpstreamTls`]; needs `[listener.upstream]`).
    Https {
        /// `host:port` to connect to.
        authority: String,
        /// Scheme+authority, for the Host header.
        base: String,
        /// The host name to verify in the backend's certificate.
        host: String,
    },
    /// Raw TCP mode, `tcp://host:port`: the decrypted stream is relayed with a PROXY v2
    /// header (the `tcp_proxy` module).
    Tcp {
        /// `host:port` to connect to.
        authority: String,
    },
}

/// Parses a backend URL.
///
/// # Errors
/// A message naming what is unsupported.
pub fn parse_backend(s: &str) -> Result<Backend, String> {
    if s == "builtin:identity" {
        return Ok(Backend::BuiltinIdentity);
    }
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https" | "tcp")) => s,
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not supported; use http://host:port, https://host:port, tcp://host:port or builtin:identity"
            ))
        }
        None => return Err(format!("{s:?} has no scheme; use http://host:port")),
    };
    let auth = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!(
            "{s:?}: a path prefix on the backend is not supported"
        ));
    }
    if scheme == "tcp" {
        if auth.port_u16().is_none() {
            return Err(format!("{s:?}: a tcp:// backend needs a port"));
        }
        return Ok(Backend::Tcp {
            authority: auth.as_str().to_string(),
        });
    }
    if scheme == "https" {
        let authority = if auth.port_u16().is_some() {
            auth.as_str().to_string()
        } else {
            format!("{}:443", auth.host())
        };
        return Ok(Backend::Https {
            authority,
            base: format!("https://{}", auth.as_str()),
            host: auth
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        });
    }
    let authority = if auth.port_u16().is_some() {
        auth.as_str().to_string()
    } else {
        format!("{}:80", auth.host())
    };
    Ok(Backend::Http {
        authority,
        base: format!("http://{}", auth.as_str()),
    })
}
