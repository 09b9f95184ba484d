//! The verdict drawn from the evidence: one apiserver's ([`judge`]), then the cluster's
//! ([`judge_cluster`]).

use std::fmt;

use serde::Serialize;

use crate::evidence::*;

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
