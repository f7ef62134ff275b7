//! The authenticated identity taken from a verified client certificate, and the HTTP
//! headers that carry it to the backend.

use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A client certificate verified under the listener's policy.
    Certificate,
    /// HTTP Basic credentials checked against the password file (IN CONFIDENCE only).
    Password,
}

impl AuthMethod {
    /// The value sent in the [`headers::AUTH_METHOD`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Certificate => "certificate",
            AuthMethod::Password => "password",
        }
    }
}

/// Identity of a client authenticated by certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject distinguished name as an RFC 4514 string.
    pub subject: String,
    /// Issuer distinguished name as an RFC 4514 string.
    pub issuer: String,
    /// Serial number, lowercase hex without separators.
    pub serial_hex: String,
    /// SHA-256 fingerprint of the leaf certificate's DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject alternative names, each as `TYPE:value` (`DNS:`, `email:`, `URI:`, `IP:`).
    pub sans: Vec<String>,
    /// Subject attributes by short name (`CN`, `OU`, `O`, `C`, ...), in certificate order.
    pub subject_attrs: Vec<(String, String)>,
    /// Certificate policy OIDs (dotted form).
    pub policies: Vec<String>,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

/// Identities kept by [`CertIdentity::from_der_cached`] before its cache is cleared.
pub const IDENTITY_CACHE_MAX: usize = 8_192;

/// Why a certificate's identity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The DER did not parse as an X.509 certificate.
    #[error("client certificate does not parse as X.509: {0}")]
    Parse(String),
}

impl CertIdentity {
    /// Reads the identity from a leaf certificate's DER.
    ///
    /// # Errors
    /// [`IdentityError::Parse`] if the DER is not an X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        Ok(Self::from_parsed(&cert, der))
    }

    /// As [`CertIdentity::from_der`], shared: a returning client's identity is read once
    /// (process-wide cache keyed by the certificate's SHA-256, at most
    /// [`IDENTITY_CACHE_MAX`] entries, cleared when full).
    ///
    /// # Errors
    /// [`IdentityError::Parse`] if the DER is not an X.509 certificate.
    pub fn from_der_cached(der: &[u8]) -> Result<Arc<Self>, IdentityError> {
        static CACHE: OnceLock<papaya::HashMap<[u8; 32], Arc<CertIdentity>>> = OnceLock::new();
        let cache = CACHE.get_or_init(papaya::HashMap::new);
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(id) = cache.pin().get(&digest) {
            return Ok(id.clone());
        }
        let id = Arc::new(Self::from_der(der)?);
        let g = cache.pin();
        if g.len() >= IDENTITY_CACHE_MAX {
            g.clear();
        }
        g.insert(digest, id.clone());
        Ok(id)
    }

    /// Reads the identity from an already parsed certificate and its DER.
    pub fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Self {
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                    GeneralName::RFC822Name(e) => sans.push(format!("email:{e}")),
                    GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                    GeneralName::IPAddress(ip) => {
                        if let Some(ip) = ip_from_bytes(ip) {
                            sans.push(format!("IP:{ip}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let subject_attrs = cert
            .subject()
            .iter_attributes()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(
                    a.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(str::to_string)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
                let val = a.as_str().map(str::to_string).unwrap_or_default();
                (key, val)
            })
            .collect();
        let policies = cert
            .extensions()
            .iter()
            .filter_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::CertificatePolicies(p) => Some(p),
                _ => None,
            })
            .flat_map(|p| p.iter().map(|p| p.policy_id.to_id_string()))
            .collect();
        CertIdentity {
            subject: rfc4514(cert.subject()),
            issuer: rfc4514(cert.issuer()),
            serial_hex: hex::encode(cert.raw_serial()),
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
            sans,
            subject_attrs,
            policies,
            not_before: rfc3339(cert.validity().not_before),
            not_after: rfc3339(cert.validity().not_after),
        }
    }

    /// The first value of a subject attribute (`CN`, `OU`, ...).
    pub fn subject_attr(&self, short_name: &str) -> Option<&str> {
        self.subject_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(short_name))
            .map(|(_, v)| v.as_str())
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn rfc3339(t: x509_parser::time::ASN1Time) -> String {
    t.to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Formats a distinguished name as RFC 4514 (most specific RDN first, special characters
/// escaped).
pub fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(
                    a.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(str::to_string)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
                let val = match a.as_str() {
                    Ok(s) => escape_rfc4514(s),
                    Err(_) => format!("#{}", hex::encode(a.attr_value().data)),
                };
                format!("{key}={val}")
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

fn escape_rfc4514(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let n = s.chars().count();
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            // Control characters cannot travel in an HTTP header: hex-escape them.
            for b in c.to_string().as_bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Names of the identity headers sent to the backend. Any incoming header with one of
/// these names is removed before the request is forwarded.
pub mod headers {
    /// `certificate` or `password`.
    pub const AUTH_METHOD: &str = "x-client-auth-method";
    /// Subject DN, RFC 4514.
    pub const SUBJECT: &str = "x-client-cert-subject";
    /// Issuer DN, RFC 4514.
    pub const ISSUER: &str = "x-client-cert-issuer";
    /// Serial number, lowercase hex.
    pub const SERIAL: &str = "x-client-cert-serial";
    /// SHA-256 fingerprint of the leaf DER, lowercase hex.
    pub const FINGERPRINT: &str = "x-client-cert-sha256";
    /// Subject alternative names, comma separated `TYPE:value`.
    pub const SANS: &str = "x-client-cert-san";
    /// notBefore, RFC 3339.
    pub const NOT_BEFORE: &str = "x-client-cert-not-before";
    /// notAfter, RFC 3339.
    pub const NOT_AFTER: &str = "x-client-cert-not-after";
    /// User name (password authentication).
    pub const USER: &str = "x-client-user";
    /// Every identity header, for stripping.
    pub const ALL: &[&str] = &[
        AUTH_METHOD,
        SUBJECT,
        ISSUER,
        SERIAL,
        FINGERPRINT,
        SANS,
        NOT_BEFORE,
        NOT_AFTER,
        USER,
    ];
    /// Prefix reserved for identity headers: every incoming `x-client-*` header is removed.
    pub const RESERVED_PREFIX: &str = "x-client-";
}
