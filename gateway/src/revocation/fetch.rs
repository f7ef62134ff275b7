//! HTTP fetching of CRLs and OCSP responses: http:// only, a deadline over the whole
//! exchange, a size cap on the body, conditional GET.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Not an http:// URL.
    #[error("unsupported URL {0:?} (only http:// is fetched)")]
    Url(String),
    /// Connection or protocol failure.
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The deadline passed.
    #[error("{url}: no complete answer within {ms} ms")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        ms: u64,
    },
    /// Non-success HTTP status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Body larger than allowed.
    #[error("{url}: response larger than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        max: usize,
    },
}

/// Cache validators of a previous answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// Result of a conditional GET.
#[derive(Debug)]
pub enum Fetched {
    /// A new body.
    Body(Bytes, Validators),
    /// 304: the previous body is still current.
    NotModified,
}

/// An HTTP client with a deadline and a size cap. Must be used inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// A fetcher with the given deadline per exchange and body cap.
    pub fn new(timeout: Duration, max_bytes: usize) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Fetcher {
            client,
            timeout,
            max_bytes,
        }
    }

    /// GET `url`, conditional on `validators`.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn get(&self, url: &str, validators: &Validators) -> Result<Fetched, FetchError> {
        let mut b = Request::builder().method(Method::GET).uri(parse(url)?);
        if let Some(e) = &validators.etag {
            b = b.header(header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &validators.last_modified {
            b = b.header(header::IF_MODIFIED_SINCE, m);
        }
        self.exchange(url, b, Full::default(), true).await
    }

    /// POST an OCSP request.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn post_ocsp(&self, url: &str, body: Vec<u8>) -> Result<Bytes, FetchError> {
        let b = Request::builder()
            .method(Method::POST)
            .uri(parse(url)?)
            .header(header::CONTENT_TYPE, "application/ocsp-request")
            .header(header::ACCEPT, "application/ocsp-response");
        match self
            .exchange(url, b, Full::new(Bytes::from(body)), false)
            .await?
        {
            Fetched::Body(b, _) => Ok(b),
            Fetched::NotModified => Err(FetchError::Status {
                url: url.to_string(),
                status: 304,
            }),
        }
    }

    /// GET an OCSP request URL (RFC 5019).
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn get_ocsp(&self, url: &str) -> Result<Bytes, FetchError> {
        let b = Request::builder()
            .method(Method::GET)
            .uri(parse(url)?)
            .header(header::ACCEPT, "application/ocsp-response");
        match self.exchange(url, b, Full::default(), false).await? {
            Fetched::Body(b, _) => Ok(b),
            Fetched::NotModified => Err(FetchError::Status {
                url: url.to_string(),
                status: 304,
            }),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        builder: http::request::Builder,
        body: Full<Bytes>,
        conditional: bool,
    ) -> Result<Fetched, FetchError> {
        let transport = |m: String| FetchError::Transport {
            url: url.to_string(),
            message: m,
        };
        let req = builder.body(body).map_err(|e| transport(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(format!("request failed: {e}")))?;
            let status = resp.status();
            if conditional && status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            }
            let too_large = || FetchError::TooLarge {
                url: url.to_string(),
                max: self.max_bytes,
            };
            if let Some(len) = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len > self.max_bytes as u64 {
                    return Err(too_large());
                }
            }
            let hv = |h: header::HeaderName| {
                resp.headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let validators = Validators {
                etag: hv(header::ETAG),
                last_modified: hv(header::LAST_MODIFIED),
            };
            let body = Limited::new(resp.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        too_large()
                    } else {
                        transport(format!("reading body: {e}"))
                    }
                })?
                .to_bytes();
            Ok(Fetched::Body(body, validators))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_string(),
                ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            })?
    }
}

fn parse(url: &str) -> Result<Uri, FetchError> {
    if !url.starts_with("http://") {
        return Err(FetchError::Url(url.to_string()));
    }
    url.parse::<Uri>()
        .map_err(|_| FetchError::Url(url.to_string()))
}
