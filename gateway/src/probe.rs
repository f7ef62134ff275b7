//! `gateway probe https://HOST:PORT`: checks a TLS server against the S.E.E. client rules
//! (14.2.11-14.2.12) and prints what it found: the negotiated protocol, suite and key
//! exchange group, the server's chain with validity, the revocation status of each
//! certificate, the CA names the server asks client certificates from, and a verdict.
//! Any failure makes the verdict FAIL (and the command's exit status non-zero).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::pki::identity::rfc4514;
use crate::pki::keypolicy::KeyPolicy;
use crate::pki::{load_ca_bundle, load_certs, load_key};
use crate::status::{CertStatus, StatusCheck, StatusFactory};
use crate::upstream::SeeServerVerifier;

/// Where the CA bundle comes from when `--ca` is not given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `gateway probe`: check a TLS server against the S.E.E. client policy.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The server, `https://HOST[:PORT]` (port 443 by default).
    pub url: String,
    /// Trusted CA bundle(s) (PEM files or directories); default: the system bundle.
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Client certificate chain to present if the server asks for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Name to verify in the server's certificate (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// Seconds for connect, handshake and status checks.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Do not require a revocation status (a relaxation: printed as a warning).
    #[arg(long)]
    pub no_revocation: bool,
    /// Crypto provider (`aws-lc-rs` or `ring`).
    #[arg(long, default_value = crate::tls::policy::DEFAULT_PROVIDER)]
    pub crypto_provider: String,
}

/// Records the chain the server presented and the verdict of the real verifier.
#[derive(Debug)]
struct Recorder {
    inner: SeeServerVerifier,
    chain: Mutex<Vec<CertificateDer<'static>>>,
    error: Mutex<Option<String>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Ok(mut c) = self.chain.lock() {
            *c = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(e) = &r {
            if let Ok(mut slot) = self.error.lock() {
                *slot = Some(e.to_string());
            }
        }
        r
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
        self.inner.supported_verify_schemes()
    }
}

/// Records the CA names of a CertificateRequest and answers with the configured client
/// certificate, if any.
#[derive(Debug)]
struct HintRecorder {
    hints: Mutex<Option<Vec<Vec<u8>>>>,
    key: Option<Arc<CertifiedKey>>,
}

impl ResolvesClientCert for HintRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if let Ok(mut h) = self.hints.lock() {
            *h = Some(root_hint_subjects.iter().map(|s| s.to_vec()).collect());
        }
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Formats a DER-encoded distinguished name from a CertificateRequest.
fn dn_string(der: &[u8]) -> String {
    if let Ok((_, n)) = X509Name::from_der(der) {
        return rfc4514(&n);
    }
    // Some servers send the Name without its outer SEQUENCE.
    let wrapped = rustls::DistinguishedName::in_sequence(der);
    match X509Name::from_der(wrapped.as_ref()) {
        Ok((_, n)) => rfc4514(&n),
        Err(_) => format!("<unparsable DN {}>", hex::encode(der)),
    }
}

fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL; use https://HOST[:PORT]"))?;
    if uri.scheme_str() != Some("https") {
        anyhow::bail!("{url:?}: only https:// URLs can be probed");
    }
    let host = uri
        .host()
        .with_context(|| format!("{url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// Runs the probe on a new single-threaded runtime (for `main`). `Ok(true)` means PASS.
///
/// # Errors
/// Bad arguments (URL, unreadable CA/cert/key files). Server failures are not errors: they
/// are printed and give `Ok(false)`.
pub fn run(args: &ProbeArgs) -> anyhow::Result<bool> {
    run_blocking(args, None)
}

/// As [`run`], with `status` making the revocation checker for the probe's trust anchors.
///
/// # Errors
/// As [`run`].
pub fn run_blocking(args: &ProbeArgs, status: Option<&StatusFactory>) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_with(args, status, &mut std::io::stdout()))
}

/// Runs the probe, writing the report to `out`; `status` makes the revocation checker from
/// the trusted CAs (None: not available, which fails the verdict unless `--no-revocation`).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    args: &ProbeArgs,
    status: Option<&StatusFactory>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (host, port) = parse_url(&args.url)?;
    let name_str = args.servername.clone().unwrap_or_else(|| host.clone());
    let server_name = ServerName::try_from(name_str.clone())
        .with_context(|| format!("{name_str:?} is not a DNS name or IP address"))?;
    let ca_paths = if args.ca.is_empty() {
        vec![PathBuf::from(SYSTEM_CA_BUNDLE)]
    } else {
        args.ca.clone()
    };
    let anchors = load_ca_bundle(&ca_paths).context("loading trusted CAs")?;
    let status: Result<Option<Arc<dyn StatusCheck>>, String> =
        status.map(|make| make(&anchors)).transpose();
    let provider = crate::tls::build_provider(&args.crypto_provider, &[], &[])
        .context("building the crypto provider")?;
    let verifier = Recorder {
        inner: SeeServerVerifier::new(
            &anchors,
            provider.clone(),
            KeyPolicy { min_rsa_bits: 2048 },
        )?,
        chain: Mutex::new(Vec::new()),
        error: Mutex::new(None),
    };
    let verifier = Arc::new(verifier);
    let key = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let chain = load_certs(c)?;
            let key = provider
                .key_provider
                .load_private_key(load_key(k)?)
                .with_context(|| format!("{}: unsupported private key", k.display()))?;
            Some(Arc::new(CertifiedKey::new(chain, key)))
        }
        _ => None,
    };
    let hints = Arc::new(HintRecorder {
        hints: Mutex::new(None),
        key: key.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(hints.clone());

    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let deadline = Duration::from_secs(args.timeout.max(1));
    writeln!(
        out,
        "probing {host}:{port} as {name_str} (S.E.E. client policy)"
    )?;
    if args.ca.is_empty() {
        writeln!(
            out,
            "trusted CAs: system bundle {SYSTEM_CA_BUNDLE} ({} certificates)",
            anchors.len()
        )?;
    } else {
        writeln!(
            out,
            "trusted CAs: {} certificate(s) from --ca",
            anchors.len()
        )?;
    }

    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let handshake = tokio::time::timeout(deadline, async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no TLS connection within {}s", deadline.as_secs())));

    let mut tls = None;
    match handshake {
        Ok(s) => {
            let c = s.get_ref().1;
            let version = match c.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            };
            let suite = c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_else(|| "?".into());
            let group = c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_else(|| "?".into());
            writeln!(out, "protocol:     {version}")?;
            writeln!(out, "cipher suite: {suite}")?;
            writeln!(out, "key exchange: {group}")?;
            tls = Some(s);
        }
        Err(e) => {
            writeln!(out, "connection:   FAILED: {e}")?;
            problems.push(e);
        }
    }

    // The chain as presented, whatever the verifier said.
    let chain = verifier.chain.lock().map(|c| c.clone()).unwrap_or_default();
    writeln!(out, "server chain ({} certificate(s)):", chain.len())?;
    let now = x509_parser::time::ASN1Time::now();
    for (i, der) in chain.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => {
                let v = cert.validity();
                let state = if now < v.not_before {
                    "NOT YET VALID"
                } else if now > v.not_after {
                    "EXPIRED"
                } else {
                    "valid"
                };
                writeln!(out, "  [{i}] subject: {}", rfc4514(cert.subject()))?;
                writeln!(out, "      issuer:  {}", rfc4514(cert.issuer()))?;
                writeln!(
                    out,
                    "      validity: {} .. {} ({state})",
                    v.not_before, v.not_after
                )?;
            }
            Err(e) => writeln!(out, "  [{i}] <does not parse: {e}>")?,
        }
    }
    let verify_error = verifier.error.lock().ok().and_then(|e| e.clone());
    match (&verify_error, chain.is_empty()) {
        (Some(e), _) => {
            writeln!(out, "certificate:  REJECTED: {e}")?;
            if !problems.iter().any(|p| p.contains(e.as_str())) {
                problems.push(format!("server certificate rejected: {e}"));
            }
        }
        (None, false) => writeln!(
            out,
            "certificate:  trusted, valid, name matches, key policy ok"
        )?,
        (None, true) => {}
    }

    // Revocation, only for a chain that verified.
    if tls.is_some() && !chain.is_empty() {
        match (status, args.no_revocation) {
            (_, true) => {
                writeln!(out, "revocation:   NOT CHECKED (--no-revocation)")?;
                warnings.push("revocation status not checked (--no-revocation)".into());
            }
            (Err(e), false) => {
                writeln!(
                    out,
                    "revocation:   UNKNOWN: the status checker cannot start: {e}"
                )?;
                problems.push(format!("revocation checker unavailable: {e}"));
            }
            (Ok(Some(s)), false) => {
                let reports = tokio::time::timeout(deadline, s.check_chain(&chain))
                    .await
                    .unwrap_or_default();
                for (i, _) in chain.iter().enumerate() {
                    match reports.certs.get(i) {
                        Some(r) => {
                            let (st, via) = match &r.status {
                                CertStatus::Good { source } => (
                                    "good".to_string(),
                                    source
                                        .map_or_else(|| "no source".to_string(), |s| s.to_string()),
                                ),
                                CertStatus::Revoked { source, .. } => {
                                    problems.push(format!(
                                        "certificate [{i}] {} is REVOKED ({})",
                                        r.subject, r.status
                                    ));
                                    (format!("REVOKED ({})", r.status), source.to_string())
                                }
                                CertStatus::Unavailable { reason } => {
                                    problems.push(format!(
                                        "certificate [{i}] {}: no current status ({reason})",
                                        r.subject
                                    ));
                                    (format!("UNKNOWN ({reason})"), "no source".to_string())
                                }
                            };
                            writeln!(out, "revocation [{i}]: {st} via {via} ({})", r.detail)?;
                        }
                        None => {
                            writeln!(
                                out,
                                "revocation [{i}]: UNKNOWN (no answer within {}s)",
                                deadline.as_secs()
                            )?;
                            problems.push(format!("certificate [{i}]: no revocation status"));
                        }
                    }
                }
            }
            (Ok(None), false) => {
                writeln!(
                    out,
                    "revocation:   UNKNOWN: no revocation checker available"
                )?;
                problems.push(
                    "revocation status unavailable (use --no-revocation to skip, a relaxation)"
                        .into(),
                );
            }
        }
    }

    // CertificateRequest: recorded during the handshake (TLS 1.3: seen before our Finished).
    match hints.hints.lock().ok().and_then(|h| h.clone()) {
        None => writeln!(
            out,
            "client auth:  server did not ask for a client certificate"
        )?,
        Some(names) if names.is_empty() => {
            writeln!(out, "client auth:  requested, no CA names listed")?
        }
        Some(names) => {
            writeln!(out, "client auth:  requested; acceptable CAs:")?;
            for n in names {
                writeln!(out, "  - {}", dn_string(&n))?;
            }
        }
    }

    // Does the server accept us? (It may refuse the client certificate, or its absence,
    // only after our side of the handshake finished.)
    if let Some(mut s) = tls {
        let req = format!("GET / HTTP/1.1\r\nHost: {name_str}\r\nConnection: close\r\n\r\n");
        let answer = tokio::time::timeout(Duration::from_secs(3), async {
            s.write_all(req.as_bytes()).await?;
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf).await?;
            Ok::<_, std::io::Error>(
                String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .await;
        match answer {
            Ok(Ok(line)) if !line.is_empty() => writeln!(out, "server reply: {line}")?,
            Ok(Ok(_)) => writeln!(out, "server reply: connection closed without data")?,
            Ok(Err(e)) => {
                let msg = format!("server ended the session: {e}");
                writeln!(out, "server reply: {msg}")?;
                if key.is_some() {
                    problems.push(format!("{msg} (our client certificate was refused?)"));
                } else {
                    warnings.push(format!(
                        "{msg} (it may require a client certificate: try --cert/--key)"
                    ));
                }
            }
            Err(_) => writeln!(out, "server reply: none within 3s (not HTTP?)")?,
        }
    }

    for w in &warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    if problems.is_empty() {
        writeln!(out, "verdict: PASS")?;
        Ok(true)
    } else {
        for p in &problems {
            writeln!(out, "FAIL: {p}")?;
        }
        writeln!(
            out,
            "verdict: FAIL ({} problem(s)); a S.E.E. client must drop this connection",
            problems.len()
        )?;
        Ok(false)
    }
}
