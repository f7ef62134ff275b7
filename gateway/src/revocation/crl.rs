//! CRLs (RFC 5280 §5): parsing DER or PEM, issuer signature and cRLSign checks, freshness,
//! and compact storage of the revoked serials.

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;

use super::cert::{verify_signature, CertInfo};
use super::der::{bit_string_bytes, fmt_time, normalize_serial, tag, time, DerError, Reader};
use super::serials::SerialSet;

/// What is wrong with a CRL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrlError {
    /// Neither DER nor a PEM `X509 CRL` block.
    #[error("CRL is neither DER nor PEM: {0}")]
    Encoding(String),
    /// Structural problem.
    #[error("CRL: {0}")]
    Der(#[from] DerError),
    /// Unsupported feature (delta CRL, indirect CRL, unknown critical extension).
    #[error("CRL: unsupported: {0}")]
    Unsupported(String),
    /// The CRL's issuer is not the certificate's issuer.
    #[error("CRL issuer does not match the certificate issuer")]
    WrongIssuer,
    /// The issuer's keyUsage lacks cRLSign.
    #[error("CRL issuer certificate lacks the cRLSign key usage")]
    NoCrlSign,
    /// The signature does not verify with the issuer's key.
    #[error("CRL signature does not verify with the issuer's key: {0}")]
    BadSignature(String),
    /// thisUpdate in the future.
    #[error("CRL thisUpdate {0} is in the future")]
    NotYetValid(String),
    /// nextUpdate passed, or absent.
    #[error("CRL is stale: nextUpdate {0} has passed")]
    Stale(String),
    /// RFC 5280 requires nextUpdate; without it freshness cannot be judged.
    #[error("CRL has no nextUpdate")]
    NoNextUpdate,
}

/// A parsed CRL whose signature has not been checked yet; borrows the input.
#[derive(Debug)]
pub struct ParsedCrl<'a> {
    /// The signed part.
    pub tbs: &'a [u8],
    /// Outer signature algorithm (contents).
    pub sig_alg: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
    /// Issuer Name TLV.
    pub issuer: &'a [u8],
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: Option<i64>,
    /// The revoked serials.
    pub serials: SerialSet,
}

/// A verified CRL, held compactly.
#[derive(Debug)]
pub struct Crl {
    /// Issuer Name TLV.
    pub issuer: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// Revoked serials.
    pub serials: SerialSet,
}

impl Crl {
    /// Whether `serial` (normalized) is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(serial)
    }

    /// Whether the CRL is current at `now` with `skew` seconds of allowance.
    pub fn is_current(&self, now: i64, skew: i64) -> bool {
        self.this_update <= now + skew && now <= self.next_update + skew
    }
}

const OID_DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 0x1b];
const OID_ISSUING_DP: &[u8] = &[0x55, 0x1d, 0x1c];
const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const OID_REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
const OID_INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];

/// Returns DER from DER or PEM input.
///
/// # Errors
/// [`CrlError::Encoding`].
pub fn to_der(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CrlError> {
    if bytes.first() == Some(&tag::SEQUENCE) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    CertificateRevocationListDer::from_pem_slice(bytes)
        .map(|d| std::borrow::Cow::Owned(d.as_ref().to_vec()))
        .map_err(|e| CrlError::Encoding(e.to_string()))
}

/// Parses a DER CRL (signature not yet checked).
///
/// # Errors
/// [`CrlError`] naming the problem.
pub fn parse(der: &[u8]) -> Result<ParsedCrl<'_>, CrlError> {
    let mut top = Reader::new(der);
    let list = top.expect(tag::SEQUENCE, "CertificateList is not a SEQUENCE")?;
    if !top.is_empty() {
        return Err(DerError("trailing data after the CertificateList").into());
    }
    let mut outer = Reader::new(list.value);
    let tbs = outer.expect(tag::SEQUENCE, "tbsCertList")?;
    let sig_alg = outer.expect(tag::SEQUENCE, "signatureAlgorithm")?;
    let signature = bit_string_bytes(&outer.expect(tag::BIT_STRING, "signatureValue")?)?;

    let mut r = Reader::new(tbs.value);
    r.optional(tag::INTEGER)?; // version
    let inner_alg = r.expect(tag::SEQUENCE, "tbsCertList.signature")?;
    if inner_alg.value != sig_alg.value {
        return Err(DerError("inner and outer signature algorithms differ").into());
    }
    let issuer = r.expect(tag::SEQUENCE, "issuer")?;
    let this_update = time(&r.any()?)?;
    let next_update = match r.peek_tag() {
        Some(tag::UTC_TIME | tag::GENERALIZED_TIME) => Some(time(&r.any()?)?),
        _ => None,
    };
    let mut serials = Vec::new();
    if r.peek_tag() == Some(tag::SEQUENCE) {
        let list = r.any()?;
        let mut entries = Reader::new(list.value);
        while !entries.is_empty() {
            let entry = entries.expect(tag::SEQUENCE, "revokedCertificates entry")?;
            let mut e = Reader::new(entry.value);
            let serial = e.expect(tag::INTEGER, "revoked userCertificate")?;
            e.any()?; // revocationDate
            if let Some(exts) = e.optional(tag::SEQUENCE)? {
                check_extensions(exts.value, &[OID_REASON_CODE, OID_INVALIDITY_DATE], "entry")?;
            }
            serials.push(normalize_serial(serial.value));
        }
    }
    if let Some(exts) = r.optional(tag::CTX0)? {
        let seq = Reader::new(exts.value).expect(tag::SEQUENCE, "crlExtensions")?;
        check_extensions(
            seq.value,
            &[OID_ISSUING_DP, OID_CRL_NUMBER, OID_AUTHORITY_KEY_ID],
            "CRL",
        )?;
    }
    Ok(ParsedCrl {
        tbs: tbs.raw,
        sig_alg: sig_alg.value,
        signature,
        issuer: issuer.raw,
        this_update,
        next_update,
        serials: SerialSet::build(&serials),
    })
}

const OCTET_STRING: u8 = 0x04;

/// A CRL whose IssuingDistributionPoint narrows its scope (only CA certificates, only
/// attribute certificates, only some reasons, or an indirect CRL) is not a complete answer
/// for a certificate: using it as one could report `good` for a revoked certificate, so it
/// is refused (fail closed). A distribution-point name and onlyContainsUserCerts are fine
/// for the end-entity certificates this gateway checks.
fn check_idp_scope(idp: &[u8]) -> Result<(), CrlError> {
    let seq = Reader::new(idp).expect(tag::SEQUENCE, "IssuingDistributionPoint")?;
    let mut r = Reader::new(seq.value);
    while !r.is_empty() {
        let field = r.any()?;
        let restricts = match field.tag {
            0x82 | 0x84 | 0x85 => field.value.iter().any(|&b| b != 0), // BOOLEAN TRUE
            0x83 | 0xa3 => true,                                       // onlySomeReasons
            _ => false,
        };
        if restricts {
            let what = match field.tag {
                0x82 => "onlyContainsCACerts",
                0x84 => "indirectCRL",
                0x85 => "onlyContainsAttributeCerts",
                _ => "onlySomeReasons",
            };
            return Err(CrlError::Unsupported(format!(
                "CRL scope restricted by issuingDistributionPoint {what}"
            )));
        }
    }
    Ok(())
}

/// Rejects delta CRLs and unknown critical extensions.
fn check_extensions(seq: &[u8], known: &[&[u8]], what: &str) -> Result<(), CrlError> {
    let mut r = Reader::new(seq);
    while !r.is_empty() {
        let ext = r.expect(tag::SEQUENCE, "extension")?;
        let mut e = Reader::new(ext.value);
        let oid = e.expect(tag::OID, "extension id")?;
        if oid.value == OID_DELTA_CRL_INDICATOR {
            return Err(CrlError::Unsupported("delta CRLs".into()));
        }
        let critical = matches!(e.optional(tag::BOOLEAN)?, Some(b) if b.value == [0xff]);
        if oid.value == OID_ISSUING_DP {
            let value = e.expect(OCTET_STRING, "issuingDistributionPoint value")?;
            check_idp_scope(value.value)?;
        }
        if critical && !known.contains(&oid.value) {
            return Err(CrlError::Unsupported(format!(
                "critical {what} extension {}",
                hex::encode(oid.value)
            )));
        }
    }
    Ok(())
}

impl ParsedCrl<'_> {
    /// Checks issuer, cRLSign, signature and freshness at `now` and keeps the compact form.
    ///
    /// # Errors
    /// [`CrlError`] naming the failed check.
    pub fn verify(
        self,
        issuer: &CertInfo<'_>,
        provider: &CryptoProvider,
        now: i64,
        skew: i64,
    ) -> Result<Crl, CrlError> {
        if self.issuer != issuer.subject {
            return Err(CrlError::WrongIssuer);
        }
        if issuer.crl_sign == Some(false) {
            return Err(CrlError::NoCrlSign);
        }
        verify_signature(provider, issuer, self.sig_alg, self.tbs, self.signature)
            .map_err(|e| CrlError::BadSignature(e.to_string()))?;
        let next_update = self.next_update.ok_or(CrlError::NoNextUpdate)?;
        let crl = Crl {
            issuer: self.issuer.to_vec(),
            this_update: self.this_update,
            next_update,
            serials: self.serials,
        };
        check_times(&crl, now, skew)?;
        Ok(crl)
    }
}

/// Freshness of a verified CRL at `now`.
///
/// # Errors
/// [`CrlError::NotYetValid`] or [`CrlError::Stale`].
pub fn check_times(crl: &Crl, now: i64, skew: i64) -> Result<(), CrlError> {
    if crl.this_update > now + skew {
        return Err(CrlError::NotYetValid(fmt_time(crl.this_update)));
    }
    if now > crl.next_update + skew {
        return Err(CrlError::Stale(fmt_time(crl.next_update)));
    }
    Ok(())
}

/// Parses (DER or PEM) and verifies in one step.
///
/// # Errors
/// [`CrlError`].
pub fn load(
    bytes: &[u8],
    issuer: &CertInfo<'_>,
    provider: &CryptoProvider,
    now: i64,
    skew: i64,
) -> Result<Crl, CrlError> {
    let der = to_der(bytes)?;
    parse(&der)?.verify(issuer, provider, now, skew)
}

#[cfg(test)]
mod idp_tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
        CrlIssuingDistributionPoint, CrlScope, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        SerialNumber,
    };

    fn crl_with_scope(scope: Option<CrlScope>) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::KeyCertSign];
        let issuer = Issuer::new(ca, &key);
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::hours(1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: Some(CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec!["http://127.0.0.1/ca.crl".into()],
                },
                scope,
            }),
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("crl")
        .der()
        .to_vec()
    }

    #[test]
    fn ca_only_scope_is_refused_user_scope_and_plain_dp_accepted() {
        let ca_only = crl_with_scope(Some(CrlScope::CaCertsOnly));
        let err = parse(&ca_only)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("onlyContainsCACerts"), "{err}");
        assert!(parse(&crl_with_scope(Some(CrlScope::UserCertsOnly))).is_ok());
        assert!(parse(&crl_with_scope(None)).is_ok());
    }
}
