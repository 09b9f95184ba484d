//! A model of kube-apiserver's storage transformers, as far as its metrics show them:
//! each Secret write counts a `to_storage` and each read from storage a `from_storage`
//! under the prefix of the first provider, in `apiserver_storage_transformation_operations_total`
//! exactly as kube-apiserver exposes it. The test server stores nothing encrypted; this
//! only lets at-rest checks be tested against what a real apiserver reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the modelled `--encryption-provider-config` does to Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretStorage {
    /// No config, or a config that does not cover Secrets: no series at all.
    NotConfigured,
    /// `identity` first: writes are recorded with an empty prefix, reads as `identity`.
    IdentityFirst,
    /// An encrypting provider first: its top-level prefix (`k8s:enc:aescbc:v1:`) and, for
    /// local providers, the key name (recorded as a second `<key>:` series).
    Encrypted { prefix: String, key: Option<String> },
}

#[derive(Debug)]
pub struct StorageModel {
    pub secrets: SecretStorage,
    /// Kubernetes 1.32+ adds the `resource` label.
    pub resource_label: bool,
    /// (transformation_type, transformer_prefix) → count.
    counts: BTreeMap<(&'static str, String), u64>,
}

impl Default for StorageModel {
    fn default() -> Self {
        StorageModel {
            secrets: SecretStorage::NotConfigured,
            resource_label: true,
            counts: BTreeMap::new(),
        }
    }
}

impl StorageModel {
    /// A Secret was written (`to_storage`) or read from storage (`from_storage`).
    pub fn record(&mut self, write: bool) {
        let direction = if write { "to_storage" } else { "from_storage" };
        let prefixes: Vec<String> = match &self.secrets {
            SecretStorage::NotConfigured => return,
            SecretStorage::IdentityFirst if write => vec![String::new()],
            SecretStorage::IdentityFirst => vec!["identity".into()],
            SecretStorage::Encrypted { prefix, key } => {
                let mut p = vec![prefix.clone()];
                p.extend(key.iter().map(|k| format!("{k}:")));
                p
            }
        };
        for p in prefixes {
            *self.counts.entry((direction, p)).or_default() += 1;
        }
    }

    /// The `/metrics` lines, in the Prometheus text format with sorted label names.
    pub fn render(&self) -> String {
        let name = "apiserver_storage_transformation_operations_total";
        let mut out = format!(
            "# HELP {name} [ALPHA] Total number of transformations. Successful transformation will have a status 'OK' and a varied status string when the transformation fails.\n# TYPE {name} counter\n"
        );
        for ((direction, prefix), n) in &self.counts {
            let resource = if self.resource_label {
                "resource=\"secrets\","
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{name}{{{resource}status=\"OK\",transformation_type=\"{direction}\",transformer_prefix=\"{prefix}\"}} {n}"
            );
        }
        out
    }
}
