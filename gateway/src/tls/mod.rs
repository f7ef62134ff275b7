//! TLS under the S.E.E. policy: crypto provider and suites, the client-certificate verifier,
//! and the per-listener rustls server configuration.

pub mod client_verifier;
pub mod policy;
pub mod server;
pub mod tickets;

pub use policy::{build_provider, TlsPolicyError};
pub use server::{apply_ticket_keys, build_server_config, ListenerTls};
