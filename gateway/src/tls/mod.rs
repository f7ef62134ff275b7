//! TLS under the S.E.E. policy: crypto provider and suites, the client-certificate verifier,
//! and the per-listener rustls server configuration.

mod client_hello;
pub mod client_verifier;
pub(crate) mod handshake;
mod hkdf;
mod open;
pub mod policy;
mod seal;
pub mod server;
pub(crate) mod session;
#[allow(
    clippy::indexing_slicing,
    reason = "fixed-layout ticket key and ticket framing, sliced after length checks"
)]
pub mod tickets;
mod traffic_key;

pub use handshake::SessionInfo;
pub use policy::{base_provider, build_provider, restrict_provider, TlsPolicyError};
pub use server::{build_server_config, ServerTlsError, ServerTlsParts, TlsConfig};
