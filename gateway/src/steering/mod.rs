//! Kernel connection steering (XDP, reuseport programs).
//!
//! Placeholder: the configuration surface only. The loader lands with the steering issue.

use serde::Deserialize;

/// `[steering]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringConfig {}

impl SteeringConfig {
    /// Validates values; `Err((key, message))` names the key below `steering.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}
