//! A listener's rustls `ServerConfig`, from its typed TLS settings and loaded material.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;
use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::keypolicy::{KeyPolicy, RequiredEku};
use crate::status::StatusCheck;
use crate::tls::client_verifier::{SeeClientVerifier, VerifierError};
use crate::tls::policy::{versions, TlsPolicyError};

/// TLS parameters of a listener (`[listener.tls]`). The defaults are the strict policy.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Protocol versions: any of `"1.2"`, `"1.3"`.
    pub versions: Vec<String>,
    /// Cipher suites by IANA/rustls name. Default: the AES-GCM suites only.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups. Default: X25519MLKEM768 (where the provider has it), X25519,
    /// secp256r1, secp384r1.
    pub groups: Vec<String>,
    /// Minimum RSA modulus size in bits for client certificates and their chain.
    pub min_rsa_bits: usize,
    /// Require the clientAuth extended key usage in client certificates.
    pub require_client_auth_eku: bool,
    /// ALPN protocols offered, in preference order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    /// TLS 1.2 session-id cache and TLS 1.3 tickets enabled.
    pub session_resumption: bool,
    /// TLS 1.3 session tickets sent after each handshake (1 to 4; with
    /// `session_resumption`). Each costs an encryption, a key derivation and about 250 bytes
    /// on the wire, also for clients that never resume; a client resuming gets a fresh one
    /// every time. Default 1 (rustls and OpenSSL send 2).
    pub tls13_tickets: usize,
}

/// The most TLS 1.3 tickets a handshake may send.
pub const MAX_TLS13_TICKETS: usize = 4;

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            versions: vec!["1.2".into(), "1.3".into()],
            cipher_suites: Vec::new(),
            groups: Vec::new(),
            min_rsa_bits: 2048,
            require_client_auth_eku: true,
            alpn: vec!["h2".into(), "http/1.1".into()],
            session_resumption: true,
            tls13_tickets: 1,
        }
    }
}

/// Everything a listener's `ServerConfig` is made of, loaded and checked by the plan step.
pub struct ServerTlsParts<'a> {
    /// The listener's TLS settings.
    pub settings: &'a TlsConfig,
    /// SENSITIVE: a client certificate is required; IN CONFIDENCE: optional.
    pub client_cert_required: bool,
    /// The provider restricted to the listener's suites and groups.
    pub provider: Arc<CryptoProvider>,
    /// `global.crypto_provider`, for the session-ticket encrypter.
    pub provider_name: &'a str,
    /// The server certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The trusted client CAs.
    pub trusted_cas: &'a [CertificateDer<'static>],
    /// The in-handshake status check (revocation), if any.
    pub status: Option<Arc<dyn StatusCheck>>,
    /// Serves the certificate with an OCSP staple instead of the plain chain, if set.
    pub cert_resolver: Option<Arc<dyn ResolvesServerCert>>,
    /// Certificate policy inputs for client paths (`[listener.pki]`).
    pub policy_inputs: crate::pki::path::PolicyInputs,
}

/// Why a listener's `ServerConfig` cannot be built; the plan step names the key.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// `tls.versions` is not acceptable.
    #[error("{0}")]
    Versions(TlsPolicyError),
    /// The server certificate is expired, not yet valid or unparsable.
    #[error("{0}")]
    ServerCert(String),
    /// The trusted CAs cannot make a verifier.
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    /// rustls refused the protocol versions with this provider.
    #[error("{0}")]
    Protocol(rustls::Error),
    /// The server key does not fit the certificate.
    #[error("{0}")]
    KeyMismatch(rustls::Error),
    /// The session-ticket encrypter cannot be made.
    #[error("{0}")]
    Ticketer(rustls::Error),
    /// `tls13_tickets` is out of range.
    #[error("{0} tickets per handshake: must be 1 to {MAX_TLS13_TICKETS} (to send none, set session_resumption = false)")]
    Tickets(usize),
}

/// Builds a listener's rustls configuration: checks the server certificate's validity, builds
/// the client verifier (key policy, EKU, trust anchors, status check) and applies the
/// version, ALPN and resumption settings.
///
/// # Errors
/// A [`ServerTlsError`] saying which part is unusable.
pub fn build_server_config(parts: ServerTlsParts<'_>) -> Result<ServerConfig, ServerTlsError> {
    let l = parts.settings;
    let versions = versions(&l.versions).map_err(ServerTlsError::Versions)?;
    let leaf = parts
        .chain
        .first()
        .ok_or_else(|| ServerTlsError::ServerCert("no certificate".into()))?;
    check_server_cert_validity(leaf).map_err(ServerTlsError::ServerCert)?;
    let eku = if l.require_client_auth_eku {
        RequiredEku::ClientAuth
    } else {
        RequiredEku::None
    };
    let verifier = SeeClientVerifier::new(
        parts.trusted_cas,
        parts.provider.clone(),
        parts.client_cert_required,
        KeyPolicy {
            min_rsa_bits: l.min_rsa_bits,
        },
        eku,
        parts.status,
    )?
    .with_policy_inputs(parts.policy_inputs);
    let mut cfg = ServerConfig::builder_with_provider(parts.provider)
        .with_protocol_versions(&versions)
        .map_err(ServerTlsError::Protocol)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(parts.chain, parts.key)
        .map_err(ServerTlsError::KeyMismatch)?;
    if let Some(resolver) = parts.cert_resolver {
        // Same certificate and key, served with a current OCSP staple when there is one.
        cfg.cert_resolver = resolver;
    }
    cfg.alpn_protocols = l.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    cfg.ignore_client_order = true;
    // The record layer after the handshake is the gateway's own (`tls::session`): rustls
    // hands over the session keys once the handshake is complete.
    cfg.enable_secret_extraction = true;
    if l.session_resumption {
        // Stateless TLS 1.3 tickets: any worker can resume any session, no shared lock on
        // the handshake path. TLS 1.2 resumes from the in-memory session-id cache.
        if !(1..=MAX_TLS13_TICKETS).contains(&l.tls13_tickets) {
            return Err(ServerTlsError::Tickets(l.tls13_tickets));
        }
        cfg.send_tls13_tickets = l.tls13_tickets;
        cfg.ticketer = ticketer(parts.provider_name).map_err(ServerTlsError::Ticketer)?;
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    } else {
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(cfg)
}

fn ticketer(provider: &str) -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    match provider {
        #[cfg(feature = "ring")]
        "ring" => rustls::crypto::ring::Ticketer::new(),
        #[cfg(feature = "aws-lc-rs")]
        _ => rustls::crypto::aws_lc_rs::Ticketer::new(),
        #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
        _ => rustls::crypto::ring::Ticketer::new(),
    }
}

/// Refuses a server certificate that is expired, not yet valid or unparsable.
fn check_server_cert_validity(der: &[u8]) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("server certificate does not parse: {e}"))?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now < v.not_before {
        return Err(format!(
            "server certificate is not valid before {}",
            v.not_before
        ));
    }
    if now > v.not_after {
        return Err(format!("server certificate expired at {}", v.not_after));
    }
    Ok(())
}
