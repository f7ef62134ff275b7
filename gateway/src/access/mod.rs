//! Access control after the handshake: the IN CONFIDENCE password fallback (HTTP Basic,
//! argon2id password file, rate limiting), authorisation rules on certificate fields and
//! password users, and routes from path prefixes to backends.
//!
//! The request path calls [`ListenerAccess::authorize`] once per request; see its docs.

pub mod basic;
pub mod listener;
pub mod password;
pub mod ratelimit;
pub mod rules;

pub use listener::{AccessConfig, AccessError, Granted, ListenerAccess, Refused};
