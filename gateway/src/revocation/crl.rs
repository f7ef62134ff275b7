//! CRLs (RFC 5280 §5): parsed in two stages so that nothing is built from unsigned data.
//!
//! [`Crl::parse`] reads only the header (issuer, times, CRL number, extensions, the location
//! of the entry list): bounded work, no allocation per entry. The revoked serials are read
//! only after the signature verified ([`Crl::verified_entries`]): each serial at most 20
//! octets, kept compactly by issuer (indirect CRLs name other issuers in
//! certificateIssuer entries), counted in a first pass and written straight into sets of
//! their final size in a second. Then the DER is released (a 1M-entry CRL is 24 MB of DER
//! against 6 MB of serials): the CRL keeps the keys its signature verified with, and any
//! other key is refused. Which CRL applies to which certificate (distribution points,
//! scope, reasons, the CRL signer's own path) is decided in
//! [`crl_status`](super::crl_status).

use std::ops::Range;
use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;

use rustls::pki_types::SignatureVerificationAlgorithm;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;

use super::der::{bit_string_bytes, tag, time, DerError, Reader};
use super::serials::{SerialSet, SerialSetBuilder, MAX_SERIAL_LEN};
use crate::pki::path::cert::{DpName, ParsedCert};
use crate::pki::path::name::NormName;

/// What is wrong with a CRL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrlError {
    /// Neither DER nor a PEM `X509 CRL` block.
    #[error("CRL is neither DER nor PEM: {0}")]
    Encoding(String),
    /// Structural problem.
    #[error("CRL: {0}")]
    Der(#[from] DerError),
    /// Unsupported feature (delta CRL, unknown critical extension).
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
    /// A revoked serial longer than RFC 5280 allows.
    #[error("CRL entry serial of {0} octets exceeds the 20-octet maximum")]
    SerialTooLong(usize),
    /// An older CRL than the one already held (replay).
    #[error("CRL is older than the one held (thisUpdate {this_update}, cRLNumber {number}): not replacing it")]
    Older {
        /// thisUpdate of the refused CRL.
        this_update: String,
        /// Its CRL number, hex.
        number: String,
    },
}

/// The issuingDistributionPoint of a CRL (RFC 5280 5.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Idp {
    /// distributionPoint.
    pub name: Option<DpName>,
    /// onlyContainsUserCerts.
    pub only_user: bool,
    /// onlyContainsCACerts.
    pub only_ca: bool,
    /// onlyContainsAttributeCerts.
    pub only_attr: bool,
    /// onlySomeReasons (x509-parser bit layout).
    pub reasons: Option<u16>,
    /// indirectCRL.
    pub indirect: bool,
}

/// Revoked serials, by certificate issuer.
#[derive(Debug, Default)]
pub struct Revoked {
    by_issuer: Vec<(NormName, SerialSet)>,
}

impl Revoked {
    /// Whether the certificate of `issuer` with `serial` (INTEGER contents) is listed.
    pub fn contains(&self, issuer: &NormName, serial: &[u8]) -> bool {
        self.by_issuer
            .iter()
            .any(|(n, s)| n == issuer && s.contains(serial))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_issuer.iter().map(|(_, s)| s.len()).sum()
    }

    /// Whether no certificate is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed CRL. The entries are read only once a signature has been verified.
#[derive(Debug)]
pub struct Crl {
    /// The DER until the entries are read (then `None`: released).
    der: Mutex<Option<Bytes>>,
    der_len: usize,
    /// SubjectPublicKeyInfos the signature verified with (a signature verifies with one key,
    /// possibly certified more than once). Checked without the DER.
    signers: Mutex<Vec<Box<[u8]>>>,
    sig_alg_value: Box<[u8]>,
    tbs: Range<usize>,
    sig_alg: Range<usize>,
    signature: Range<usize>,
    entries: Option<Range<usize>>,
    /// SHA-256 of the DER.
    pub digest: [u8; 32],
    /// Issuer Name TLV as encoded.
    pub issuer: Vec<u8>,
    /// Issuer, normalized (RFC 5280 7.1).
    pub issuer_name: NormName,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// cRLNumber contents.
    pub number: Option<Vec<u8>>,
    /// issuingDistributionPoint.
    pub idp: Option<Idp>,
    /// A delta CRL (deltaCRLIndicator): never used as a complete CRL.
    pub delta: bool,
    /// The first unrecognized critical CRL extension: the CRL is not used.
    pub unsupported: Option<String>,
    revoked: OnceLock<Result<Revoked, CrlError>>,
}

const OID_DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 0x1b];
const OID_ISSUING_DP: &[u8] = &[0x55, 0x1d, 0x1c];
const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const OID_FRESHEST_CRL: &[u8] = &[0x55, 0x1d, 0x2e];
const OID_ISSUER_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x12];
const OID_REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
const OID_INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];
const OID_CERTIFICATE_ISSUER: &[u8] = &[0x55, 0x1d, 0x1d];
const OCTET_STRING: u8 = 0x04;
/// reasonCode removeFromCRL: only meaningful in delta CRLs.
const REMOVE_FROM_CRL: u8 = 8;

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

/// As [`to_der`], keeping DER input as it is (no copy of a fetched body).
///
/// # Errors
/// [`CrlError::Encoding`].
pub fn to_der_owned(bytes: Bytes) -> Result<Bytes, CrlError> {
    match to_der(&bytes)? {
        std::borrow::Cow::Borrowed(_) => Ok(bytes),
        std::borrow::Cow::Owned(v) => Ok(Bytes::from(v)),
    }
}

fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// One extension: (OID contents, critical, value contents).
fn extension(ext: &[u8]) -> Result<(&[u8], bool, &[u8]), CrlError> {
    let mut e = Reader::new(ext);
    let oid = e.expect(tag::OID, "extension id")?;
    let critical = matches!(e.optional(tag::BOOLEAN)?, Some(b) if b.value == [0xff]);
    let value = e.expect(OCTET_STRING, "extension value")?;
    Ok((oid.value, critical, value.value))
}

/// Parses an issuingDistributionPoint value by hand (x509-parser drops
/// nameRelativeToCRLIssuer).
fn parse_idp(value: &[u8]) -> Result<Idp, CrlError> {
    use crate::pki::path::cert::{parse_dp_name, reason_flags};
    let bad = || CrlError::Unsupported("issuingDistributionPoint does not parse".into());
    let seq = Reader::new(value).expect(tag::SEQUENCE, "issuingDistributionPoint")?;
    let mut r = Reader::new(seq.value);
    let mut idp = Idp::default();
    while !r.is_empty() {
        let f = r.any()?;
        let flag = f.value == [0xff];
        match f.tag {
            0xa0 => idp.name = Some(parse_dp_name(f.value).ok_or_else(bad)?),
            0x81 => idp.only_user = flag,
            0x82 => idp.only_ca = flag,
            0x83 => idp.reasons = Some(reason_flags(f.value)),
            0x84 => idp.indirect = flag,
            0x85 => idp.only_attr = flag,
            _ => return Err(bad()),
        }
    }
    Ok(idp)
}

impl Crl {
    /// Parses the header of a DER CRL (no entry is read, no signature checked).
    ///
    /// # Errors
    /// [`CrlError`] naming the problem.
    pub fn parse(der: &[u8]) -> Result<Crl, CrlError> {
        Crl::parse_owned(Bytes::copy_from_slice(der))
    }

    /// As [`Crl::parse`], taking the DER without copying it (a fetched body).
    ///
    /// # Errors
    /// [`CrlError`] naming the problem.
    pub fn parse_owned(der: Bytes) -> Result<Crl, CrlError> {
        use sha2::Digest;
        let d: &[u8] = &der;
        let mut top = Reader::new(d);
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
        let issuer_name =
            NormName::from_der(issuer.raw).ok_or(DerError("issuer Name does not parse"))?;
        let this_update = time(&r.any()?)?;
        let next_update = match r.peek_tag() {
            Some(tag::UTC_TIME | tag::GENERALIZED_TIME) => Some(time(&r.any()?)?),
            _ => None,
        };
        let next_update = next_update.ok_or(CrlError::NoNextUpdate)?;
        let entries = match r.peek_tag() {
            Some(tag::SEQUENCE) => Some(range_in(d, r.any()?.value)),
            _ => None,
        };
        let mut crl = Crl {
            tbs: range_in(d, tbs.raw),
            sig_alg: range_in(d, sig_alg.value),
            signature: range_in(d, signature),
            entries,
            digest: sha2::Sha256::digest(d).into(),
            issuer: issuer.raw.to_vec(),
            issuer_name,
            this_update,
            next_update,
            number: None,
            idp: None,
            delta: false,
            unsupported: None,
            revoked: OnceLock::new(),
            der_len: d.len(),
            sig_alg_value: sig_alg.value.into(),
            signers: Mutex::new(Vec::new()),
            der: Mutex::new(None),
        };
        if let Some(exts) = r.optional(tag::CTX0)? {
            let seq = Reader::new(exts.value).expect(tag::SEQUENCE, "crlExtensions")?;
            let mut er = Reader::new(seq.value);
            while !er.is_empty() {
                let ext = er.expect(tag::SEQUENCE, "extension")?;
                let (oid, critical, value) = extension(ext.value)?;
                match oid {
                    OID_ISSUING_DP => crl.idp = Some(parse_idp(value)?),
                    OID_CRL_NUMBER => {
                        let n = Reader::new(value).expect(tag::INTEGER, "cRLNumber")?;
                        crl.number = Some(n.value.to_vec());
                    }
                    OID_DELTA_CRL_INDICATOR => crl.delta = true,
                    OID_AUTHORITY_KEY_ID | OID_FRESHEST_CRL | OID_ISSUER_ALT_NAME => {}
                    other if critical && crl.unsupported.is_none() => {
                        crl.unsupported = Some(oid_string(other));
                    }
                    _ => {}
                }
            }
        }
        if !r.is_empty() {
            return Err(DerError("trailing data in tbsCertList").into());
        }
        crl.der = Mutex::new(Some(der));
        Ok(crl)
    }

    /// The DER encoding, until the entries have been read (`None` after: released).
    pub fn der(&self) -> Option<Bytes> {
        self.der
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Length of the DER encoding.
    pub fn der_len(&self) -> usize {
        self.der_len
    }

    /// Whether the CRL is current at `now` with `skew` seconds of allowance.
    pub fn is_current(&self, now: i64, skew: i64) -> bool {
        self.this_update <= now + skew && now <= self.next_update + skew
    }

    /// Whether this CRL is older than `held` (thisUpdate or cRLNumber goes back).
    pub fn is_older_than(&self, held: &Crl) -> bool {
        if self.this_update < held.this_update {
            return true;
        }
        match (&self.number, &held.number) {
            (Some(a), Some(b)) => int_cmp(a, b) == std::cmp::Ordering::Less,
            _ => false,
        }
    }

    /// The error refusing this CRL as a replacement of a newer one.
    pub fn older_error(&self) -> CrlError {
        CrlError::Older {
            this_update: crate::pki::path::fmt_time(self.this_update),
            number: self
                .number
                .as_deref()
                .map(hex::encode)
                .unwrap_or_else(|| "-".into()),
        }
    }

    /// Verifies the signature with `signer`'s key (memoized). Once the entries have been
    /// read the DER is gone: a key the signature verified with before is still accepted
    /// (when `algs` allows the CRL's algorithm for it), any other key is refused.
    ///
    /// # Errors
    /// [`CrlError::BadSignature`].
    pub fn verify_signature(
        &self,
        signer: &ParsedCert,
        algs: &[&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<(), CrlError> {
        let spki = signer.spki();
        let known = self
            .signers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|k| **k == *spki);
        let Some(der) = self.der() else {
            if !known {
                return Err(CrlError::BadSignature(
                    "not the key the CRL verified with when it was read".into(),
                ));
            }
            let allowed = algs.iter().any(|a| {
                a.public_key_alg_id().as_ref() == signer.spki_alg()
                    && a.signature_alg_id().as_ref() == self.sig_alg_id()
            });
            return if allowed {
                Ok(())
            } else {
                Err(CrlError::BadSignature(
                    "signature algorithm or key type not allowed".into(),
                ))
            };
        };
        crate::pki::path::verify::verify(
            algs,
            signer,
            &self.digest,
            &der[self.sig_alg.clone()],
            &der[self.tbs.clone()],
            &der[self.signature.clone()],
        )
        .map(|()| {
            if !known {
                let mut s = self.signers.lock().unwrap_or_else(PoisonError::into_inner);
                // One key verifies a signature; a few certificates may carry it.
                if s.len() < 8 {
                    s.push(spki.into());
                }
            }
        })
        .map_err(|e| {
            CrlError::BadSignature(match e {
                crate::pki::path::verify::SigError::Invalid => "signature does not verify".into(),
                crate::pki::path::verify::SigError::Unsupported => {
                    "signature algorithm or key type not allowed".into()
                }
            })
        })
    }

    /// Verifies the signature with `signer`'s key, then reads the entries (once).
    ///
    /// # Errors
    /// [`CrlError`]: a bad signature, a malformed entry, a serial over 20 octets, an
    /// unrecognized critical entry extension.
    pub fn verified_entries(
        &self,
        signer: &ParsedCert,
        algs: &[&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<&Revoked, CrlError> {
        self.verify_signature(signer, algs)?;
        let revoked = self.revoked.get_or_init(|| {
            let r = match self.der() {
                Some(der) => self.read_entries(&der),
                // Unreachable: the DER goes only once this is set.
                None => Err(CrlError::Unsupported("CRL entries read twice".into())),
            };
            // The entries are all that is needed from now on.
            *self.der.lock().unwrap_or_else(PoisonError::into_inner) = None;
            r
        });
        revoked.as_ref().map_err(Clone::clone)
    }

    /// The signatureAlgorithm contents (AlgorithmIdentifier without its SEQUENCE header).
    fn sig_alg_id(&self) -> &[u8] {
        &self.sig_alg_value
    }

    /// The entries, if a signature has been verified already.
    pub fn entries_if_verified(&self) -> Option<&Revoked> {
        self.revoked.get().and_then(|r| r.as_ref().ok())
    }

    /// Number of entries read (0 before verification).
    pub fn entry_count(&self) -> usize {
        self.entries_if_verified().map_or(0, Revoked::len)
    }

    /// Reads the entries in two passes over the DER: the first checks every entry and
    /// counts the serials (and the longest) per certificate issuer, the second writes them
    /// into sets allocated at their final size. Nothing is held per entry in between.
    fn read_entries(&self, der: &[u8]) -> Result<Revoked, CrlError> {
        let Some(range) = self.entries.clone() else {
            return Ok(Revoked::default());
        };
        let list = der
            .get(range)
            .ok_or(DerError("revokedCertificates outside the CRL"))?;
        let mut names = vec![self.issuer_name.clone()];
        let mut counts: Vec<(usize, usize)> = vec![(0, 0)];
        walk_entries(list, &mut names, |group, serial| {
            if counts.len() <= group {
                counts.resize(group + 1, (0, 0));
            }
            let c = &mut counts[group];
            c.0 += 1;
            c.1 = c.1.max(serial.len());
        })?;
        let mut sets: Vec<SerialSetBuilder> = counts
            .iter()
            .map(|&(n, longest)| SerialSet::builder(n, longest))
            .collect();
        let mut again = vec![self.issuer_name.clone()];
        walk_entries(list, &mut again, |group, serial| {
            if let Some(b) = sets.get_mut(group) {
                b.push(serial);
            }
        })?;
        Ok(Revoked {
            by_issuer: names
                .into_iter()
                .zip(sets)
                .zip(counts)
                .filter(|(_, (n, _))| *n > 0)
                .map(|((name, b), _)| (name, b.finish()))
                .collect(),
        })
    }
}

/// Walks a revokedCertificates list, checking each entry (serial length, entry extensions)
/// and calling `listed(group, serial)` for each serial that is listed (not removeFromCRL),
/// where `group` indexes `names`: the certificate issuer in effect (the CRL issuer first,
/// then each certificateIssuer met, RFC 5280 5.3.3).
fn walk_entries(
    list: &[u8],
    names: &mut Vec<NormName>,
    mut listed: impl FnMut(usize, &[u8]),
) -> Result<(), CrlError> {
    let mut current = 0usize;
    let mut list = Reader::new(list);
    while !list.is_empty() {
        let entry = list.expect(tag::SEQUENCE, "revokedCertificates entry")?;
        let mut e = Reader::new(entry.value);
        let serial = e.expect(tag::INTEGER, "revoked userCertificate")?;
        if serial.value.len() > MAX_SERIAL_LEN {
            return Err(CrlError::SerialTooLong(serial.value.len()));
        }
        if serial.value.is_empty() {
            return Err(DerError("empty serial number").into());
        }
        e.any()?; // revocationDate
        let mut is_listed = true;
        if let Some(exts) = e.optional(tag::SEQUENCE)? {
            let mut er = Reader::new(exts.value);
            while !er.is_empty() {
                let ext = er.expect(tag::SEQUENCE, "entry extension")?;
                let (oid, critical, value) = extension(ext.value)?;
                match oid {
                    OID_REASON_CODE => {
                        let code = Reader::new(value).expect(0x0a, "reasonCode")?;
                        if code.value == [REMOVE_FROM_CRL] {
                            is_listed = false;
                        }
                    }
                    OID_INVALIDITY_DATE => {}
                    OID_CERTIFICATE_ISSUER => {
                        let name = certificate_issuer(value)?;
                        current = match names.iter().position(|n| *n == name) {
                            Some(i) => i,
                            None => {
                                names.push(name);
                                names.len() - 1
                            }
                        };
                    }
                    other if critical => {
                        return Err(CrlError::Unsupported(format!(
                            "critical CRL entry extension {}",
                            oid_string(other)
                        )))
                    }
                    _ => {}
                }
            }
        }
        if is_listed {
            listed(current, serial.value);
        }
    }
    Ok(())
}

/// The directoryName of a certificateIssuer entry extension (GeneralNames).
fn certificate_issuer(value: &[u8]) -> Result<NormName, CrlError> {
    let seq = Reader::new(value).expect(tag::SEQUENCE, "certificateIssuer")?;
    let mut r = Reader::new(seq.value);
    while !r.is_empty() {
        let g = r.any()?;
        if g.tag == 0xa4 {
            return NormName::from_der(g.value)
                .ok_or_else(|| DerError("certificateIssuer name does not parse").into());
        }
    }
    Err(CrlError::Unsupported(
        "certificateIssuer without a directoryName".into(),
    ))
}

/// Compares two INTEGER contents (two's complement, minimal encoding).
fn int_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let neg = |x: &[u8]| x.first().is_some_and(|&f| f & 0x80 != 0);
    match (neg(a), neg(b)) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (n, _) => {
            let by_len = a.len().cmp(&b.len());
            let ord = if by_len == std::cmp::Ordering::Equal {
                a.cmp(b)
            } else {
                by_len
            };
            if n {
                ord.reverse()
            } else {
                ord
            }
        }
    }
}

fn oid_string(oid: &[u8]) -> String {
    x509_parser::der_parser::oid::Oid::new(std::borrow::Cow::Borrowed(oid)).to_id_string()
}

/// Freshness of a CRL at `now`.
///
/// # Errors
/// [`CrlError::NotYetValid`] or [`CrlError::Stale`].
pub fn check_times(crl: &Crl, now: i64, skew: i64) -> Result<(), CrlError> {
    if crl.this_update > now + skew {
        return Err(CrlError::NotYetValid(crate::pki::path::fmt_time(
            crl.this_update,
        )));
    }
    if now > crl.next_update + skew {
        return Err(CrlError::Stale(crate::pki::path::fmt_time(crl.next_update)));
    }
    Ok(())
}

/// Parses (DER or PEM), verifies with `issuer`'s key (which must be the CRL's issuer and
/// allow cRLSign), reads the entries and checks freshness: a CRL signed directly by the
/// certificate issuer, in one step (benchmarks, simple callers).
///
/// # Errors
/// [`CrlError`].
pub fn load(
    bytes: &[u8],
    issuer: &ParsedCert,
    algs: &[&'static dyn SignatureVerificationAlgorithm],
    now: i64,
    skew: i64,
) -> Result<Crl, CrlError> {
    let der = to_der(bytes)?;
    let crl = Crl::parse(&der)?;
    if crl.issuer_name != issuer.subject {
        return Err(CrlError::WrongIssuer);
    }
    if !issuer.allows(crate::pki::path::cert::ku::CRL_SIGN) {
        return Err(CrlError::NoCrlSign);
    }
    crl.verified_entries(issuer, algs)?;
    check_times(&crl, now, skew)?;
    Ok(crl)
}

#[cfg(test)]
mod tests;
