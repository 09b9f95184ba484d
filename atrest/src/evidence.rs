//! The API-only checks' evidence: kube-apiserver flags from its static pods, its health
//! checks, its transformation and config metrics, and the metric deltas of a canary
//! Secret write. Pure logic: the [`crate::probe`] gathers it, [`crate::verdict`] decides.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics_text::{Sample, parse_metrics};

pub const TRANSFORMATIONS: &str = "apiserver_storage_transformation_operations_total";
pub const LAST_CONFIG_INFO: &str = "apiserver_encryption_config_controller_last_config_info";
pub const RELOADS: &str = "apiserver_encryption_config_controller_automatic_reloads_total";
pub const KMS_STATUS: &str =
    "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds";
pub const KMS_KEY_ID_HASH: &str = "apiserver_envelope_encryption_key_id_hash_total";

/// The metric families the checks read.
pub const METRIC_FAMILIES: [&str; 3] = [
    "apiserver_storage_transformation_",
    "apiserver_encryption_config_controller_",
    "apiserver_envelope_encryption_key_id_",
];

/// Counters of Secret transformations keyed by (direction, top-level prefix).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Transformations {
    /// `("to_storage", "k8s:enc:aescbc:v1:")` → count, OK status only.
    #[serde(serialize_with = "series")]
    pub ok: BTreeMap<(String, String), f64>,
    /// Key-level sub-series (`key1:`) per direction.
    #[serde(serialize_with = "series")]
    pub keys: BTreeMap<(String, String), f64>,
    /// Failed transformations (any status but OK).
    pub failed: f64,
    /// False before Kubernetes 1.32: the series have no `resource` label, so they count
    /// every resource, not only Secrets.
    pub per_resource: bool,
}

/// `[{"direction": …, "prefix": …, "count": …}]`: JSON maps need string keys.
fn series<S: serde::Serializer>(
    map: &BTreeMap<(String, String), f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(map.iter().map(|((direction, prefix), count)| {
        serde_json::json!({"direction": direction, "prefix": prefix, "count": count})
    }))
}

/// Is this `transformer_prefix` a provider (top level) rather than a key sub-series?
fn top_level(prefix: &str) -> bool {
    prefix.is_empty()
        || prefix == "identity"
        || prefix == "unknown"
        || prefix.starts_with("k8s:enc:")
}

impl Transformations {
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut t = Transformations::default();
        let series: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == TRANSFORMATIONS)
            .collect();
        t.per_resource = series.iter().any(|s| s.labels.contains_key("resource"));
        for s in series {
            if t.per_resource && s.labels.get("resource").map(String::as_str) != Some("secrets") {
                continue;
            }
            let direction = s
                .labels
                .get("transformation_type")
                .cloned()
                .unwrap_or_default();
            let prefix = s
                .labels
                .get("transformer_prefix")
                .cloned()
                .unwrap_or_default();
            if s.labels.get("status").map(String::as_str) != Some("OK") {
                t.failed += s.value;
                continue;
            }
            let map = if top_level(&prefix) {
                &mut t.ok
            } else {
                &mut t.keys
            };
            *map.entry((direction, prefix)).or_default() += s.value;
        }
        t
    }

    /// Counts that grew from `before` to `self` (a counter that shrank means a restart:
    /// then the whole new value counts).
    pub fn delta(&self, before: &Transformations) -> Transformations {
        let diff = |now: &BTreeMap<(String, String), f64>,
                    then: &BTreeMap<(String, String), f64>| {
            now.iter()
                .filter_map(|(k, v)| {
                    let old = then.get(k).copied().unwrap_or(0.0);
                    let d = if *v < old { *v } else { v - old };
                    (d > 0.0).then(|| (k.clone(), d))
                })
                .collect()
        };
        Transformations {
            ok: diff(&self.ok, &before.ok),
            keys: diff(&self.keys, &before.keys),
            failed: (self.failed - before.failed).max(0.0),
            per_resource: self.per_resource,
        }
    }

    /// Top-level prefixes seen in one direction.
    pub fn prefixes(&self, direction: &str) -> Vec<(&str, f64)> {
        self.ok
            .iter()
            .filter(|((d, _), _)| d == direction)
            .map(|((_, p), v)| (p.as_str(), *v))
            .collect()
    }

    /// The key names used in one direction, from the `<key>:` sub-series.
    pub fn key_names(&self, direction: &str) -> Vec<String> {
        self.keys
            .iter()
            .filter(|((d, _), _)| d == direction)
            .map(|((_, p), _)| p.trim_end_matches(':').to_owned())
            .collect()
    }
}

/// What one scrape of `/metrics` says about encryption.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MetricsEvidence {
    pub transformations: Transformations,
    /// `last_config_info{hash}` (1.34+): the loaded config's `sha256:` hash.
    pub config_hash: Option<String>,
    /// The `apiserver_id_hash` label of this apiserver, when any series has it.
    pub apiserver_id_hash: Option<String>,
    /// Failed automatic reloads (the running config is older than the file).
    pub reload_failures: f64,
    /// KMS v2 plugins polled for status, by provider name: the key id hash their latest
    /// status reported. kube-apiserver keeps a series per key id hash it has seen (the
    /// gauge is the time of the last status with that key id), so after a rotation the
    /// current one is the newest.
    pub kms_v2_key_id_hashes: BTreeMap<String, String>,
}

impl MetricsEvidence {
    pub fn from_text(text: &str) -> Self {
        let samples = parse_metrics(text, &METRIC_FAMILIES);
        let mut m = MetricsEvidence {
            transformations: Transformations::from_samples(&samples),
            ..MetricsEvidence::default()
        };
        let mut latest: BTreeMap<String, (f64, String)> = BTreeMap::new();
        for s in &samples {
            if let Some(id) = s.labels.get("apiserver_id_hash") {
                m.apiserver_id_hash.get_or_insert_with(|| id.clone());
            }
            if s.name == LAST_CONFIG_INFO && s.value > 0.0 {
                m.config_hash = s.labels.get("hash").cloned();
            }
            if s.name == RELOADS && s.labels.get("status").map(String::as_str) == Some("failure") {
                m.reload_failures += s.value;
            }
            if s.name == KMS_STATUS
                && let (Some(p), Some(k)) =
                    (s.labels.get("provider_name"), s.labels.get("key_id_hash"))
            {
                let newest = latest.get(p).is_none_or(|(at, _)| s.value > *at);
                if newest {
                    latest.insert(p.clone(), (s.value, k.clone()));
                }
            }
        }
        m.kms_v2_key_id_hashes = latest.into_iter().map(|(p, (_, k))| (p, k)).collect();
        m
    }
}

/// The encryption-related checks listed by `/readyz?verbose` or `/healthz?verbose`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthEvidence {
    /// `kms-providers` (KMS v2, or any setup with automatic reload).
    pub kms_providers: bool,
    /// `kms-provider-N`: KMS v1 plugins without reload.
    pub kms_v1_plugins: usize,
    /// `poststarthook/start-encryption-provider-config-automatic-reload`.
    pub automatic_reload: bool,
    /// Encryption checks that are failing.
    pub failing: Vec<String>,
}

impl HealthEvidence {
    pub fn from_text(text: &str) -> Self {
        let mut h = HealthEvidence::default();
        for line in text.lines() {
            let line = line.trim();
            let (ok, check) = if let Some(c) = line.strip_prefix("[+]") {
                (true, c)
            } else if let Some(c) = line.strip_prefix("[-]") {
                (false, c)
            } else {
                continue;
            };
            let check = check.split_whitespace().next().unwrap_or_default();
            let relevant = if check == "kms-providers" {
                h.kms_providers = true;
                true
            } else if check.starts_with("kms-provider-") {
                h.kms_v1_plugins += 1;
                true
            } else if check == "poststarthook/start-encryption-provider-config-automatic-reload" {
                h.automatic_reload = true;
                true
            } else {
                false
            };
            if relevant && !ok {
                h.failing.push(check.to_owned());
            }
        }
        h
    }
}

/// kube-apiserver's at-rest flags, from a static pod's command and args.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlagEvidence {
    pub pod: String,
    pub node: Option<String>,
    pub encryption_provider_config: Option<String>,
    pub automatic_reload: bool,
    pub etcd_prefix: Option<String>,
    pub storage_media_type: Option<String>,
    pub etcd_servers_overrides: Option<String>,
    pub advertise_address: Option<String>,
    pub secure_port: Option<String>,
    pub kms_v1_gate: bool,
}

impl FlagEvidence {
    /// `--flag=value` and `--flag value` forms, in `command` then `args` order; the last
    /// occurrence wins, as with Go's flag parsing.
    pub fn from_args(pod: &str, node: Option<String>, argv: &[String]) -> Self {
        let mut flags: BTreeMap<&str, String> = BTreeMap::new();
        let mut i = 0;
        while i < argv.len() {
            if let Some(flag) = argv[i].strip_prefix("--") {
                match flag.split_once('=') {
                    Some((k, v)) => {
                        flags.insert(k, v.to_owned());
                    }
                    None => {
                        let next = argv.get(i + 1).filter(|n| !n.starts_with("--"));
                        flags.insert(flag, next.cloned().unwrap_or_else(|| "true".into()));
                        if next.is_some() {
                            i += 1;
                        }
                    }
                }
            }
            i += 1;
        }
        FlagEvidence {
            pod: pod.to_owned(),
            node,
            encryption_provider_config: flags.get("encryption-provider-config").cloned(),
            automatic_reload: flags
                .get("encryption-provider-config-automatic-reload")
                .is_some_and(|v| v == "true"),
            etcd_prefix: flags.get("etcd-prefix").cloned(),
            storage_media_type: flags.get("storage-media-type").cloned(),
            etcd_servers_overrides: flags.get("etcd-servers-overrides").cloned(),
            advertise_address: flags.get("advertise-address").cloned(),
            secure_port: flags.get("secure-port").cloned(),
            kms_v1_gate: flags
                .get("feature-gates")
                .is_some_and(|g| g.split(',').any(|f| f.trim() == "KMSv1=true")),
        }
    }
}

/// A check that ran, or why it could not.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", content = "value", rename_all = "kebab-case")]
pub enum Checked<T> {
    Done(T),
    NotChecked(String),
}

impl<T> Checked<T> {
    pub fn done(&self) -> Option<&T> {
        match self {
            Checked::Done(t) => Some(t),
            Checked::NotChecked(_) => None,
        }
    }
}

/// What the canary write showed on one apiserver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CanaryEvidence {
    /// Top-level `to_storage` prefixes that moved during the write.
    pub to_storage: Vec<String>,
    /// Key names from the `<key>:` sub-series that moved.
    pub keys: Vec<String>,
    /// Failed transformations during the write.
    pub failed: f64,
    /// The canary Secret could not be deleted: its name and why.
    pub left_behind: Option<String>,
}

/// Everything gathered about one apiserver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiserverEvidence {
    /// The endpoint (`10.0.0.1:6443`), or `the apiserver behind <url>` when the endpoints
    /// could not be addressed one by one.
    pub name: String,
    /// Why the apiservers could not be addressed one by one, when they could not.
    pub addressing: Option<String>,
    pub flags: Checked<FlagEvidence>,
    pub health: Checked<HealthEvidence>,
    pub metrics: Checked<MetricsEvidence>,
    pub canary: Checked<CanaryEvidence>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_upstream_lines() {
        let text = r#"
# TYPE apiserver_storage_transformation_operations_total counter
apiserver_storage_transformation_operations_total{resource="secrets",status="OK",transformation_type="to_storage",transformer_prefix="k8s:enc:aescbc:v1:"} 3
apiserver_storage_transformation_operations_total{resource="secrets",status="OK",transformation_type="to_storage",transformer_prefix="key1:"} 3
apiserver_storage_transformation_operations_total{resource="configmaps",status="OK",transformation_type="to_storage",transformer_prefix=""} 9
apiserver_storage_transformation_operations_total{resource="secrets",status="OK",transformation_type="from_storage",transformer_prefix="identity"} 7
apiserver_encryption_config_controller_automatic_reloads_total {apiserver_id_hash="sha256:14f9",status="failure"} 2
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:14f9",hash="sha256:6bc9"} 1
"#;
        let m = MetricsEvidence::from_text(text);
        assert_eq!(
            m.transformations.prefixes("to_storage"),
            vec![("k8s:enc:aescbc:v1:", 3.0)]
        );
        assert_eq!(
            m.transformations.key_names("to_storage"),
            vec!["key1".to_owned()]
        );
        assert_eq!(m.config_hash.as_deref(), Some("sha256:6bc9"));
        assert_eq!(m.apiserver_id_hash.as_deref(), Some("sha256:14f9"));
        assert_eq!(m.reload_failures, 2.0);
    }

    #[test]
    fn after_a_kms_rotation_the_newest_key_id_is_current() {
        // kube-apiserver keeps the series of every key id hash it saw; the gauge is when
        // a status last reported it.
        let text = r#"
apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds{apiserver_id_hash="sha256:14f9",key_id_hash="sha256:new",provider_name="vault"} 1.7646e+09
apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds{apiserver_id_hash="sha256:14f9",key_id_hash="sha256:old",provider_name="vault"} 1.7645e+09
"#;
        let m = MetricsEvidence::from_text(text);
        assert_eq!(
            m.kms_v2_key_id_hashes.get("vault").map(String::as_str),
            Some("sha256:new")
        );
    }

    #[test]
    fn flags_in_both_forms() {
        let argv: Vec<String> = [
            "kube-apiserver",
            "--etcd-prefix",
            "/k8s",
            "--encryption-provider-config=/etc/enc.yaml",
            "--feature-gates=A=true,KMSv1=true",
        ]
        .map(String::from)
        .to_vec();
        let f = FlagEvidence::from_args("p", None, &argv);
        assert_eq!(f.etcd_prefix.as_deref(), Some("/k8s"));
        assert_eq!(
            f.encryption_provider_config.as_deref(),
            Some("/etc/enc.yaml")
        );
        assert!(f.kms_v1_gate);
    }
}
