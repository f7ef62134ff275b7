//! Certificate status checking (CRL and OCSP from the certificate itself, fail closed).
//!
//! Placeholder: the configuration surface only. The checker lands with the revocation issue.

use std::path::Path;

use serde::Deserialize;

/// Per-listener revocation settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {}

impl RevocationConfig {
    /// Resolves relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, _base: &Path) {}

    /// Validates values; `Err((key, message))` names the key below `revocation.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    /// Relaxations of the fail-closed policy, for the start-up log.
    pub fn relaxations(&self) -> Vec<String> {
        Vec::new()
    }
}
