//! The one CRL HTTP server and OCSP responder of the tests, on loopback, and an `openssl
//! ocsp` responder; certificates come from `certs`. No mocked crypto: everything is signed
//! for real.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use rcgen::{KeyPair, SigningKey};
use rustls::pki_types::CertificateDer;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

// Re-exported for the tests that include this file; not every test binary uses each one.
#[allow(unused_imports)]
pub use crate::certs::{aia_ocsp, Ca, Leaf};

/// What an HTTP handler returns: status, headers, body, delay.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

type Handler = Arc<dyn Fn(&http::request::Parts, &[u8]) -> Reply + Send + Sync>;

/// Serves `handler` on 127.0.0.1 (ephemeral port) on its own thread and runtime.
pub fn serve(handler: Handler) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = handler.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let h = h.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let r = h(&parts, &body);
                                if !r.delay.is_zero() {
                                    tokio::time::sleep(r.delay).await;
                                }
                                let mut resp = Response::builder().status(r.status);
                                for (k, v) in r.headers {
                                    resp = resp.header(k, v);
                                }
                                Ok::<_, std::convert::Infallible>(
                                    resp.body(Full::new(Bytes::from(r.body))).unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
}

/// The one CRL test server: the current CRL bytes can be replaced; counts requests; ETag
/// support; an optional status to answer instead and an optional delay before each answer
/// (so concurrent fetches really overlap).
#[derive(Clone, Default)]
pub struct CrlServer {
    pub body: Arc<Mutex<Vec<u8>>>,
    pub requests: Arc<AtomicUsize>,
    pub not_modified: Arc<AtomicUsize>,
    pub status: Arc<Mutex<Option<StatusCode>>>,
    pub delay: Arc<Mutex<Duration>>,
}

impl CrlServer {
    pub fn start(body: Vec<u8>) -> (CrlServer, String) {
        let s = CrlServer::default();
        *s.body.lock().unwrap() = body;
        let st = s.clone();
        let addr = serve(Arc::new(move |parts, _| {
            st.requests.fetch_add(1, Ordering::SeqCst);
            if let Some(code) = *st.status.lock().unwrap() {
                return Reply {
                    status: code,
                    headers: vec![],
                    body: vec![],
                    delay: Duration::ZERO,
                };
            }
            let body = st.body.lock().unwrap().clone();
            let etag = format!("\"{}\"", hex::encode(&sha2_digest(&body)[..8]));
            let inm = parts
                .headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok());
            if inm == Some(etag.as_str()) {
                st.not_modified.fetch_add(1, Ordering::SeqCst);
                return Reply {
                    status: StatusCode::NOT_MODIFIED,
                    headers: vec![("etag", etag)],
                    body: vec![],
                    delay: Duration::ZERO,
                };
            }
            Reply {
                status: StatusCode::OK,
                headers: vec![
                    ("etag", etag),
                    ("content-type", "application/pkix-crl".into()),
                ],
                body,
                delay: *st.delay.lock().unwrap(),
            }
        }));
        (s, format!("http://{addr}/ca.crl"))
    }

    pub fn set(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// Who signs OCSP responses.
pub enum Signer {
    /// The issuing CA itself.
    Issuer,
    /// A delegated responder certificate (included in the response).
    Delegated(CertificateDer<'static>, KeyPair),
    /// An unrelated key, claiming to be the issuer by name.
    Unrelated(KeyPair),
}

/// Our own OCSP responder, built with x509-ocsp.
pub struct OcspState {
    pub statuses: Mutex<HashMap<u64, &'static str>>,
    pub requests: AtomicUsize,
    pub delay: Mutex<Duration>,
    pub signer: Mutex<Signer>,
    pub ca_subject: Vec<u8>,
    pub ca_key: KeyPair,
}

pub fn start_ocsp(ca: &Ca, signer: Signer) -> (Arc<OcspState>, String) {
    let info = gateway::revocation::cert::CertInfo::parse(&ca.cert).unwrap();
    let state = Arc::new(OcspState {
        statuses: Mutex::new(HashMap::new()),
        requests: AtomicUsize::new(0),
        delay: Mutex::new(Duration::ZERO),
        signer: Mutex::new(signer),
        ca_subject: info.subject.to_vec(),
        ca_key: KeyPair::from_pem(&ca.key.serialize_pem()).unwrap(),
    });
    let st = state.clone();
    let addr = serve(Arc::new(move |parts, body| {
        st.requests.fetch_add(1, Ordering::SeqCst);
        let der = if parts.method == http::Method::GET {
            let path = parts.uri.path().trim_start_matches('/');
            let b64 = path
                .replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=");
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default()
        } else {
            body.to_vec()
        };
        let body = st.answer(&der);
        Reply {
            status: StatusCode::OK,
            headers: vec![("content-type", "application/ocsp-response".into())],
            body,
            delay: *st.delay.lock().unwrap(),
        }
    }));
    (state, format!("http://{addr}"))
}

impl OcspState {
    pub fn set(&self, serial: u64, status: &'static str) {
        self.statuses.lock().unwrap().insert(serial, status);
    }

    fn answer(&self, der: &[u8]) -> Vec<u8> {
        let Ok(req) = OcspRequest::from_der(der) else {
            return OcspResponse::malformed_request().to_der().unwrap();
        };
        let cert_id = req.tbs_request.request_list[0].req_cert.clone();
        let mut serial = [0u8; 8];
        let sb = cert_id.serial_number.as_bytes();
        serial[8 - sb.len()..].copy_from_slice(sb);
        let serial = u64::from_be_bytes(serial);
        let now = SystemTime::now();
        let status = match self.statuses.lock().unwrap().get(&serial).copied() {
            Some("good") => CertStatus::good(),
            Some("revoked") => CertStatus::revoked(RevokedInfo {
                revocation_time: OcspGeneralizedTime::try_from(now - Duration::from_secs(60))
                    .unwrap(),
                revocation_reason: None,
            }),
            _ => CertStatus::unknown(),
        };
        let signer = self.signer.lock().unwrap();
        let (subject, key, certs): (Vec<u8>, &KeyPair, Option<Vec<x509_cert::Certificate>>) =
            match &*signer {
                Signer::Issuer => (self.ca_subject.clone(), &self.ca_key, None),
                Signer::Unrelated(k) => (self.ca_subject.clone(), k, None),
                Signer::Delegated(c, k) => {
                    let info = gateway::revocation::cert::CertInfo::parse(c).unwrap();
                    (
                        info.subject.to_vec(),
                        k,
                        Some(vec![x509_cert::Certificate::from_der(c).unwrap()]),
                    )
                }
            };
        let response_extensions = req.nonce().map(|n| {
            vec![x509_cert::ext::Extension {
                extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(n.0.to_der().unwrap()).unwrap(),
            }]
        });
        let rd = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByName(x509_cert::name::Name::from_der(&subject).unwrap()),
            produced_at: OcspGeneralizedTime::try_from(now).unwrap(),
            responses: vec![SingleResponse {
                cert_id,
                cert_status: status,
                this_update: OcspGeneralizedTime::try_from(now - Duration::from_secs(60)).unwrap(),
                next_update: Some(
                    OcspGeneralizedTime::try_from(now + Duration::from_secs(3600)).unwrap(),
                ),
                single_extensions: None,
            }],
            response_extensions,
        };
        let tbs = rd.to_der().unwrap();
        let sig = key.sign(&tbs).unwrap();
        let basic = BasicOcspResponse {
            tbs_response_data: rd,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&sig).unwrap(),
            certs,
        };
        OcspResponse::successful(basic).unwrap().to_der().unwrap()
    }
}

/// `openssl ocsp` as an independent responder for `ca`, with an index of (serial, revoked).
pub struct OpensslResponder {
    pub child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for OpensslResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_openssl_ocsp(ca: &Ca, entries: &[(u64, bool)]) -> OpensslResponder {
    let dir = tempfile::tempdir().unwrap();
    let mut index = String::new();
    for (serial, revoked) in entries {
        let exp = "351231235959Z";
        if *revoked {
            index.push_str(&format!(
                "R\t{exp}\t250101000000Z\t{:016X}\tunknown\t/CN=client {serial}\n",
                serial
            ));
        } else {
            index.push_str(&format!(
                "V\t{exp}\t\t{:016X}\tunknown\t/CN=client {serial}\n",
                serial
            ));
        }
    }
    std::fs::write(dir.path().join("index.txt"), index).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.path().join("ca.key"), ca.key.serialize_pem()).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &port.to_string(),
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-nmin",
            "10",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    // Wait until it accepts connections.
    let mut up = false;
    for _ in 0..100 {
        // Not a probe connection: openssl's single-threaded responder would wait on it.
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        if log.contains("waiting for OCSP client connections") {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "openssl ocsp did not start on port {port}");
    OpensslResponder {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// A URL on which nothing listens.
pub fn dead_url(path: &str) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}{path}")
}
