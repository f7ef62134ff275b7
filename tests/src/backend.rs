//! A plain HTTP backend on loopback that answers with the request headers it received (JSON)
//! and counts requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A running echo backend.
pub struct EchoBackend {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests seen.
    pub hits: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl EchoBackend {
    /// Starts the backend on 127.0.0.1 (its own runtime thread).
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start() -> EchoBackend {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let h = hits.clone();
        rt.spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            h.fetch_add(1, Ordering::SeqCst);
                            async move {
                                use http_body_util::BodyExt;
                                let mut m = serde_json::Map::new();
                                for (k, v) in req.headers() {
                                    m.insert(
                                        k.as_str().to_string(),
                                        serde_json::Value::String(
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        ),
                                    );
                                }
                                m.insert("_path".into(), req.uri().to_string().into());
                                // /slow: answer after a second (graceful-shutdown tests).
                                if req.uri().path().starts_with("/slow") {
                                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                                }
                                let len = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().len())
                                    .unwrap_or(0);
                                m.insert("_body_len".into(), len.into());
                                let body = serde_json::to_vec(&m).unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                    Bytes::from(body),
                                )))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        EchoBackend {
            addr,
            hits,
            _rt: rt,
        }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
