//! Certificate status checking: CRLs and OCSP from the certificate itself, fail closed.
//!
//! - [`RevocationConfig`]: per-listener policy (default strict: OCSP then CRL, fail closed).
//! - [`RevocationCache`]: one per process; lock-free reads, single-flight fetches on a
//!   background thread, refresh ahead of nextUpdate.
//! - [`RevocationChecker`]: per listener; the [`StatusCheck`](crate::status::StatusCheck)
//!   inside the handshake (cache only), after it (awaited before forwarding), for upstream
//!   backends and `gateway probe`.

mod body;
pub mod cache;
pub mod cert;
#[allow(
    clippy::indexing_slicing,
    reason = "chain positions come from iterating the validated path's own certificates"
)]
pub mod checker;
pub mod config;
#[allow(
    clippy::indexing_slicing,
    reason = "DER fields and distribution-point lists indexed after length checks; not yet converted to get()"
)]
pub mod crl;
pub mod crl_status;
#[allow(
    clippy::indexing_slicing,
    reason = "the hand-written DER reader: every index follows its own length check (measured hot path: crl_load)"
)]
pub mod der;
pub mod error;
pub mod fetch;
mod flight;
mod local;
#[allow(
    clippy::indexing_slicing,
    reason = "fixed-size counter arrays indexed by enum discriminants"
)]
pub mod metrics;
pub mod ocsp;
#[allow(
    clippy::indexing_slicing,
    reason = "binary search over a sorted array within its bounds (measured hot path: CRL serial lookups)"
)]
pub mod serials;
pub mod staple;
pub mod status;

pub use cache::RevocationCache;
pub use checker::{CheckedCert, CheckerError, RevocationChecker, Verdict};
pub use config::{CertIdHash, OcspResponderOverride, RevocationConfig, RevocationOrder, Source};
pub use error::{Reason, RevocationError};
pub use metrics::MetricsSnapshot;

/// The wall clock in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
