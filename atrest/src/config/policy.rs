//! kseal's policy over a valid `EncryptionConfiguration`: what happens to Secrets under
//! it and how good that is (plaintext, a weak provider, identity left readable).

use super::*;

impl Linter<'_> {
    /// What happens to Secrets, and how good it is.
    pub(super) fn policy(
        &mut self,
        config: &EncryptionConfiguration,
        providers: &[Vec<Option<Provider>>],
    ) -> SecretsCoverage {
        let coverage = secrets_coverage(config, providers);
        let first_invalid = coverage
            .entries
            .first()
            .and_then(|i| providers.get(*i))
            .is_some_and(|p| p.first().is_some_and(Option::is_none));
        if first_invalid {
            // The errors above already say why; the apiserver would not start.
            return coverage;
        }
        let Some(writer) = coverage.writer() else {
            self.push(
                Severity::Fail,
                "secrets-not-covered",
                "resources".into(),
                "no entry covers secrets (neither \"secrets\", \"*.\" nor \"*.*\"): Secrets are stored in plaintext".into(),
            );
            return coverage;
        };
        let entry = coverage.entries[0];
        let at = format!("resources[{entry}].providers[0]");
        match writer {
            Provider::Identity => self.push(
                Severity::Fail,
                "identity-first",
                at.clone(),
                format!(
                    "secrets are covered by resources[{entry}] (\"{}\"), whose first provider is identity: new Secrets are written in plaintext",
                    coverage.matched_by.as_deref().unwrap_or_default()
                ),
            ),
            Provider::Kms { version: KmsVersion::V2, .. } => self.push(
                Severity::Info,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: envelope encryption with a key held outside the control plane (recommended)"),
            ),
            Provider::Kms { version: KmsVersion::V1, .. } => self.push(
                Severity::Warn,
                "provider-deprecated",
                at.clone(),
                format!("Secrets are written with {writer}: KMS v1 is deprecated since 1.28 and disabled by default since 1.29 (needs --feature-gates=KMSv1=true); migrate to apiVersion: v2"),
            ),
            Provider::Secretbox { .. } => self.push(
                Severity::Warn,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: strong, but the key sits on every control-plane host; prefer kms v2"),
            ),
            Provider::Aesgcm { .. } => self.push(
                Severity::Warn,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: the key must be rotated every 200,000 writes (random 96-bit nonces), so only with automated rotation; prefer kms v2"),
            ),
            Provider::Aescbc { .. } => self.push(
                Severity::Warn,
                "provider-weak",
                at.clone(),
                format!("Secrets are written with {writer}, which the Kubernetes docs rate weak (no MAC, padding-oracle attacks; CIS still lists it): prefer kms v2 or secretbox"),
            ),
        }
        if let Some(pos) = coverage
            .providers
            .iter()
            .skip(1)
            .position(|p| *p == Provider::Identity)
        {
            let _ = pos;
            self.push(
                Severity::Note,
                "identity-fallback",
                format!("resources[{entry}].providers"),
                "identity is listed after the encrypting provider: Secrets still stored in plaintext remain readable. Rewrite every Secret (kseal at-rest scan-etcd shows which), then remove it".into(),
            );
        }
        if coverage.entries.len() > 1 {
            self.push(
                Severity::Note,
                "secrets-several-entries",
                "resources".into(),
                format!(
                    "secrets are named by {} entries; their providers are tried in entry order and the first entry's first provider writes",
                    coverage.entries.len()
                ),
            );
        }
        coverage
    }
}
