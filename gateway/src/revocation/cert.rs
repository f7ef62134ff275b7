//! The fields of a certificate that status checking needs, and signature verification
//! through the rustls crypto provider (no home-made crypto).

use rustls::crypto::CryptoProvider;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::der::{bit_string_bytes, normalize_serial, tag, time, DerError, Reader};

/// OID id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), DER value bytes.
const OID_KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";

/// A certificate's fields used by status checking, borrowed from its DER.
#[derive(Debug, Clone)]
pub struct CertInfo<'a> {
    /// The whole certificate.
    pub der: &'a [u8],
    /// Serial number, normalized (no redundant leading zeros).
    pub serial: &'a [u8],
    /// The serialNumber INTEGER, whole TLV.
    pub serial_tlv: &'a [u8],
    /// The issuer Name, whole TLV.
    pub issuer: &'a [u8],
    /// The subject Name, whole TLV.
    pub subject: &'a [u8],
    /// The SubjectPublicKeyInfo, whole TLV.
    pub spki: &'a [u8],
    /// Contents of the SPKI AlgorithmIdentifier.
    pub spki_alg: &'a [u8],
    /// The public key bits.
    pub public_key: &'a [u8],
    /// The signed part.
    pub tbs: &'a [u8],
    /// Contents of the outer signature AlgorithmIdentifier.
    pub sig_alg: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// http:// URLs of the CRL distribution points.
    pub crl_urls: Vec<String>,
    /// http:// URLs of AIA OCSP responders.
    pub ocsp_urls: Vec<String>,
    /// keyUsage: `None` when the extension is absent.
    pub crl_sign: Option<bool>,
    /// The EKU includes id-kp-OCSPSigning.
    pub ocsp_signing: bool,
}

/// Why a certificate cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    /// Structural problem.
    #[error("certificate: {0}")]
    Der(#[from] DerError),
    /// x509-parser refused the extensions.
    #[error("certificate extensions do not parse: {0}")]
    Extensions(String),
}

/// Just the (issuer, serial) of a certificate, read without a full parse: the cache key of the
/// handshake path.
///
/// # Errors
/// [`DerError`] on malformed input.
pub fn issuer_and_serial(der: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let cert = Reader::new(der).expect(tag::SEQUENCE, "certificate is not a SEQUENCE")?;
    let tbs = Reader::new(cert.value).expect(tag::SEQUENCE, "tbsCertificate")?;
    let mut r = Reader::new(tbs.value);
    r.optional(tag::CTX0)?;
    let serial = r.expect(tag::INTEGER, "serialNumber")?;
    r.expect(tag::SEQUENCE, "signature algorithm")?;
    let issuer = r.expect(tag::SEQUENCE, "issuer")?;
    Ok((issuer.raw, normalize_serial(serial.value)))
}

impl<'a> CertInfo<'a> {
    /// Parses `der`.
    ///
    /// # Errors
    /// [`CertError`] on malformed input.
    pub fn parse(der: &'a [u8]) -> Result<Self, CertError> {
        let cert = Reader::new(der).expect(tag::SEQUENCE, "certificate is not a SEQUENCE")?;
        let mut outer = Reader::new(cert.value);
        let tbs = outer.expect(tag::SEQUENCE, "tbsCertificate")?;
        let sig_alg = outer.expect(tag::SEQUENCE, "signatureAlgorithm")?;
        let signature = bit_string_bytes(&outer.expect(tag::BIT_STRING, "signature")?)?;
        let mut r = Reader::new(tbs.value);
        r.optional(tag::CTX0)?;
        let serial = r.expect(tag::INTEGER, "serialNumber")?;
        r.expect(tag::SEQUENCE, "signature algorithm")?;
        let issuer = r.expect(tag::SEQUENCE, "issuer")?;
        let validity = r.expect(tag::SEQUENCE, "validity")?;
        let subject = r.expect(tag::SEQUENCE, "subject")?;
        let spki = r.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?;
        let mut v = Reader::new(validity.value);
        let not_before = time(&v.any()?)?;
        let not_after = time(&v.any()?)?;
        let mut s = Reader::new(spki.value);
        let spki_alg = s.expect(tag::SEQUENCE, "SPKI algorithm")?;
        let public_key = bit_string_bytes(&s.expect(tag::BIT_STRING, "SPKI key")?)?;

        let mut info = CertInfo {
            der,
            serial: normalize_serial(serial.value),
            serial_tlv: serial.raw,
            issuer: issuer.raw,
            subject: subject.raw,
            spki: spki.raw,
            spki_alg: spki_alg.value,
            public_key,
            tbs: tbs.raw,
            sig_alg: sig_alg.value,
            signature,
            not_before,
            not_after,
            crl_urls: Vec::new(),
            ocsp_urls: Vec::new(),
            crl_sign: None,
            ocsp_signing: false,
        };
        info.read_extensions()?;
        Ok(info)
    }

    fn read_extensions(&mut self) -> Result<(), CertError> {
        let (_, x) = X509Certificate::from_der(self.der)
            .map_err(|e| CertError::Extensions(e.to_string()))?;
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(cdp) => {
                    for dp in &cdp.points {
                        if let Some(x509_parser::extensions::DistributionPointName::FullName(
                            names,
                        )) = &dp.distribution_point
                        {
                            for n in names {
                                if let GeneralName::URI(u) = n {
                                    self.crl_urls.push((*u).to_string());
                                }
                            }
                        }
                    }
                }
                ParsedExtension::AuthorityInfoAccess(aia) => {
                    for ad in &aia.accessdescs {
                        if ad.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1" {
                            if let GeneralName::URI(u) = &ad.access_location {
                                self.ocsp_urls.push((*u).to_string());
                            }
                        }
                    }
                }
                ParsedExtension::KeyUsage(ku) => self.crl_sign = Some(ku.crl_sign()),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    self.ocsp_signing = eku.ocsp_signing
                        || eku
                            .other
                            .iter()
                            .any(|o| o.to_id_string() == OID_KP_OCSP_SIGNING);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Serial as hex, for logs.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.serial)
    }

    /// Issuer as an RFC 4514 string, for logs.
    pub fn issuer_string(&self) -> String {
        name_string(self.issuer)
    }

    /// Subject as an RFC 4514 string, for logs.
    pub fn subject_string(&self) -> String {
        name_string(self.subject)
    }

    /// Whether `issuer`'s key verifies this certificate's signature and its subject is our
    /// issuer.
    pub fn is_issued_by(&self, issuer: &CertInfo<'_>, provider: &CryptoProvider) -> bool {
        self.issuer == issuer.subject
            && verify_signature(provider, issuer, self.sig_alg, self.tbs, self.signature).is_ok()
    }
}

/// Formats a Name TLV for messages.
pub fn name_string(raw: &[u8]) -> String {
    match x509_parser::x509::X509Name::from_der(raw) {
        Ok((_, n)) => crate::pki::identity::rfc4514(&n),
        Err(_) => format!("<name {}>", hex::encode(raw)),
    }
}

/// A signature that does not verify, or cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No algorithm of the provider fits the key and signature algorithm.
    #[error("unsupported signature algorithm for this key")]
    Unsupported,
    /// The signature is wrong.
    #[error("signature does not verify")]
    Invalid,
}

/// Verifies `signature` over `message` with `signer`'s public key, using the provider's
/// WebPKI algorithms (the same ones the handshake trusts).
///
/// # Errors
/// [`SignatureError`].
pub fn verify_signature(
    provider: &CryptoProvider,
    signer: &CertInfo<'_>,
    sig_alg: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let mut supported = false;
    for alg in provider.signature_verification_algorithms.all {
        if alg.public_key_alg_id().as_ref() != signer.spki_alg
            || alg.signature_alg_id().as_ref() != sig_alg
        {
            continue;
        }
        supported = true;
        if alg
            .verify_signature(signer.public_key, message, signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    if supported {
        Err(SignatureError::Invalid)
    } else {
        Err(SignatureError::Unsupported)
    }
}
