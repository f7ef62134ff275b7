//! A certificate parsed once for path validation and CRL processing: the raw pieces for
//! signature checks, normalized names, and the extensions RFC 5280 processing needs.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use x509_parser::extensions::{DistributionPointName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{range_in, Reader};
use super::error::{PathError, Step};
use super::name::{email_addresses, NormName};
use super::names::{GenName, NameConstraints};
use super::policy::{self, CertPolicyExts};
use crate::pki::keypolicy::KeyFacts;

/// A CRL distribution point of a certificate (RFC 5280 4.2.1.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistPoint {
    /// distributionPoint: full names, or a name relative to the CRL issuer.
    pub name: Option<DpName>,
    /// reasons (x509-parser bit layout), `None` = all reasons.
    pub reasons: Option<u16>,
    /// cRLIssuer names.
    pub crl_issuer: Vec<GenName>,
}

/// A distribution point name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpName {
    /// fullName.
    Full(Vec<GenName>),
    /// nameRelativeToCRLIssuer (one RDN).
    Relative(NormName),
}

impl DpName {
    /// Converts x509-parser's form.
    pub fn from_x509(d: &DistributionPointName<'_>) -> DpName {
        match d {
            DistributionPointName::FullName(names) => {
                DpName::Full(names.iter().map(GenName::from_x509).collect())
            }
            DistributionPointName::NameRelativeToCRLIssuer(rdn) => {
                DpName::Relative(NormName::from_rdn(rdn))
            }
        }
    }

    /// The full names, resolving a relative name against `crl_issuer`.
    pub fn resolve(&self, crl_issuer: &NormName) -> Vec<GenName> {
        match self {
            DpName::Full(v) => v.clone(),
            DpName::Relative(rdn) => vec![GenName::Dir(crl_issuer.with_rdn(rdn))],
        }
    }
}

/// The nameRelativeToCRLIssuer of a DistributionPoint or IssuingDistributionPoint, given
/// the SEQUENCE contents (x509-parser drops this form, so it is read here).
pub fn relative_name_in(seq_contents: &[u8]) -> Option<NormName> {
    let mut r = Reader::new(seq_contents);
    let field = r.expect(0xa0)?;
    let choice = Reader::new(field.value).expect(0xa1)?;
    let set = tlv(0x31, choice.value);
    NormName::from_der(&tlv(0x30, &set))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Parses a cRLDistributionPoints extension value.
pub fn parse_cdp(value: &[u8]) -> Option<Vec<DistPoint>> {
    let seq = Reader::new(value).expect(0x30)?;
    let mut r = Reader::new(seq.value);
    let mut out = Vec::new();
    while !r.is_empty() {
        let dp = r.expect(0x30)?;
        let mut f = Reader::new(dp.value);
        let mut point = DistPoint {
            name: None,
            reasons: None,
            crl_issuer: Vec::new(),
        };
        if let Some(n) = f.expect(0xa0) {
            point.name = Some(parse_dp_name(n.value)?);
        }
        if let Some(bits) = f.expect(0x81) {
            point.reasons = Some(reason_flags(bits.value));
        }
        if let Some(iss) = f.expect(0xa2) {
            point.crl_issuer = general_names(iss.value)?;
        }
        if !f.is_empty() {
            return None;
        }
        out.push(point);
    }
    Some(out)
}

/// A DistributionPointName (the CHOICE inside the [0] field).
pub fn parse_dp_name(field: &[u8]) -> Option<DpName> {
    let mut r = Reader::new(field);
    match r.peek_tag()? {
        0xa0 => Some(DpName::Full(general_names(r.next()?.value)?)),
        0xa1 => {
            let choice = r.next()?;
            let set = tlv(0x31, choice.value);
            NormName::from_der(&tlv(0x30, &set)).map(DpName::Relative)
        }
        _ => None,
    }
}

/// ReasonFlags BIT STRING contents to x509-parser's layout (bit n = reason n).
pub fn reason_flags(bits: &[u8]) -> u16 {
    let mut flags = 0u16;
    for (i, byte) in bits.iter().skip(1).take(2).enumerate() {
        for j in 0..8 {
            if byte & (0x80 >> j) != 0 {
                flags |= 1 << (i * 8 + j);
            }
        }
    }
    flags
}

/// GeneralNames contents to comparable names.
pub fn general_names(contents: &[u8]) -> Option<Vec<GenName>> {
    let mut r = Reader::new(contents);
    let mut out = Vec::new();
    while !r.is_empty() {
        let g = r.next()?;
        let text = || std::str::from_utf8(g.value).ok().map(str::to_string);
        out.push(match g.tag {
            0x81 => GenName::Email(text()?),
            0x82 => GenName::Dns(text()?),
            0x86 => GenName::Uri(text()?),
            0x87 => GenName::Ip(g.value.to_vec()),
            0xa4 => GenName::Dir(NormName::from_der(g.value)?),
            t => GenName::Other(t & 0x1f),
        });
    }
    Some(out)
}

/// keyUsage bits in x509-parser's layout.
pub mod ku {
    /// digitalSignature.
    pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
    /// keyCertSign.
    pub const KEY_CERT_SIGN: u16 = 1 << 5;
    /// cRLSign.
    pub const CRL_SIGN: u16 = 1 << 6;
}

/// A certificate, parsed once.
#[derive(Debug)]
pub struct ParsedCert {
    der: Arc<[u8]>,
    tbs: Range<usize>,
    sig_alg: Range<usize>,
    signature: Range<usize>,
    spki: Range<usize>,
    spki_alg: Range<usize>,
    public_key: Range<usize>,
    subject_raw: Range<usize>,
    issuer_raw: Range<usize>,
    serial: Range<usize>,
    /// SHA-256 of the DER: identity in caches and paths.
    pub digest: [u8; 32],
    /// Normalized subject.
    pub subject: NormName,
    /// Normalized issuer.
    pub issuer: NormName,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// X.509 version number as encoded (0 = v1, 2 = v3).
    pub version: u32,
    /// basicConstraints: (cA, pathLenConstraint).
    pub basic: Option<(bool, Option<u32>)>,
    /// keyUsage bits ([`ku`]), `None` when absent.
    pub key_usage: Option<u16>,
    /// nameConstraints.
    pub name_constraints: Option<NameConstraints>,
    /// subjectAltName entries.
    pub san: Vec<GenName>,
    /// emailAddress attributes of the subject.
    pub subject_emails: Vec<String>,
    /// CRL distribution points.
    pub cdp: Vec<DistPoint>,
    /// http:// URLs among the CRL distribution points.
    pub crl_urls: Vec<String>,
    /// authorityKeyIdentifier keyIdentifier.
    pub aki: Option<Vec<u8>>,
    /// subjectKeyIdentifier.
    pub ski: Option<Vec<u8>>,
    /// The first critical extension this validator does not process (its OID).
    pub unknown_critical: Option<String>,
    /// certificatePolicies, policyMappings, policyConstraints, inhibitAnyPolicy.
    pub policy_exts: CertPolicyExts,
    /// What the key policy looks at.
    pub facts: KeyFacts,
    /// Subject and issuer as RFC 4514 strings, made on first use (status reports and log
    /// lines of returning clients reuse them).
    names: OnceLock<(String, String)>,
}

/// Extensions processed by path validation (or harmless when critical).
const KNOWN: &[&str] = &[
    "2.5.29.15",         // keyUsage
    "2.5.29.19",         // basicConstraints
    "2.5.29.17",         // subjectAltName
    "2.5.29.30",         // nameConstraints
    "2.5.29.37",         // extKeyUsage (checked on the leaf by the key policy)
    "2.5.29.32",         // certificatePolicies (pki::path::policy)
    "2.5.29.33",         // policyMappings (pki::path::policy)
    "2.5.29.36",         // policyConstraints (pki::path::policy)
    "2.5.29.54",         // inhibitAnyPolicy (pki::path::policy)
    "2.5.29.35",         // authorityKeyIdentifier
    "2.5.29.14",         // subjectKeyIdentifier
    "2.5.29.31",         // cRLDistributionPoints
    "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
    "2.5.29.18",         // issuerAltName
];

fn malformed(what: &str) -> PathError {
    PathError::new(Step::Malformed, "certificate", what.to_string())
}

impl ParsedCert {
    /// Parses a DER certificate.
    ///
    /// # Errors
    /// [`Step::Malformed`] naming the problem.
    pub fn parse(der: &[u8]) -> Result<ParsedCert, PathError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(der).into();
        Self::parse_with_digest(Arc::from(der), digest)
    }

    pub(crate) fn parse_with_digest(
        der: Arc<[u8]>,
        digest: [u8; 32],
    ) -> Result<ParsedCert, PathError> {
        let d: &[u8] = &der;
        let mut top = Reader::new(d);
        let cert = top
            .expect(0x30)
            .ok_or_else(|| malformed("not a DER SEQUENCE"))?;
        if !top.is_empty() {
            return Err(malformed("trailing data after the certificate"));
        }
        let mut outer = Reader::new(cert.value);
        let tbs = outer
            .expect(0x30)
            .ok_or_else(|| malformed("tbsCertificate"))?;
        let sig_alg = outer
            .expect(0x30)
            .ok_or_else(|| malformed("signatureAlgorithm"))?;
        let sig = outer
            .expect(0x03)
            .ok_or_else(|| malformed("signatureValue"))?;
        if sig.value.first() != Some(&0) {
            return Err(malformed("signature BIT STRING has unused bits"));
        }
        let (_, x) =
            X509Certificate::from_der(d).map_err(|e| malformed(&format!("does not parse: {e}")))?;
        let spki = x.public_key();
        let spki_raw = spki.raw;
        let mut s = Reader::new(spki_raw);
        let spki_seq = s
            .expect(0x30)
            .ok_or_else(|| malformed("subjectPublicKeyInfo"))?;
        let mut s = Reader::new(spki_seq.value);
        let spki_alg = s.expect(0x30).ok_or_else(|| malformed("SPKI algorithm"))?;
        let key_bits = s.expect(0x03).ok_or_else(|| malformed("SPKI key"))?;
        let key = key_bits
            .value
            .get(1..)
            .ok_or_else(|| malformed("SPKI key"))?;

        let mut c = ParsedCert {
            tbs: range_in(d, tbs.raw),
            sig_alg: range_in(d, sig_alg.value),
            signature: range_in(d, &sig.value[1..]),
            spki: range_in(d, spki_raw),
            spki_alg: range_in(d, spki_alg.value),
            public_key: range_in(d, key),
            subject_raw: range_in(d, x.subject().as_raw()),
            issuer_raw: range_in(d, x.issuer().as_raw()),
            serial: range_in(d, x.raw_serial()),
            digest,
            subject: NormName::from_x509(x.subject()),
            issuer: NormName::from_x509(x.issuer()),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            version: x.version().0,
            basic: None,
            key_usage: None,
            name_constraints: None,
            san: Vec::new(),
            subject_emails: email_addresses(x.subject()),
            cdp: Vec::new(),
            crl_urls: Vec::new(),
            aki: None,
            ski: None,
            unknown_critical: None,
            policy_exts: CertPolicyExts::default(),
            facts: KeyFacts::of(&x),
            names: OnceLock::new(),
            der: der.clone(),
        };
        let mut seen: Vec<String> = Vec::new();
        for ext in x.extensions() {
            let oid = ext.oid.to_id_string();
            if seen.contains(&oid) {
                return Err(malformed(&format!("extension {oid} appears twice")));
            }
            // The policy extensions are read by hand (exact RFC 5280 syntax checks, and
            // nothing of x509-parser's looser forms).
            let policy_ext = match oid.as_str() {
                "2.5.29.32" => Some(
                    policy::parse_certificate_policies(ext.value)
                        .map(|v| c.policy_exts.policies = Some(v)),
                ),
                "2.5.29.33" => Some(
                    policy::parse_policy_mappings(ext.value)
                        .map(|v| c.policy_exts.mappings = Some(v)),
                ),
                "2.5.29.36" => Some(
                    policy::parse_policy_constraints(ext.value)
                        .map(|v| c.policy_exts.constraints = Some(v)),
                ),
                "2.5.29.54" => Some(
                    policy::parse_inhibit_any_policy(ext.value)
                        .map(|v| c.policy_exts.inhibit_any_policy = Some(v)),
                ),
                _ => None,
            };
            if let Some(r) = policy_ext {
                r.map_err(|e| malformed(&e))?;
            } else {
                match ext.parsed_extension() {
                    ParsedExtension::BasicConstraints(bc) => {
                        c.basic = Some((bc.ca, bc.path_len_constraint));
                    }
                    ParsedExtension::KeyUsage(k) => c.key_usage = Some(k.flags),
                    ParsedExtension::NameConstraints(nc) => {
                        c.name_constraints = Some(NameConstraints {
                            permitted: nc
                                .permitted_subtrees
                                .as_ref()
                                .map(|v| v.iter().map(|s| GenName::from_x509(&s.base)).collect()),
                            excluded: nc
                                .excluded_subtrees
                                .as_ref()
                                .map(|v| v.iter().map(|s| GenName::from_x509(&s.base)).collect())
                                .unwrap_or_default(),
                        });
                    }
                    ParsedExtension::SubjectAlternativeName(san) => {
                        c.san = san.general_names.iter().map(GenName::from_x509).collect();
                    }
                    ParsedExtension::CRLDistributionPoints(_) => {
                        // Read by hand: x509-parser drops nameRelativeToCRLIssuer (and with it the
                        // rest of the distribution point).
                        c.cdp = parse_cdp(ext.value)
                            .ok_or_else(|| malformed("cRLDistributionPoints does not parse"))?;
                        for dp in &c.cdp {
                            if let Some(DpName::Full(names)) = &dp.name {
                                for n in names {
                                    if let GenName::Uri(u) = n {
                                        if u.starts_with("http://") {
                                            c.crl_urls.push(u.clone());
                                        }
                                    }
                                }
                            }
                        }
                    }
                    ParsedExtension::AuthorityKeyIdentifier(aki) => {
                        c.aki = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                    }
                    ParsedExtension::SubjectKeyIdentifier(k) => c.ski = Some(k.0.to_vec()),
                    ParsedExtension::ParseError { error } => {
                        return Err(malformed(&format!(
                            "extension {oid} does not parse: {error}"
                        )));
                    }
                    _ => {}
                }
            }
            if ext.critical && !KNOWN.contains(&oid.as_str()) && c.unknown_critical.is_none() {
                c.unknown_critical = Some(oid.clone());
            }
            seen.push(oid);
        }
        Ok(c)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER encoding, shared.
    pub fn der_arc(&self) -> &Arc<[u8]> {
        &self.der
    }

    /// The signed part (tbsCertificate TLV).
    pub fn tbs(&self) -> &[u8] {
        &self.der[self.tbs.clone()]
    }

    /// Contents of the signature AlgorithmIdentifier.
    pub fn sig_alg(&self) -> &[u8] {
        &self.der[self.sig_alg.clone()]
    }

    /// The signature bits.
    pub fn signature(&self) -> &[u8] {
        &self.der[self.signature.clone()]
    }

    /// The whole SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        &self.der[self.spki.clone()]
    }

    /// Contents of the SPKI AlgorithmIdentifier.
    pub fn spki_alg(&self) -> &[u8] {
        &self.der[self.spki_alg.clone()]
    }

    /// The public key bits.
    pub fn public_key(&self) -> &[u8] {
        &self.der[self.public_key.clone()]
    }

    /// The subject Name TLV as encoded.
    pub fn subject_raw(&self) -> &[u8] {
        &self.der[self.subject_raw.clone()]
    }

    /// The issuer Name TLV as encoded.
    pub fn issuer_raw(&self) -> &[u8] {
        &self.der[self.issuer_raw.clone()]
    }

    /// The serialNumber INTEGER contents, as encoded (sign included).
    pub fn serial(&self) -> &[u8] {
        &self.der[self.serial.clone()]
    }

    /// Whether subject and issuer are the same name (RFC 5280 6.1: self-issued).
    pub fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Whether basicConstraints says cA.
    pub fn is_ca(&self) -> bool {
        matches!(self.basic, Some((true, _)))
    }

    /// Whether keyUsage is absent or has `bit`.
    pub fn allows(&self, bit: u16) -> bool {
        self.key_usage.is_none_or(|k| k & bit != 0)
    }

    /// The subject as an RFC 4514 string, for messages.
    pub fn subject_string(&self) -> String {
        self.names().0.clone()
    }

    /// The issuer as an RFC 4514 string, for messages.
    pub fn issuer_string(&self) -> String {
        self.names().1.clone()
    }

    fn names(&self) -> &(String, String) {
        self.names.get_or_init(|| {
            (
                name_string(self.subject_raw()),
                name_string(self.issuer_raw()),
            )
        })
    }
}

/// Formats a Name TLV for messages.
pub fn name_string(raw: &[u8]) -> String {
    match x509_parser::x509::X509Name::from_der(raw) {
        Ok((_, n)) => crate::pki::identity::rfc4514(&n),
        Err(_) => format!("<name {}>", hex::encode(raw)),
    }
}
