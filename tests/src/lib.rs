//! The project's one test-support crate: a real PKI made with rcgen (and openssl for what
//! rcgen refuses to make), CRL and OCSP test servers on loopback (`status_servers`), TLS
//! peers for backends and probes (`tls_peers`), an in-process gateway on loopback (`gw`), a
//! header-echo backend, real clients (curl, openssl s_client, rustls) and the one skip
//! policy (`skip`). The gateway crate's own integration tests include `skip`,
//! `status_servers` and `tls_peers` from here by path (they run with either crypto
//! provider, which a dependency on this crate would not allow).

pub mod backend;
pub mod certs;
pub mod clients;
pub mod gw;
pub mod pki;
pub mod raw;
pub mod skip;
pub mod status_servers;
pub mod tls_peers;

pub use skip::{can_run, have_tool, in_ci, is_root, require_tool};
