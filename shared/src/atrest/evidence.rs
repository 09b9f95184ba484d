//! The API-only checks' evidence and the verdict drawn from it: kube-apiserver flags from
//! its static pods, its health checks, its transformation and config metrics, and the
//! metric deltas of a canary Secret write. Pure logic: the probe gathers, this decides.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (what kube-apiserver's `/metrics` serves), keeping
/// only the families whose names start with one of `wanted`.
pub fn parse_metrics(text: &str, wanted: &[&str]) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || !wanted.iter().any(|w| line.starts_with(w)) {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            out.push(s);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = line[name_end..].trim_start();
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            let mut chars = rest[eq + 1..].trim_start().char_indices();
            let body = rest[eq + 1..].trim_start();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in chars {
                match (escaped, c) {
                    (true, 'n') => value.push('\n'),
                    (true, c) => value.push(c),
                    (false, '\\') => {
                        escaped = true;
                        continue;
                    }
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    (false, c) => value.push(c),
                }
                escaped = false;
            }
            rest = &body[end? + 1..];
            labels.insert(key, value);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

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

/// The verdict for one apiserver, or for the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum Verdict {
    /// New Secrets are written encrypted; the detail names the prefix (and key).
    Encrypted(String),
    /// Nothing conclusive could be checked.
    Unknown,
    /// New Secrets are written in plaintext.
    Plaintext,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Encrypted(_) => "encrypted",
            Verdict::Unknown => "unknown",
            Verdict::Plaintext => "plaintext",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Encrypted(p) => write!(f, "encrypted ({p})"),
            Verdict::Unknown => f.write_str("unknown"),
            Verdict::Plaintext => f.write_str("plaintext"),
        }
    }
}

/// One apiserver's verdict with the reasons for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiserverVerdict {
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the verdict rests on, strongest first.
    pub evidence: Vec<String>,
    /// Warnings that do not change the verdict (old data in plaintext, weak provider…).
    pub warnings: Vec<String>,
    /// Checks that could not run, and why.
    pub not_checked: Vec<String>,
}

fn describe_prefix(prefix: &str, keys: &[String]) -> String {
    let provider = prefix
        .strip_prefix("k8s:enc:")
        .map(|p| p.trim_end_matches(':'))
        .unwrap_or(prefix);
    match keys.first() {
        Some(k) => format!("{provider} key {k}"),
        None => provider.to_owned(),
    }
}

/// Decides one apiserver's verdict: the canary first (what a write does now), then the
/// flags (no config at all), then the transformations since the apiserver started.
pub fn judge(e: &ApiserverEvidence) -> ApiserverVerdict {
    let mut v = ApiserverVerdict {
        name: e.name.clone(),
        verdict: Verdict::Unknown,
        evidence: Vec::new(),
        warnings: Vec::new(),
        not_checked: Vec::new(),
    };
    for (what, checked) in [
        (
            "apiserver flags",
            e.flags.done().is_none().then_some(&e.flags).map(reason),
        ),
        (
            "health checks",
            e.health.done().is_none().then_some(&e.health).map(reason),
        ),
        (
            "metrics",
            e.metrics.done().is_none().then_some(&e.metrics).map(reason),
        ),
        (
            "canary write",
            e.canary.done().is_none().then_some(&e.canary).map(reason),
        ),
    ] {
        if let Some(why) = checked {
            v.not_checked.push(format!("{what}: {why}"));
        }
    }
    if let Some(why) = &e.addressing {
        v.not_checked
            .push(format!("each apiserver on its own: {why}"));
    }
    let mut decided: Option<Verdict> = None;

    if let Some(c) = e.canary.done() {
        if let Some(left) = &c.left_behind {
            v.warnings
                .push(format!("canary Secret left behind: {left}"));
        }
        let encrypted: Vec<&String> = c.to_storage.iter().filter(|p| !p.is_empty()).collect();
        if c.to_storage.iter().any(String::is_empty) {
            v.evidence.push("canary Secret write was stored in plaintext (to_storage with an empty prefix: identity is the first provider)".into());
            decided = Some(Verdict::Plaintext);
        } else if let [one] = encrypted.as_slice() {
            let what = describe_prefix(one, &c.keys);
            v.evidence.push(format!(
                "canary Secret write was encrypted by {what} (to_storage prefix {one})"
            ));
            decided = Some(Verdict::Encrypted(what));
        } else if encrypted.len() > 1 {
            v.warnings.push("other Secret writes during the canary: its delta names several prefixes; run the check again".into());
        } else if c.failed > 0.0 {
            v.warnings.push("the canary write's transformation failed (the encryption provider returned an error)".into());
        } else if e.metrics.done().is_some() {
            v.evidence.push("canary Secret write recorded no transformation: no --encryption-provider-config, or it does not cover secrets".into());
            decided = Some(Verdict::Plaintext);
        }
    }
    if let Some(f) = e.flags.done() {
        match &f.encryption_provider_config {
            None => {
                v.evidence.push(format!(
                    "pod {} runs kube-apiserver without --encryption-provider-config",
                    f.pod
                ));
                decided = Some(Verdict::Plaintext);
            }
            Some(path) => {
                let reload = if f.automatic_reload {
                    ", with automatic reload"
                } else {
                    ""
                };
                v.evidence.push(format!(
                    "pod {} runs kube-apiserver with --encryption-provider-config={path}{reload}",
                    f.pod
                ));
            }
        }
        if f.storage_media_type.as_deref() == Some("application/json") {
            v.warnings.push(
                "--storage-media-type=application/json: plaintext values start with '{'".into(),
            );
        }
    }
    if let Some(m) = e.metrics.done() {
        let t = &m.transformations;
        let writes = t.prefixes("to_storage");
        if decided.is_none() {
            if writes.iter().any(|(p, _)| p.is_empty()) {
                v.evidence.push("metrics: Secrets were written in plaintext since this apiserver started (to_storage with an empty prefix)".into());
                decided = Some(Verdict::Plaintext);
            } else if let Some((p, _)) = writes.iter().find(|(p, _)| p.starts_with("k8s:enc:")) {
                let what = describe_prefix(p, &t.key_names("to_storage"));
                v.evidence.push(format!(
                    "metrics: Secrets written since start were encrypted by {what}"
                ));
                decided = Some(Verdict::Encrypted(what));
            }
        }
        if let Some((_, n)) = t
            .prefixes("from_storage")
            .into_iter()
            .find(|(p, _)| *p == "identity")
        {
            v.warnings.push(format!("metrics: {n} Secret reads since start found plaintext data in etcd: rewrite every Secret (docs/at-rest.md)"));
        }
        if t.failed > 0.0 {
            v.warnings.push(format!(
                "metrics: {} Secret transformations failed since start",
                t.failed
            ));
        }
        if !t.per_resource && !t.ok.is_empty() {
            v.warnings.push("metrics have no resource label (Kubernetes before 1.32): the counts cover every encrypted resource, not only Secrets".into());
        }
        if let Some(h) = &m.config_hash {
            v.evidence
                .push(format!("metrics: loaded encryption config {h}"));
        }
        if m.reload_failures > 0.0 {
            v.warnings.push(format!("metrics: {} automatic reloads of the encryption config failed: the running config is older than the file", m.reload_failures));
        }
        for (provider, hash) in &m.kms_v2_key_id_hashes {
            v.evidence.push(format!(
                "metrics: KMS v2 plugin {provider} answers status polls (key id {hash})"
            ));
        }
    }
    if let Some(h) = e.health.done() {
        if h.kms_providers {
            v.evidence
                .push("health: kms-providers check present (KMS v2, or automatic reload)".into());
        }
        if h.kms_v1_plugins > 0 {
            v.evidence.push(format!(
                "health: {} KMS v1 plugin check(s)",
                h.kms_v1_plugins
            ));
        }
        for f in &h.failing {
            v.warnings.push(format!("health: {f} is failing"));
        }
    }
    v.verdict = decided.unwrap_or(Verdict::Unknown);
    v
}

fn reason<T>(c: &Checked<T>) -> String {
    match c {
        Checked::NotChecked(why) => why.clone(),
        Checked::Done(_) => String::new(),
    }
}

/// The cluster's verdict: plaintext if any apiserver writes plaintext, encrypted only if
/// every apiserver was seen encrypting, unknown otherwise.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterVerdict {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub apiservers: Vec<ApiserverVerdict>,
    /// Disagreements between apiservers (verdicts or config hashes).
    pub disagreements: Vec<String>,
}

pub fn judge_cluster(evidence: &[ApiserverEvidence]) -> ClusterVerdict {
    let apiservers: Vec<ApiserverVerdict> = evidence.iter().map(judge).collect();
    let mut disagreements = Vec::new();
    let verdicts: std::collections::BTreeSet<&str> =
        apiservers.iter().map(|a| a.verdict.as_str()).collect();
    if verdicts.len() > 1 {
        disagreements.push(format!(
            "apiservers disagree: {}",
            apiservers
                .iter()
                .map(|a| format!("{} {}", a.name, a.verdict))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let hashes: std::collections::BTreeSet<&String> = evidence
        .iter()
        .filter_map(|e| e.metrics.done().and_then(|m| m.config_hash.as_ref()))
        .collect();
    if hashes.len() > 1 {
        disagreements.push(format!(
            "apiservers run different encryption configs: {}",
            hashes.into_iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let verdict = if apiservers.iter().any(|a| a.verdict == Verdict::Plaintext) {
        Verdict::Plaintext
    } else if !apiservers.is_empty()
        && apiservers
            .iter()
            .all(|a| matches!(a.verdict, Verdict::Encrypted(_)))
    {
        let mut what: Vec<&str> = apiservers
            .iter()
            .filter_map(|a| match &a.verdict {
                Verdict::Encrypted(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        what.dedup();
        Verdict::Encrypted(what.join(", "))
    } else {
        Verdict::Unknown
    };
    ClusterVerdict {
        verdict,
        apiservers,
        disagreements,
    }
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
