//! Builds a listener's rustls `ServerConfig` from its configuration.

use std::sync::Arc;

use rustls::ServerConfig;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{Classification, ConfigError, ListenerConfig};
use crate::pki::keypolicy::{KeyPolicy, RequiredEku};
use crate::pki::{load_ca_bundle, load_certs, load_key};
use crate::tls::client_verifier::{HandshakeStatusCheck, SeeClientVerifier};
use crate::tls::policy::{build_provider, versions};

/// A listener's TLS state, shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// The rustls configuration.
    pub server_config: Arc<ServerConfig>,
    /// The listener's classification.
    pub classification: Classification,
    /// The provider in use (for diagnostics).
    pub provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Builds the TLS configuration of listener number `index`.
///
/// Checks the server certificate (parses, currently valid, matches the key) and the trusted
/// CAs, and applies the suite/group/version policy.
///
/// # Errors
/// A [`ConfigError::Invalid`] naming the key at fault.
pub fn build_server_config(
    index: usize,
    l: &ListenerConfig,
    provider_name: &str,
    status: Option<Arc<dyn HandshakeStatusCheck>>,
) -> Result<ListenerTls, ConfigError> {
    let key = |k: &str| format!("listener[{index}].{k}");
    let provider =
        build_provider(provider_name, &l.tls.cipher_suites, &l.tls.groups).map_err(|e| {
            let k = match e {
                crate::tls::TlsPolicyError::Group(..) => "tls.groups",
                crate::tls::TlsPolicyError::Provider(..) => "global.crypto_provider",
                _ => "tls.cipher_suites",
            };
            ConfigError::invalid(key(k), e.to_string())
        })?;
    let versions = versions(&l.tls.versions)
        .map_err(|e| ConfigError::invalid(key("tls.versions"), e.to_string()))?;

    let chain = load_certs(&l.server_cert)
        .map_err(|e| ConfigError::invalid(key("server_cert"), e.to_string()))?;
    check_server_cert_validity(&chain[0]).map_err(|m| {
        ConfigError::invalid(
            key("server_cert"),
            format!("{}: {m}", l.server_cert.display()),
        )
    })?;
    let private_key = load_key(&l.server_key)
        .map_err(|e| ConfigError::invalid(key("server_key"), e.to_string()))?;

    let cas = load_ca_bundle(&l.trusted_cas)
        .map_err(|e| ConfigError::invalid(key("trusted_cas"), e.to_string()))?;
    let eku = if l.tls.require_client_auth_eku {
        RequiredEku::ClientAuth
    } else {
        RequiredEku::None
    };
    let verifier = SeeClientVerifier::new(
        &cas,
        provider.clone(),
        l.classification == Classification::Sensitive,
        KeyPolicy {
            min_rsa_bits: l.tls.min_rsa_bits,
        },
        eku,
        status,
    )
    .map_err(|e| ConfigError::invalid(key("trusted_cas"), e.to_string()))?;

    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::invalid(key("tls"), e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            ConfigError::invalid(
                key("server_key"),
                format!(
                    "server key {} does not fit certificate {}: {e}",
                    l.server_key.display(),
                    l.server_cert.display()
                ),
            )
        })?;
    cfg.alpn_protocols = l.tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    cfg.ignore_client_order = true;
    if l.tls.session_resumption {
        // Stateless TLS 1.3 tickets: any worker can resume any session, no shared lock on
        // the handshake path. TLS 1.2 resumes from the in-memory session-id cache.
        cfg.ticketer = ticketer(provider_name)
            .map_err(|e| ConfigError::invalid(key("tls.session_resumption"), e.to_string()))?;
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    } else {
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(ListenerTls {
        server_config: Arc::new(cfg),
        classification: l.classification,
        provider,
    })
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

/// Replaces the listener's per-process random ticketer with one over the fleet's ticket-key
/// file (`[global] ticket_keys`), derived for this listener's ticket context: its name and
/// client-authentication policy (trusted CAs, classification, key policy, EKU), so a ticket
/// resumes only on a listener with the same name and policy, on any host.
///
/// Does nothing when the listener has `session_resumption = false`.
///
/// # Errors
/// A [`ConfigError::Invalid`] naming `listener[i].trusted_cas` when the CAs cannot be read.
pub fn apply_ticket_keys(
    t: &mut ListenerTls,
    index: usize,
    l: &ListenerConfig,
    keys: &crate::tls::tickets::TicketKeys,
    lifetime_secs: u32,
) -> Result<(), ConfigError> {
    use sha2::{Digest, Sha256};
    if !l.tls.session_resumption {
        return Ok(());
    }
    let cas = load_ca_bundle(&l.trusted_cas).map_err(|e| {
        ConfigError::invalid(format!("listener[{index}].trusted_cas"), e.to_string())
    })?;
    let mut der: Vec<&[u8]> = cas.iter().map(|c| c.as_ref()).collect();
    der.sort_unstable();
    let mut h = Sha256::new();
    h.update(b"listener\0");
    h.update(l.display_name().as_bytes());
    h.update(format!(
        "\0{:?}\0{}\0{}\0",
        l.classification, l.tls.min_rsa_bits, l.tls.require_client_auth_eku
    ));
    for d in der {
        h.update((d.len() as u64).to_be_bytes());
        h.update(d);
    }
    let context = h.finalize();
    let ticketer = keys
        .ticketer(&context, lifetime_secs)
        .map_err(|e| ConfigError::invalid("global.ticket_keys", e.to_string()))?;
    let mut sc = (*t.server_config).clone();
    sc.ticketer = ticketer;
    t.server_config = Arc::new(sc);
    Ok(())
}
