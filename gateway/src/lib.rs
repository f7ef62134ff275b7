//! The S.E.E. mutual-TLS edge gateway.
//!
//! A library first: `main.rs` only parses the command line. See ARCHITECTURE.md for the map.
//!
//! The public surface is a decision: the modules below that are `pub` are what the binary,
//! the tests, the benchmarks and an embedder use; the connection machinery (`conn`,
//! `worker`, `lifetime`), `gateway verify` and the systemd notifier are private, and the
//! everyday entry points are re-exported here: [`Config`] → [`plan()`] → [`start`] →
//! [`RunningGateway`], and the one status interface [`StatusCheck`].
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]
// Non-test code does not unwrap, expect, panic or index unchecked; the few modules that
// still index by hand say why where they are declared.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod access;
#[allow(
    clippy::indexing_slicing,
    reason = "exposition sums fixed-size per-class counter arrays over their own index range"
)]
pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
mod conn;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[allow(
    clippy::indexing_slicing,
    clippy::panic,
    reason = "fuzz entry points: a violated invariant must crash for the fuzzer to report it"
)]
pub mod fuzzing;
mod lifetime;
pub mod limits;
pub mod memory;
#[allow(
    clippy::indexing_slicing,
    reason = "fixed-size counter arrays indexed by enum discriminants (sized by `ALL.len()`) and by `i % len` of a non-empty slice"
)]
pub mod metrics;
#[allow(
    clippy::indexing_slicing,
    reason = "byte-wise path scanner: every index is guarded by the loop's `< len` check"
)]
pub mod path;
pub mod pki;
pub mod plan;
pub mod privileges;
pub mod probe;
pub mod proxy;
pub mod revocation;
mod sd_notify;
pub mod server;
pub mod status;
pub mod steering;
pub mod tcp_proxy;
pub mod tls;
pub mod upstream;
mod verify;
mod worker;

pub use config::Config;
pub use plan::{plan, GatewayPlan, ListenerKind, ListenerPlan};
pub use server::{start, start_unprivileged, RunningGateway};
pub use status::{CertStatus, ChainStatus, StatusCheck};
