//! A test PKI: CAs and certificates with every property the policy cares about.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority that can issue certificates.
pub struct TestCa {
    /// The CA's common name.
    pub name: String,
    /// CA certificate PEM.
    pub cert_pem: String,
    /// CA certificate DER.
    pub cert_der: Vec<u8>,
    /// CA key.
    pub key: KeyPair,
    params: CertificateParams,
}

/// A leaf certificate with its key, written to files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Certificate PEM file.
    pub cert: PathBuf,
    /// Private key PEM file.
    pub key: PathBuf,
    /// Certificate DER.
    pub der: Vec<u8>,
    /// Serial number (hex, lowercase).
    pub serial_hex: String,
}

/// Knobs for a leaf certificate.
#[derive(Clone)]
pub struct LeafSpec {
    /// Subject CN.
    pub cn: String,
    /// Subject OU.
    pub ou: Option<String>,
    /// SAN email.
    pub email: Option<String>,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// EKUs.
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    /// Key algorithm.
    pub alg: &'static SignatureAlgorithm,
    /// Validity relative to now.
    pub not_before: Duration,
    /// Validity relative to now.
    pub not_after: Duration,
    /// CRL distribution point URLs.
    pub crl_urls: Vec<String>,
    /// OCSP responder URL (AIA).
    pub ocsp_url: Option<String>,
    /// Certificate policy OIDs.
    pub policies: Vec<Vec<u64>>,
    /// Serial number.
    pub serial: Option<u64>,
}

impl LeafSpec {
    /// A good client certificate spec.
    pub fn client(cn: &str) -> Self {
        LeafSpec {
            cn: cn.into(),
            ou: None,
            email: None,
            dns: Vec::new(),
            ekus: vec![ExtendedKeyUsagePurpose::ClientAuth],
            alg: &PKCS_ECDSA_P256_SHA256,
            not_before: Duration::hours(-1),
            not_after: Duration::days(30),
            crl_urls: Vec::new(),
            ocsp_url: None,
            policies: Vec::new(),
            serial: None,
        }
    }

    /// A good server certificate spec for localhost.
    pub fn server() -> Self {
        LeafSpec {
            dns: vec!["localhost".into()],
            ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
            ..LeafSpec::client("localhost")
        }
    }
}

/// A certificatePolicies extension with the given policy OIDs (no qualifiers), encoded by
/// the `der` crate (any length).
fn policies_ext(oids: &[Vec<u64>]) -> CustomExtension {
    use der::Encode;
    use x509_cert::ext::pkix::certpolicy::PolicyInformation;
    use x509_cert::ext::pkix::CertificatePolicies;
    let infos = oids
        .iter()
        .map(|o| {
            let dotted = o.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
            PolicyInformation {
                policy_identifier: const_oid::ObjectIdentifier::new(&dotted).expect("policy OID"),
                policy_qualifiers: None,
            }
        })
        .collect();
    let der = CertificatePolicies(infos).to_der().expect("policies DER");
    CustomExtension::from_oid_content(&[2, 5, 29, 32], der)
}

fn aia_ocsp_ext(url: &str) -> CustomExtension {
    crate::certs::aia_ocsp(url)
}

fn pem_write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write test file");
    p
}

impl TestCa {
    /// A new self-signed root CA (ECDSA P-256).
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("keygen");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test PKI");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let cert = params.self_signed(&key).expect("self-sign");
        TestCa {
            name: name.into(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            params,
        }
    }

    /// The rcgen issuer (for CRLs, OCSP, ...).
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Writes the CA certificate to `dir/<file>`.
    pub fn write_cert(&self, dir: &Path, file: &str) -> PathBuf {
        pem_write(dir, file, &self.cert_pem)
    }

    /// Writes the CA key (PEM) to `dir/<file>`.
    pub fn write_key(&self, dir: &Path, file: &str) -> PathBuf {
        pem_write(dir, file, &self.key.serialize_pem())
    }

    /// Issues a leaf to `dir/<stem>.pem` + `dir/<stem>.key`.
    pub fn issue(&self, dir: &Path, stem: &str, spec: &LeafSpec) -> Leaf {
        let key = KeyPair::generate_for(spec.alg).expect("leaf keygen");
        self.issue_with_key(dir, stem, spec, key)
    }

    /// Issues a leaf for a given key pair.
    pub fn issue_with_key(&self, dir: &Path, stem: &str, spec: &LeafSpec, key: KeyPair) -> Leaf {
        let mut p = CertificateParams::new(spec.dns.clone()).expect("params");
        p.distinguished_name
            .push(DnType::OrganizationName, "Test PKI");
        if let Some(ou) = &spec.ou {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, ou.clone());
        }
        p.distinguished_name
            .push(DnType::CommonName, spec.cn.clone());
        if let Some(e) = &spec.email {
            p.subject_alt_names.push(SanType::Rfc822Name(
                e.clone().try_into().expect("ia5 email"),
            ));
        }
        p.extended_key_usages = spec.ekus.clone();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        p.not_before = now + spec.not_before;
        p.not_after = now + spec.not_after;
        let serial = spec.serial.unwrap_or_else(|| {
            let n = now.unix_timestamp_nanos() as u64;
            (n ^ (n >> 17)) & 0x7fff_ffff_ffff_ffff
        });
        p.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        if !spec.crl_urls.is_empty() {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: spec.crl_urls.clone(),
            }];
        }
        if let Some(u) = &spec.ocsp_url {
            p.custom_extensions.push(aia_ocsp_ext(u));
        }
        if !spec.policies.is_empty() {
            p.custom_extensions.push(policies_ext(&spec.policies));
        }
        let cert = p.signed_by(&key, &self.issuer()).expect("sign leaf");
        let der = cert.der().to_vec();
        let serial_hex = {
            let (_, c) = x509_parser::parse_x509_certificate(&der).expect("parse own cert");
            hex_lower(c.raw_serial())
        };
        Leaf {
            cert: pem_write(dir, &format!("{stem}.pem"), &cert.pem()),
            key: pem_write(dir, &format!("{stem}.key"), &key.serialize_pem()),
            der,
            serial_hex,
        }
    }

    /// Issues a leaf with openssl from a key made by openssl, for what rcgen refuses to make:
    /// `rsa_bits` (e.g. 1024) and a digest (e.g. `sha1`).
    pub fn issue_with_openssl(&self, dir: &Path, stem: &str, rsa_bits: u32, digest: &str) -> Leaf {
        let ca_cert = self.write_cert(dir, &format!("{stem}-ca.pem"));
        let ca_key = self.write_key(dir, &format!("{stem}-ca.key"));
        let key = dir.join(format!("{stem}.key"));
        let csr = dir.join(format!("{stem}.csr"));
        let cert = dir.join(format!("{stem}.pem"));
        let ext = pem_write(
            dir,
            &format!("{stem}.ext"),
            "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
        );
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg(rsa_bits.to_string()));
        run(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-subj",
                &format!("/O=Test PKI/CN={stem}"),
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "30", &format!("-{digest}"), "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-set_serial")
            .arg("4242")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        let pem = std::fs::read(&cert).expect("read openssl cert");
        let der = rustls_pem_to_der(&pem);
        Leaf {
            cert,
            key,
            der,
            serial_hex: "1092".into(),
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rustls_pem_to_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem)
        .expect("pem cert")
        .to_vec()
}

/// Lowercase hex.
pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a copy of `leaf` whose signature has one bit flipped.
pub fn tamper_signature(dir: &Path, leaf: &Leaf, stem: &str) -> Leaf {
    let mut der = leaf.der.clone();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let pem = to_pem("CERTIFICATE", &der);
    let cert = pem_write(dir, &format!("{stem}.pem"), &pem);
    let key = dir.join(format!("{stem}.key"));
    std::fs::copy(&leaf.key, &key).expect("copy key");
    Leaf {
        cert,
        key,
        der,
        serial_hex: leaf.serial_hex.clone(),
    }
}

/// PEM-encodes DER.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Extensions longer than 127 (and 255) bytes encode: the `der` crate writes any length.
    #[test]
    fn long_extensions_encode_and_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("Long Extension CA");
        let url = format!("http://ocsp.test/{}", "a".repeat(300));
        let policies: Vec<Vec<u64>> = (0..40).map(|i| vec![1, 3, 6, 1, 4, 1, 99_999, i]).collect();
        let spec = LeafSpec {
            ocsp_url: Some(url.clone()),
            policies: policies.clone(),
            ..LeafSpec::client("long")
        };
        let leaf = ca.issue(dir.path(), "long", &spec);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("the leaf parses");
        let text = format!("{:?}", cert.extensions());
        assert!(text.contains(&url), "the OCSP URL is in the AIA extension");
        let n = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::CertificatePolicies(p) => Some(p.len()),
                _ => None,
            })
            .expect("policies present and parsed");
        assert_eq!(n, policies.len());
    }
}
