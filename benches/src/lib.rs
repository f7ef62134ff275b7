//! Benchmark support: a PKI made with rcgen, the gateway's own server configuration built
//! through its config path, a rustls client, and an in-memory handshake driver that times
//! only the server side.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

pub mod floor;

/// Server and client configurations for one benchmark case.
pub struct Case {
    /// The gateway's server configuration (its verifier, policy and provider).
    pub server: Arc<ServerConfig>,
    /// A client configuration with a client certificate.
    pub client: Arc<ClientConfig>,
    /// The CA that issued the client certificate (to make more clients), when known.
    pub ca: Option<Arc<(CertificateParams, KeyPair)>>,
    /// The crypto provider name.
    pub provider: String,
}

impl Case {
    /// A client configuration with a new client certificate of the same CA (a first-seen
    /// client for the server), with or without resumption.
    ///
    /// # Panics
    /// If the case has no CA, or rcgen or rustls refuse the generated material (a bug in the
    /// bench set-up).
    pub fn new_client(&self, resumption: bool) -> Arc<ClientConfig> {
        let (ca_params, ca_key) = &**self.ca.as_ref().expect("case without its CA");
        let issuer = Issuer::new(ca_params.clone(), ca_key);
        let ckey = KeyPair::generate_for(ca_key.algorithm()).expect("client key");
        let mut cp = CertificateParams::default();
        cp.distinguished_name
            .push(DnType::CommonName, "bench client");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let ccert = cp.signed_by(&ckey, &issuer).expect("client cert");
        let mut cfg = (*self.client).clone();
        let cprov = gateway::tls::policy::base_provider(&self.provider).expect("provider");
        let fresh = ClientConfig::builder_with_provider(Arc::new(cprov))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(
                vec![CertificateDer::from(ccert.der().to_vec())],
                PrivateKeyDer::from_pem_slice(ckey.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("client auth");
        cfg.client_auth_cert_resolver = fresh.client_auth_cert_resolver.clone();
        if !resumption {
            cfg.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(cfg)
    }
}

fn write(dir: &Path, name: &str, data: &str) {
    std::fs::write(dir.join(name), data).expect("write bench file");
}

/// The same case with a plain rustls server configuration (webpki client verifier only, same
/// provider, suites and certificates): the baseline that shows the gateway's own overhead.
pub fn baseline(dir: &Path, case: &Case, provider: &str) -> Case {
    let prov = Arc::new(gateway::tls::policy::base_provider(provider).expect("provider"));
    let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).expect("ca");
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("root");
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), prov.clone())
            .build()
            .expect("verifier");
    let chain = vec![CertificateDer::from_pem_file(dir.join("server.pem")).expect("cert")];
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("key");
    let mut server = ServerConfig::builder_with_provider(prov)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    server.ticketer = case.server.ticketer.clone();
    Case {
        server: Arc::new(server),
        client: case.client.clone(),
        ca: case.ca.clone(),
        provider: case.provider.clone(),
    }
}

/// Builds a case: PKI with `alg` for all keys, the gateway's listener config with `provider`
/// (`aws-lc-rs` or `ring`), TLS 1.3 only.
pub fn case(dir: &Path, alg: &'static SignatureAlgorithm, provider: &str) -> Case {
    let ca_key = KeyPair::generate_for(alg).expect("ca key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "Bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca.clone(), &ca_key);

    let skey = KeyPair::generate_for(alg).expect("server key");
    let mut sp = CertificateParams::new(vec!["localhost".into()]).expect("sp");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let scert = sp.signed_by(&skey, &issuer).expect("server cert");

    let ckey = KeyPair::generate_for(alg).expect("client key");
    let mut cp = CertificateParams::default();
    cp.distinguished_name
        .push(DnType::CommonName, "bench client");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ccert = cp.signed_by(&ckey, &issuer).expect("client cert");

    write(dir, "ca.pem", &ca_cert.pem());
    write(dir, "server.pem", &scert.pem());
    write(dir, "server.key", &skey.serialize_pem());
    let toml = format!(
        "[global]\ncrypto_provider = \"{provider}\"\n[[listener]]\nbind = \"127.0.0.1:0\"\nbackend = \"builtin:identity\"\nserver_cert = \"server.pem\"\nserver_key = \"server.key\"\ntrusted_cas = [\"ca.pem\"]\n[listener.tls]\nversions = [\"1.3\"]\n"
    );
    write(dir, "gw.toml", &toml);
    let cfg = gateway::config::Config::load(&dir.join("gw.toml")).expect("bench config");
    let plan = gateway::plan::plan(&cfg).expect("plan");
    let server = plan.listeners[0].server_config.clone();

    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let cprov = gateway::tls::policy::base_provider(provider).expect("provider");
    let client = ClientConfig::builder_with_provider(Arc::new(cprov))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(ccert.der().to_vec())],
            PrivateKeyDer::from_pem_slice(ckey.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("client auth");
    drop(issuer);
    Case {
        server,
        client: Arc::new(client),
        ca: Some(Arc::new((ca, ca_key))),
        provider: provider.to_string(),
    }
}

/// Runs one server-side step. Never inlined: the instruction-count guard (`cargo xtask
/// perf-check`) counts exactly what runs inside this function (`--toggle-collect`).
#[inline(never)]
pub fn server_side<R>(f: impl FnOnce() -> R) -> R {
    f()
}

fn transfer(from: &mut dyn FnMut(&mut Vec<u8>) -> bool, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    from(buf)
}

/// Runs one complete in-memory handshake and returns the time spent in the server.
///
/// # Panics
/// If the handshake fails (a benchmark of a failing handshake would be meaningless).
pub fn handshake(case: &Case) -> Duration {
    let mut client =
        ClientConnection::new(case.client.clone(), "localhost".try_into().expect("name"))
            .expect("client conn");
    let mut server_time = Duration::ZERO;
    let t = Instant::now();
    let mut server =
        server_side(|| ServerConnection::new(case.server.clone()).expect("server conn"));
    server_time += t.elapsed();
    let mut buf = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server.is_handshaking() {
        // client -> server
        let _ = transfer(
            &mut |b| {
                while client.wants_write() {
                    client.write_tls(b).expect("client write");
                }
                !b.is_empty()
            },
            &mut buf,
        );
        if !buf.is_empty() {
            let t = Instant::now();
            server_side(|| {
                let mut rd: &[u8] = &buf;
                while !rd.is_empty() {
                    server.read_tls(&mut rd).expect("server read");
                    server.process_new_packets().expect("server handshake");
                }
            });
            server_time += t.elapsed();
        }
        // server -> client
        buf.clear();
        let t = Instant::now();
        server_side(|| {
            while server.wants_write() {
                server.write_tls(&mut buf).expect("server write");
            }
        });
        server_time += t.elapsed();
        if !buf.is_empty() {
            let mut rd: &[u8] = &buf;
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client handshake");
            }
        }
    }
    // Let the client take its tickets (for resumption benchmarks).
    let _ = client.process_new_packets();
    server_time
}

/// Whether the last handshake of `case` can resume (the client holds a ticket).
pub fn resumed(case: &Case) -> bool {
    let mut client =
        ClientConnection::new(case.client.clone(), "localhost".try_into().expect("name"))
            .expect("client conn");
    let mut server = ServerConnection::new(case.server.clone()).expect("server conn");
    let mut buf = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("w");
        }
        let mut rd: &[u8] = &buf;
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("r");
            server.process_new_packets().expect("p");
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("w");
        }
        let mut rd: &[u8] = &buf;
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("r");
            client.process_new_packets().expect("p");
        }
    }
    server.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}
