//! Distinguished names compared as RFC 5280 section 7.1 asks: attribute values of the
//! directory string types are compared after case folding, leading/trailing whitespace
//! removal and collapsing internal whitespace, whatever the string type (PrintableString
//! and UTF8String compare equal); other values compare by their encoding. RDNs are sets.

use x509_parser::x509::{RelativeDistinguishedName, X509Name};

/// A name reduced to its comparable form: one canonical byte string per RDN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NormName {
    rdns: Vec<Vec<u8>>,
}

const OID_EMAIL: &str = "1.2.840.113549.1.9.1";

impl NormName {
    /// Normalizes a parsed name.
    pub fn from_x509(name: &X509Name<'_>) -> NormName {
        NormName {
            rdns: name.iter().map(rdn_canon).collect(),
        }
    }

    /// Parses and normalizes a DER Name.
    pub fn from_der(der: &[u8]) -> Option<NormName> {
        use x509_parser::prelude::FromDer;
        X509Name::from_der(der)
            .ok()
            .map(|(_, n)| NormName::from_x509(&n))
    }

    /// Whether the name has no RDN.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// Whether `base` is a prefix of this name (directoryName name constraints).
    pub fn within(&self, base: &NormName) -> bool {
        self.rdns.len() >= base.rdns.len() && self.rdns[..base.rdns.len()] == base.rdns[..]
    }

    /// This name with one more RDN appended (nameRelativeToCRLIssuer).
    pub fn with_rdn(&self, rdn: &NormName) -> NormName {
        let mut rdns = self.rdns.clone();
        rdns.extend(rdn.rdns.iter().cloned());
        NormName { rdns }
    }

    /// A single-RDN name from a RelativeDistinguishedName.
    pub fn from_rdn(rdn: &RelativeDistinguishedName<'_>) -> NormName {
        NormName {
            rdns: vec![rdn_canon(rdn)],
        }
    }
}

/// One RDN as a canonical byte string: its AVAs (type, folded value) sorted, so the SET
/// order does not matter.
fn rdn_canon(rdn: &RelativeDistinguishedName<'_>) -> Vec<u8> {
    let mut avas: Vec<Vec<u8>> = rdn
        .iter()
        .map(|ava| {
            let oid = ava.attr_type().as_bytes();
            let v = ava.attr_value();
            let mut out = Vec::with_capacity(oid.len() + v.data.len() + 4);
            out.push(u8::try_from(oid.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(oid);
            match directory_string(v.header.tag().0, v.data) {
                Some(s) => {
                    out.push(b's');
                    out.extend_from_slice(fold(&s).as_bytes());
                }
                None => {
                    out.push(b'r');
                    out.push(u8::try_from(v.header.tag().0).unwrap_or(0xff));
                    out.extend_from_slice(v.data);
                }
            }
            out
        })
        .collect();
    avas.sort();
    let mut canon = Vec::new();
    for a in avas {
        canon.extend_from_slice(&u32::try_from(a.len()).unwrap_or(0).to_be_bytes());
        canon.extend_from_slice(&a);
    }
    canon
}

/// The e-mail addresses in a name's emailAddress attributes (for rfc822Name constraints).
pub fn email_addresses(name: &X509Name<'_>) -> Vec<String> {
    name.iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == OID_EMAIL)
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect()
}

/// Decodes the directory string types; `None` for anything else.
fn directory_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, TeletexString (read as Latin-1), IA5String
        12 | 19 | 22 => std::str::from_utf8(data).ok().map(str::to_string),
        20 => Some(data.iter().map(|&b| b as char).collect()),
        // BMPString: UCS-2 big-endian
        30 => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4 big-endian
        28 => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Case folding and whitespace handling of RFC 5280 7.1 (RFC 4518 insignificant space).
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_collapses_whitespace() {
        assert_eq!(fold("  Good   CA "), "good ca");
        assert_eq!(fold("GOOD\tca"), "good ca");
        assert_eq!(directory_string(30, &[0, b'A']).as_deref(), Some("A"));
        assert_eq!(directory_string(2, &[1]), None);
    }
}
