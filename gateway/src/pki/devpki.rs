//! Development PKI for the embedded default: a CA, a server certificate for localhost, one
//! client certificate (PEM and PKCS#12) and a CRL, written to a state directory. Reused across
//! restarts while the files are there; the CRL is re-signed at every start so it stays current.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// Password of the development PKCS#12 file.
pub const P12_PASSWORD: &str = "gateway";

/// Errors creating the development PKI.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate development certificate: {0}")]
    Generate(String),
}

/// Paths of the development PKI files.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The directory.
    pub dir: PathBuf,
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// CA key (PEM).
    pub ca_key: PathBuf,
    /// Server certificate chain (PEM).
    pub server_cert: PathBuf,
    /// Server key (PEM).
    pub server_key: PathBuf,
    /// Client certificate (PEM).
    pub client_cert: PathBuf,
    /// Client key (PEM).
    pub client_key: PathBuf,
    /// Client certificate + key as PKCS#12 (password [`P12_PASSWORD`]).
    pub client_p12: PathBuf,
    /// The CA's CRL (PEM), re-signed at every start.
    pub crl: PathBuf,
}

fn gen_err(e: impl std::fmt::Display) -> DevPkiError {
    DevPkiError::Generate(e.to_string())
}

fn write(path: &Path, data: &[u8], private: bool) -> Result<(), DevPkiError> {
    let io = |source| DevPkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !private {
        return std::fs::write(path, data).map_err(io);
    }
    // A private key is never readable by others, not even for an instant: it is written to
    // a new file created with mode 0600 (O_CREAT|O_EXCL, whatever the umask), then renamed
    // over the old one (which may have had looser permissions).
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

impl DevPki {
    /// The file layout in `dir`.
    pub fn at(dir: &Path) -> Self {
        DevPki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            client_p12: dir.join("client.p12"),
            crl: dir.join("ca.crl.pem"),
        }
    }

    fn complete(&self) -> bool {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
            &self.client_p12,
        ]
        .iter()
        .all(|p| p.is_file())
    }

    /// Creates the PKI in `dir` unless a complete one is there, and (re-)signs the CRL.
    ///
    /// # Errors
    /// [`DevPkiError`] if files cannot be written or certificates generated.
    pub fn ensure(dir: &Path) -> Result<Self, DevPkiError> {
        use std::os::unix::fs::DirBuilderExt;
        let pki = DevPki::at(dir);
        // The state directory holds private keys: owner only (mode 0700 at creation).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| DevPkiError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        if !pki.complete() {
            pki.generate()?;
        }
        pki.sign_crl()?;
        Ok(pki)
    }

    fn ca_params() -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "S.E.E. Gateway Dev CA");
        p.distinguished_name
            .push(DnType::OrganizationName, "S.E.E. Gateway (development)");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.key_identifier_method = KeyIdMethod::Sha256;
        p.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        p
    }

    fn generate(&self) -> Result<(), DevPkiError> {
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let ca_params = Self::ca_params();
        let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).map_err(gen_err)?;
        sp.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().map_err(gen_err)?));
        sp.subject_alt_names
            .push(SanType::IpAddress("::1".parse().map_err(gen_err)?));
        sp.distinguished_name.push(DnType::CommonName, "localhost");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        sp.not_before = now - Duration::hours(1);
        sp.not_after = now + Duration::days(825);
        sp.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let server_cert = sp.signed_by(&server_key, &issuer).map_err(gen_err)?;

        let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut cp = CertificateParams::default();
        cp.distinguished_name.push(DnType::CountryName, "NZ");
        cp.distinguished_name
            .push(DnType::OrganizationName, "S.E.E. Gateway (development)");
        cp.distinguished_name
            .push(DnType::OrganizationalUnitName, "Development");
        cp.distinguished_name.push(DnType::CommonName, "Dev User");
        cp.subject_alt_names = vec![SanType::Rfc822Name(
            "dev.user@example.invalid".try_into().map_err(gen_err)?,
        )];
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        cp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        cp.not_before = now - Duration::hours(1);
        cp.not_after = now + Duration::days(365);
        cp.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let client_cert = cp.signed_by(&client_key, &issuer).map_err(gen_err)?;

        let p12 = {
            use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
            let mut ks = KeyStore::new();
            let chain = vec![
                Certificate::from_der(client_cert.der()).map_err(gen_err)?,
                Certificate::from_der(ca_cert.der()).map_err(gen_err)?,
            ];
            let id = random_serial();
            ks.add_entry(
                "dev-user",
                KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
                    client_key.serialize_der(),
                    id,
                    chain,
                )),
            );
            ks.writer(P12_PASSWORD).write().map_err(gen_err)?
        };

        write(&self.ca_cert, ca_cert.pem().as_bytes(), false)?;
        write(&self.ca_key, ca_key.serialize_pem().as_bytes(), true)?;
        write(&self.server_cert, server_cert.pem().as_bytes(), false)?;
        write(
            &self.server_key,
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        write(&self.client_cert, client_cert.pem().as_bytes(), false)?;
        write(
            &self.client_key,
            client_key.serialize_pem().as_bytes(),
            true,
        )?;
        write(&self.client_p12, &p12, true)?;
        Ok(())
    }

    /// Signs a fresh, empty CRL for the dev CA (valid 30 days).
    fn sign_crl(&self) -> Result<(), DevPkiError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| DevPkiError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(&self.ca_key)?).map_err(gen_err)?;
        let issuer = Issuer::new(Self::ca_params(), &key);
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .map_err(gen_err)?;
        write(&self.crl, crl.pem().map_err(gen_err)?.as_bytes(), false)
    }

    /// A configuration for the embedded default serving on `bind` with the built-in identity
    /// backend.
    pub fn default_config_toml(&self, bind: &str) -> String {
        format!(
            r#"# Embedded default written by `gateway serve` (development only).
[global]
metrics_interval_secs = 60

[[listener]]
name = "dev"
bind = "{bind}"
classification = "sensitive"
backend = "builtin:identity"
server_cert = "{}"
server_key = "{}"
trusted_cas = ["{}"]

# Fail closed on the development CA's own CRL (re-signed at every start).
[listener.revocation]
order = "crl-only"
crl_files = ["{}"]
"#,
            self.server_cert.display(),
            self.server_key.display(),
            self.ca_cert.display(),
            self.crl.display(),
        )
    }
}

fn random_serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    // The provider's CSPRNG (the OS generator behind aws-lc-rs / ring).
    #[cfg(feature = "aws-lc-rs")]
    let provider = Some(rustls::crypto::aws_lc_rs::default_provider());
    #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
    let provider = Some(rustls::crypto::ring::default_provider());
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    let provider: Option<rustls::crypto::CryptoProvider> = None;
    if let Some(p) = provider {
        if p.secure_random.fill(&mut s).is_err() {
            tracing::warn!("secure random unavailable; serial from the clock");
            s[..16].copy_from_slice(
                &OffsetDateTime::now_utc()
                    .unix_timestamp_nanos()
                    .to_be_bytes(),
            );
        }
    }
    s[0] &= 0x7f; // positive
    s[0] |= 0x01; // non-zero, full length
    s
}
