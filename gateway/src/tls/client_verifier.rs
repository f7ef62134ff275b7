//! The client-certificate verifier: RFC 5280 path validation ([`crate::pki::path`]: trust,
//! validity, signatures, name chaining, basicConstraints, keyUsage, name constraints,
//! critical extensions) under the S.E.E. key policy and clientAuth, plus an optional
//! in-handshake status check. rustls' webpki verifier is kept only for the CA hints of the
//! CertificateRequest and the handshake signatures.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};

use crate::pki::keypolicy::{KeyPolicy, RequiredEku};
use crate::pki::path::{
    validate_path_with, PathError, PathPolicy, PolicyInputs, Target, TrustAnchors,
};
use crate::status::{CertStatus, StatusCheck};

/// Verifies client certificates under the listener's policy.
#[derive(Debug)]
pub struct SeeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust: TrustAnchors,
    provider: Arc<rustls::crypto::CryptoProvider>,
    policy: KeyPolicy,
    eku: RequiredEku,
    status: Option<Arc<dyn StatusCheck>>,
    policy_inputs: PolicyInputs,
}

/// Errors building the verifier.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// A trusted CA certificate could not be used as a trust anchor.
    #[error("trusted CA certificate #{index} cannot be used as a trust anchor: {message}")]
    BadAnchor {
        /// Position in the loaded bundle.
        index: usize,
        /// What webpki said.
        message: String,
    },
    /// webpki refused to build the verifier.
    #[error("cannot build client certificate verifier: {0}")]
    Build(String),
}

impl SeeClientVerifier {
    /// Builds a verifier trusting `cas`.
    ///
    /// `required = false` (IN CONFIDENCE) lets clients without a certificate complete the
    /// handshake; a certificate that is presented is still verified in full.
    ///
    /// # Errors
    /// [`VerifierError`] if a CA cannot be a trust anchor.
    pub fn new(
        cas: &[CertificateDer<'static>],
        provider: Arc<rustls::crypto::CryptoProvider>,
        required: bool,
        policy: KeyPolicy,
        eku: RequiredEku,
        status: Option<Arc<dyn StatusCheck>>,
    ) -> Result<Self, VerifierError> {
        let mut roots = RootCertStore::empty();
        for (index, ca) in cas.iter().enumerate() {
            roots
                .add(ca.clone())
                .map_err(|e| VerifierError::BadAnchor {
                    index,
                    message: e.to_string(),
                })?;
        }
        let trust = TrustAnchors::new(cas).map_err(|e| VerifierError::BadAnchor {
            index: 0,
            message: e.to_string(),
        })?;
        let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if !required {
            b = b.allow_unauthenticated();
        }
        let inner = b.build().map_err(|e| VerifierError::Build(e.to_string()))?;
        Ok(SeeClientVerifier {
            inner,
            trust,
            provider,
            policy,
            eku,
            status,
            policy_inputs: PolicyInputs::default(),
        })
    }

    /// The certificate policy inputs client paths are validated under (`[listener.pki]`;
    /// default: any policy, none required).
    #[must_use]
    pub fn with_policy_inputs(mut self, inputs: PolicyInputs) -> Self {
        self.policy_inputs = inputs;
        self
    }
}

/// A refusal by the key policy (already a TLS error) or by path validation.
enum VerifyFailure {
    Tls(Error),
    Path(PathError),
}

impl From<PathError> for VerifyFailure {
    fn from(e: PathError) -> Self {
        VerifyFailure::Path(e)
    }
}

fn policy_error(e: crate::pki::keypolicy::KeyPolicyError) -> Error {
    e.into_tls_error("client")
}

impl ClientCertVerifier for SeeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verify_inner(end_entity, intermediates, now)
            .inspect_err(|e| log_rejection(end_entity, e))
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

/// Logs a refused client certificate with its subject, issuer and serial (best effort: the
/// certificate may not even parse).
fn log_rejection(end_entity: &CertificateDer<'_>, e: &Error) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(end_entity) {
        Ok((_, c)) => tracing::info!(
            subject = %crate::pki::identity::rfc4514(c.subject()),
            issuer = %crate::pki::identity::rfc4514(c.issuer()),
            serial = %hex::encode(c.raw_serial()),
            reason = %e,
            "client certificate refused"
        ),
        Err(_) => tracing::info!(reason = %e, "unparsable client certificate refused"),
    }
}

impl SeeClientVerifier {
    fn verify_inner(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let policy = PathPolicy {
            key_policy: self.policy,
            eku: self.eku,
            target: Target::EndEntity,
            algs: self.provider.signature_verification_algorithms.all,
            policy_inputs: self.policy_inputs.clone(),
        };
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        // A returning client's chain is answered by the trust store's chain cache. Otherwise
        // the cheap structural policy first: a 1024-bit or SHA-1 certificate never reaches
        // the (more expensive) signature checks.
        validate_path_with(&chain, &self.trust, at, &policy, || {
            self.policy
                .check(end_entity, self.eku)
                .map_err(|e| VerifyFailure::Tls(policy_error(e)))?;
            for ca in intermediates {
                self.policy
                    .check(ca, RequiredEku::None)
                    .map_err(|e| VerifyFailure::Tls(policy_error(e)))?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            VerifyFailure::Tls(e) => e,
            VerifyFailure::Path(e) => e.to_rustls(),
        })?;
        if let Some(status) = &self.status {
            // Cache only: a known revocation fails the handshake; anything not yet known is
            // decided after it (see `StatusCheck::check_chain`).
            if let CertStatus::Revoked { .. } = status.in_handshake(end_entity, intermediates, now)
            {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Revoked));
            }
        }
        Ok(ClientCertVerified::assertion())
    }
}
