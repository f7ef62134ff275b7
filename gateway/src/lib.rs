//! The S.E.E. mutual-TLS edge gateway.
//!
//! A library first: `main.rs` only parses the command line. See ARCHITECTURE.md for the map.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod conn;
pub mod lifetime;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod pki;
pub mod plan;
pub mod privileges;
pub mod probe;
pub mod proxy;
pub mod revocation;
pub mod sd_notify;
pub mod server;
pub mod status;
pub mod steering;
pub mod tcp_proxy;
pub mod tls;
pub mod upstream;
pub mod verify;
pub mod worker;
