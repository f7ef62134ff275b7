//! Connection and request limits of a listener: `[listener.limits]`.
//!
//! An edge gateway faces everyone: every phase of a connection has a deadline, and every
//! resource a client can make the gateway hold has a cap. The defaults are what a demanding
//! operator would choose for an mTLS edge in front of web applications; README.md lists them.
//!
//! | phase | limit | default |
//! | --- | --- | --- |
//! | TCP accepted → TLS handshake done | `handshake_timeout_secs` | 10 |
//! | handshake done → first request head complete (HTTP/1 or h2) | `first_request_timeout_secs` | 10 |
//! | first byte of a request head → head complete (HTTP/1) | `header_read_timeout_secs` | 10 |
//! | request body: no byte received for | `body_idle_timeout_secs` | 30 → 408 |
//! | no request in flight for (HTTP/1 keep-alive, h2 without streams) | `idle_timeout_secs` | 60 |
//! | h2 PING every / answer within | `h2_keepalive_interval_secs` / `h2_keepalive_timeout_secs` | 30 / 10 |
//! | h2 streams at once | `h2_max_concurrent_streams` | 100 |
//! | request head size (HTTP/1 buffer, h2 header list) | `max_header_bytes` | 32768 |
//! | open connections per worker and listener | `max_connections_per_worker` | 4096 |
//! | connection lifetime, then graceful close | `max_connection_age_secs` | 3600 |
//! | backend TCP connect (`http://`) | `upstream_connect_timeout_secs` | 5 → 504 |
//! | request sent → backend response head | `upstream_response_timeout_secs` | 60 → 504 |
//! | `tcp://` relay: no byte either way for | `tcp_idle_timeout_secs` | 300 |
//!
//! A connection with a client certificate that lives longer than the listener's
//! `revocation.refresh_interval_secs` has its certificate status checked again at that
//! interval (HTTP/2 and `tcp://` connections can live for hours).

use std::time::Duration;

use serde::Deserialize;

/// `[listener.limits]` as written in the configuration (seconds and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// TCP accept to completed TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Completed handshake to the first complete request head (covers HTTP/1 vs h2
    /// detection and the h2 preface).
    pub first_request_timeout_secs: u64,
    /// First byte of an HTTP/1 request head to the complete head.
    pub header_read_timeout_secs: u64,
    /// Longest pause while receiving a request body; then 408 and the connection closes.
    pub body_idle_timeout_secs: u64,
    /// No request in flight (HTTP/1 keep-alive, HTTP/2 without open streams) for this long:
    /// graceful close.
    pub idle_timeout_secs: u64,
    /// HTTP/2 PING interval (0 = no pings: a relaxation).
    pub h2_keepalive_interval_secs: u64,
    /// HTTP/2 PING acknowledgement deadline; the connection closes without one.
    pub h2_keepalive_timeout_secs: u64,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Largest request head: the HTTP/1 read buffer and the HTTP/2 header list size.
    pub max_header_bytes: u32,
    /// Open connections per worker and listener; beyond it a new connection is accepted and
    /// closed at once (counted as `over_capacity`).
    pub max_connections_per_worker: usize,
    /// A connection's lifetime; then a graceful close (0 = unlimited: a relaxation).
    pub max_connection_age_secs: u64,
    /// TCP connect to an `http://` backend; exceeded → 504.
    pub upstream_connect_timeout_secs: u64,
    /// Request forwarded to the backend's response head; exceeded → 504.
    pub upstream_response_timeout_secs: u64,
    /// A `tcp://` relay with no byte in either direction for this long is closed.
    pub tcp_idle_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            handshake_timeout_secs: 10,
            first_request_timeout_secs: 10,
            header_read_timeout_secs: 10,
            body_idle_timeout_secs: 30,
            idle_timeout_secs: 60,
            h2_keepalive_interval_secs: 30,
            h2_keepalive_timeout_secs: 10,
            h2_max_concurrent_streams: 100,
            max_header_bytes: 32 * 1024,
            max_connections_per_worker: 4096,
            max_connection_age_secs: 3600,
            upstream_connect_timeout_secs: 5,
            upstream_response_timeout_secs: 60,
            tcp_idle_timeout_secs: 300,
        }
    }
}

const DAY: u64 = 86_400;

impl LimitsConfig {
    /// Checks every value's range.
    ///
    /// # Errors
    /// `(key, message)` for the first value out of range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err((key.to_string(), format!("{v} is outside {lo}..={hi}")))
            }
        };
        range(
            "handshake_timeout_secs",
            self.handshake_timeout_secs,
            1,
            300,
        )?;
        range(
            "first_request_timeout_secs",
            self.first_request_timeout_secs,
            1,
            300,
        )?;
        range(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            300,
        )?;
        range(
            "body_idle_timeout_secs",
            self.body_idle_timeout_secs,
            1,
            3600,
        )?;
        range("idle_timeout_secs", self.idle_timeout_secs, 1, DAY)?;
        range(
            "h2_keepalive_interval_secs",
            self.h2_keepalive_interval_secs,
            0,
            DAY,
        )?;
        range(
            "h2_keepalive_timeout_secs",
            self.h2_keepalive_timeout_secs,
            1,
            300,
        )?;
        range(
            "h2_max_concurrent_streams",
            u64::from(self.h2_max_concurrent_streams),
            1,
            10_000,
        )?;
        range(
            "max_header_bytes",
            u64::from(self.max_header_bytes),
            8192,
            1 << 20,
        )?;
        range(
            "max_connections_per_worker",
            self.max_connections_per_worker as u64,
            1,
            10_000_000,
        )?;
        range(
            "max_connection_age_secs",
            self.max_connection_age_secs,
            0,
            30 * DAY,
        )?;
        range(
            "upstream_connect_timeout_secs",
            self.upstream_connect_timeout_secs,
            1,
            300,
        )?;
        range(
            "upstream_response_timeout_secs",
            self.upstream_response_timeout_secs,
            1,
            DAY,
        )?;
        range(
            "tcp_idle_timeout_secs",
            self.tcp_idle_timeout_secs,
            1,
            30 * DAY,
        )?;
        Ok(())
    }

    /// The relaxations in these limits, for the start-up log.
    pub fn relaxations(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.h2_keepalive_interval_secs == 0 {
            out.push(
                "limits.h2_keepalive_interval_secs = 0: dead HTTP/2 peers are not detected by PING",
            );
        }
        if self.max_connection_age_secs == 0 {
            out.push("limits.max_connection_age_secs = 0: connections may live forever");
        }
        out
    }

    /// The limits as durations.
    pub fn to_limits(&self) -> Limits {
        let s = Duration::from_secs;
        Limits {
            handshake_timeout: s(self.handshake_timeout_secs),
            check_timeout: s(10),
            first_request_timeout: s(self.first_request_timeout_secs),
            header_read_timeout: s(self.header_read_timeout_secs),
            body_idle_timeout: s(self.body_idle_timeout_secs),
            idle_timeout: s(self.idle_timeout_secs),
            h2_keepalive_interval: (self.h2_keepalive_interval_secs > 0)
                .then(|| s(self.h2_keepalive_interval_secs)),
            h2_keepalive_timeout: s(self.h2_keepalive_timeout_secs),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            max_header_bytes: self.max_header_bytes,
            max_connections_per_worker: self.max_connections_per_worker,
            max_connection_age: (self.max_connection_age_secs > 0)
                .then(|| s(self.max_connection_age_secs)),
            upstream_connect_timeout: s(self.upstream_connect_timeout_secs),
            upstream_response_timeout: s(self.upstream_response_timeout_secs),
            tcp_idle_timeout: s(self.tcp_idle_timeout_secs),
            status_recheck_interval: None,
        }
    }
}

/// A listener's limits, ready to use (see [`LimitsConfig`] for each one's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP accept to completed TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline of the post-handshake certificate status check.
    pub check_timeout: Duration,
    /// Handshake to the first complete request head.
    pub first_request_timeout: Duration,
    /// First byte of an HTTP/1 request head to the complete head.
    pub header_read_timeout: Duration,
    /// Longest pause in a request body.
    pub body_idle_timeout: Duration,
    /// No request in flight for this long: graceful close.
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval (None: off).
    pub h2_keepalive_interval: Option<Duration>,
    /// HTTP/2 PING acknowledgement deadline.
    pub h2_keepalive_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Largest request head in bytes.
    pub max_header_bytes: u32,
    /// Open connections per worker and listener.
    pub max_connections_per_worker: usize,
    /// Connection lifetime (None: unlimited).
    pub max_connection_age: Option<Duration>,
    /// `http://` backend connect deadline.
    pub upstream_connect_timeout: Duration,
    /// Backend response-head deadline.
    pub upstream_response_timeout: Duration,
    /// `tcp://` relay idle deadline.
    pub tcp_idle_timeout: Duration,
    /// Re-check a connection's client certificate status this often (the listener's
    /// `revocation.refresh_interval_secs`; None: revocation checking is off).
    pub status_recheck_interval: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        LimitsConfig::default().to_limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_strict() {
        let c = LimitsConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.relaxations().is_empty());
        let l = c.to_limits();
        assert_eq!(l.first_request_timeout, Duration::from_secs(10));
        assert_eq!(l.h2_keepalive_interval, Some(Duration::from_secs(30)));
        assert_eq!(l.max_connection_age, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn out_of_range_values_are_named() {
        let c = LimitsConfig {
            first_request_timeout_secs: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(
            c.validate().map_err(|(k, _)| k),
            Err("first_request_timeout_secs".to_string())
        );
        let c = LimitsConfig {
            max_header_bytes: 1024,
            ..LimitsConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LimitsConfig {
            max_connection_age_secs: 0,
            h2_keepalive_interval_secs: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.relaxations().len(), 2);
    }
}
