//! `[listener.pki]`: the certificate policy inputs of RFC 5280 6.1.1 for a listener's client
//! certificate paths (see [`crate::pki::path::policy`]).

use serde::Deserialize;

use crate::pki::path::{PolicyInputs, PolicyOid};

/// Certificate policy requirements of a listener's client paths. The default (no key set)
/// is RFC 5280's: any policy accepted, none required, mapping and anyPolicy allowed. Every
/// key here makes validation stricter, never looser.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PkiConfig {
    /// Certificate policy OIDs (dotted decimal), one of which every client path must be
    /// valid for: sets user-initial-policy-set to these and initial-explicit-policy. Empty:
    /// no policy required.
    pub required_policies: Vec<String>,
    /// initial-policy-mapping-inhibit: policy mappings in the path are not honoured (a
    /// mapped policy no longer counts as the policy it maps from).
    pub inhibit_policy_mapping: bool,
    /// initial-any-policy-inhibit: anyPolicy in an intermediate or client certificate does
    /// not stand for the required policies.
    pub inhibit_any_policy: bool,
}

impl PkiConfig {
    /// The policy inputs these settings make.
    ///
    /// # Errors
    /// `(key, message)` for a bad OID, the key relative to `[listener.pki]`
    /// (`required_policies[1]`).
    pub fn policy_inputs(&self) -> Result<PolicyInputs, (String, String)> {
        let mut set: Vec<PolicyOid> = Vec::with_capacity(self.required_policies.len());
        for (i, text) in self.required_policies.iter().enumerate() {
            let oid = PolicyOid::parse(text.trim())
                .map_err(|m| (format!("required_policies[{i}]"), m))?;
            if set.contains(&oid) {
                return Err((
                    format!("required_policies[{i}]"),
                    format!("{text:?} is listed twice"),
                ));
            }
            set.push(oid);
        }
        Ok(PolicyInputs {
            initial_policy_mapping_inhibit: self.inhibit_policy_mapping,
            initial_any_policy_inhibit: self.inhibit_any_policy,
            ..PolicyInputs::requiring(set)
        })
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// As [`PkiConfig::policy_inputs`].
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.policy_inputs().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_policies_set_explicit_policy_and_bad_oids_name_the_key() {
        let c = PkiConfig::default();
        assert_eq!(c.policy_inputs(), Ok(PolicyInputs::default()));
        let c = PkiConfig {
            required_policies: vec!["2.16.840.1.101.3.2.1.3.13".into()],
            inhibit_policy_mapping: true,
            ..PkiConfig::default()
        };
        let p = c.policy_inputs().expect("inputs");
        assert!(p.initial_explicit_policy && p.initial_policy_mapping_inhibit);
        assert!(!p.initial_any_policy_inhibit);
        assert_eq!(
            p.initial_policy_set.as_deref().map(<[PolicyOid]>::len),
            Some(1)
        );
        let c = PkiConfig {
            required_policies: vec!["1.2.3".into(), "1.2.x".into()],
            ..PkiConfig::default()
        };
        let (k, m) = c.validate().unwrap_err();
        assert_eq!(k, "required_policies[1]");
        assert!(m.contains("1.2.x"), "{m}");
        let c = PkiConfig {
            required_policies: vec!["1.2.3".into(), "1.2.3".into()],
            ..PkiConfig::default()
        };
        assert!(c.validate().unwrap_err().1.contains("twice"));
    }
}
