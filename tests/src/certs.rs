//! The test PKI's CA and leaves, made with rcgen and signed for real: client leaves with CRL
//! and OCSP pointers, delegated OCSP signers, server and client certificates for TLS peers,
//! and CRLs. Extensions rcgen has no field for are encoded by the `der` crate (any length).
//!
//! Used by `status_servers` and `tls_peers`, and (included by path) by the gateway crate's
//! own integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use der::Encode;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// A CA with its key.
pub struct Ca {
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    /// Its parameters (to sign with).
    pub params: CertificateParams,
    /// Its key.
    pub key: KeyPair,
    /// The certificate as PEM.
    pub pem: String,
}

/// A certificate issued by a [`Ca`], with its key.
pub struct Leaf {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate as PEM.
    pub pem: String,
    /// Its key.
    pub key: KeyPair,
    /// The serial it was issued with (0 when rcgen chose a random one).
    pub serial: u64,
}

impl Leaf {
    /// The certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The private key (PKCS#8).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// Writes `NAME.pem` (cert) and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{name}.pem"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, &self.pem).expect("write cert");
        std::fs::write(&k, self.key.serialize_pem()).expect("write key");
        (c, k)
    }
}

impl Ca {
    /// A self-signed CA with subject `CN=<cn>`.
    pub fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let c = p.self_signed(&key).expect("self-signed");
        Ca {
            cert: c.der().clone(),
            pem: c.pem(),
            params: p,
            key,
        }
    }

    /// The CA certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// Writes the CA certificate to `NAME.pem` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let c = dir.join(format!("{name}.pem"));
        std::fs::write(&c, &self.pem).expect("write ca");
        c
    }

    /// The issuer to sign with.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Signs `p` with a fresh key.
    pub fn issue(&self, p: CertificateParams) -> Leaf {
        let serial = p
            .serial_number
            .as_ref()
            .and_then(|s| <[u8; 8]>::try_from(s.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let key = KeyPair::generate().expect("key");
        let c = p.signed_by(&key, &self.issuer()).expect("sign");
        Leaf {
            cert: c.der().clone(),
            pem: c.pem(),
            key,
            serial,
        }
    }

    /// A client leaf with serial `serial`, CDP `crl_url` and AIA OCSP `ocsp_url`.
    pub fn leaf(&self, serial: u64, crl_url: Option<&str>, ocsp_url: Option<&str>) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, format!("client {serial}"));
        p.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if let Some(u) = crl_url {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![u.to_string()],
            }];
        }
        if let Some(u) = ocsp_url {
            p.custom_extensions.push(aia_ocsp(u));
        }
        self.issue(p)
    }

    /// A delegated OCSP signer, with or without the id-kp-OCSPSigning EKU.
    pub fn responder(&self, with_eku: bool) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, "delegated OCSP responder");
        p.serial_number = Some(SerialNumber::from_slice(&[0x4f, 0x43]));
        p.extended_key_usages = if with_eku {
            vec![ExtendedKeyUsagePurpose::OcspSigning]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let mut leaf = self.issue(p);
        leaf.serial = 0x4f43;
        leaf
    }

    /// A server certificate for `localhost` and 127.0.0.1 (expired in 2021 if `expired`).
    pub fn server(&self, expired: bool) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(p)
    }

    /// A client certificate with the given CN and OU.
    pub fn client(&self, cn: &str, ou: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(p)
    }

    /// A CRL revoking `serials`, valid from `this` to `next` (relative to now, seconds).
    pub fn crl(&self, serials: &[u64], this: i64, next: i64) -> Vec<u8> {
        let revoked: Vec<Vec<u8>> = serials.iter().map(|s| s.to_be_bytes().to_vec()).collect();
        self.crl_of_serials(&revoked, this, next)
    }

    /// A CRL (valid for a week) revoking `leaves`.
    pub fn crl_revoking(&self, leaves: &[&Leaf]) -> Vec<u8> {
        let revoked: Vec<Vec<u8>> = leaves
            .iter()
            .map(|l| {
                let (_, c) = x509_parser::parse_x509_certificate(&l.cert).expect("parse");
                c.raw_serial().to_vec()
            })
            .collect();
        self.crl_of_serials(&revoked, -60, 7 * 86_400)
    }

    fn crl_of_serials(&self, serials: &[Vec<u8>], this: i64, next: i64) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let p = CertificateRevocationListParams {
            this_update: now + time::Duration::seconds(this),
            next_update: now + time::Duration::seconds(next),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - time::Duration::seconds(3600),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer()).expect("crl").der().to_vec()
    }
}

/// An authorityInfoAccess extension naming `url` as the OCSP responder, encoded by the `der`
/// crate (any URL length). The one encoder of the test PKI (`pki` uses it too).
pub fn aia_ocsp(url: &str) -> CustomExtension {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let location = der::asn1::Ia5String::new(url).expect("an ASCII URL");
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(location),
    }]);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia.to_der().expect("AIA DER"))
}
