//! HTTP fetching of CRLs and OCSP responses: http:// only, a deadline over the whole
//! exchange, a size cap on the body, conditional GET. The body is read into one buffer
//! sized from `Content-Length` (within the cap), a big one in its own memory mapping
//! ([`body`](super::body)): a 24 MB CRL costs 24 MB while it is held, not the chunks plus a
//! contiguous copy, and nothing once it is dropped.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::body::BodyBuf;

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
            let announced = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|len| len > self.max_bytes as u64) {
                return Err(too_large());
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
            // One buffer of the announced size (within the cap); without a length it grows
            // as data comes, never past the cap.
            let expected = announced.map_or(0, |l| l as usize).min(self.max_bytes);
            let mut buf = BodyBuf::new(expected)
                .map_err(|e| transport(format!("no memory for a {expected}-byte body: {e}")))?;
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| transport(format!("reading body: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    if data.len() > self.max_bytes - buf.len() {
                        return Err(too_large());
                    }
                    buf.extend(&data)
                        .map_err(|e| transport(format!("no memory for the body: {e}")))?;
                }
            }
            Ok(Fetched::Body(buf.into_bytes(), validators))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// Serves one raw HTTP answer (`head` then `body`) per connection on loopback.
    fn serve(head: String, body: Vec<u8>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/x.crl", l.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut w = s;
                let _ = w.write_all(head.as_bytes());
                let _ = w.write_all(&body);
            }
        });
        url
    }

    fn chunked(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in data.chunks(1000) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    async fn get(url: &str, max: usize) -> Result<Bytes, FetchError> {
        let f = Fetcher::new(Duration::from_secs(5), max);
        match f.get(url, &Validators::default()).await? {
            Fetched::Body(b, _) => Ok(b),
            Fetched::NotModified => panic!("not conditional"),
        }
    }

    #[tokio::test]
    async fn body_with_and_without_a_length_and_the_cap() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let sized = serve(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            ),
            data.clone(),
        );
        assert_eq!(get(&sized, 1 << 20).await.expect("sized")[..], data[..]);
        // Exactly at the cap is fine; one byte less is refused before the body is read.
        assert_eq!(
            get(&sized, data.len()).await.expect("at cap").len(),
            data.len()
        );
        assert!(matches!(
            get(&sized, data.len() - 1).await,
            Err(FetchError::TooLarge { .. })
        ));
        let no_length = serve(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".into(),
            chunked(&data),
        );
        assert_eq!(
            get(&no_length, 1 << 20).await.expect("chunked")[..],
            data[..]
        );
        assert_eq!(
            get(&no_length, data.len()).await.expect("at cap").len(),
            data.len()
        );
        // Without a length the cap is enforced while reading.
        assert!(matches!(
            get(&no_length, data.len() - 1).await,
            Err(FetchError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_body_shorter_than_announced_is_an_error() {
        let short = serve(
            "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n".into(),
            vec![0x30; 100],
        );
        assert!(matches!(
            get(&short, 1 << 20).await,
            Err(FetchError::Transport { .. })
        ));
    }
}
