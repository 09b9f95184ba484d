//! The controller's encryption-at-rest policy. The leader runs the API-only checks
//! (kube-apiserver flags, health, metrics, a canary Secret in its own namespace) at start
//! and every `--at-rest-interval`, and reports the verdict as a metric, an Event on the
//! recipients ConfigMap and annotations on it (read by `kseal status`). Under
//! `--require-encryption-at-rest=enforce`, a plaintext verdict stops unsealing until a
//! check finds Secrets encrypted.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kseal_atrest::probe::{ProbeOptions, probe};
use kseal_atrest::verdict::{ClusterVerdict, Verdict, judge_cluster};
use kube::{Client, Config};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::events::{self, Happened};
use crate::flags::AtRestPolicy;
use crate::metrics::Metrics;

use kseal_core::contract::{
    AT_REST_CHECKED_ANNOTATION, AT_REST_DETAIL_ANNOTATION, AT_REST_MANAGER,
    AT_REST_VERDICT_ANNOTATION, RECIPIENTS_CONFIGMAP,
};

/// The verdict unsealing goes by: the one just reached, except that `unknown` does not
/// lift an earlier `plaintext`. A check that could not run (an apiserver restarting
/// before its RBAC caches fill, a permission taken away) says nothing new about storage.
pub fn gating(last: Option<&Verdict>, reached: &Verdict) -> Verdict {
    match (last, reached) {
        (Some(Verdict::Plaintext), Verdict::Unknown) => Verdict::Plaintext,
        _ => reached.clone(),
    }
}

/// Whether this verdict stops unsealing under this policy.
pub fn blocks(policy: AtRestPolicy, verdict: Option<&Verdict>) -> bool {
    policy == AtRestPolicy::Enforce && verdict == Some(&Verdict::Plaintext)
}

/// One line summing up a verdict: each apiserver's strongest evidence, and every check
/// that could not run with the reason (a missing permission is named there).
pub fn summary(v: &ClusterVerdict) -> String {
    let mut parts: Vec<String> = v
        .apiservers
        .iter()
        .map(|a| {
            let mut line = format!("{}: {}", a.name, a.verdict);
            if let Some(why) = a.evidence.first() {
                line.push_str(&format!(" ({why})"));
            }
            if !a.not_checked.is_empty() {
                line.push_str(&format!("; not checked: {}", a.not_checked.join("; ")));
            }
            line
        })
        .collect();
    parts.extend(v.disagreements.iter().cloned());
    parts.join("; ")
}

/// Runs the checks until aborted, sending each verdict.
pub async fn run(
    client: Client,
    config: Config,
    namespace: String,
    interval: Duration,
    metrics: std::sync::Arc<Metrics>,
    identity: String,
    verdicts: watch::Sender<Option<Verdict>>,
) {
    let options = ProbeOptions {
        canary_namespace: Some(namespace.clone()),
    };
    let mut last: Option<Verdict> = None;
    loop {
        let evidence = probe(&config, &options).await;
        let verdict = judge_cluster(&evidence);
        let summary = summary(&verdict);
        metrics.at_rest(verdict.verdict.as_str());
        let changed = last.as_ref() != Some(&verdict.verdict);
        match &verdict.verdict {
            Verdict::Plaintext => {
                tracing::warn!(verdict = %verdict.verdict, evidence = %summary, "Secrets are stored in plaintext")
            }
            Verdict::Unknown => {
                tracing::info!(verdict = %verdict.verdict, evidence = %summary, "encryption at rest could not be established")
            }
            Verdict::Encrypted(_) => {
                tracing::info!(verdict = %verdict.verdict, evidence = %summary, "Secrets are stored encrypted")
            }
        }
        if let Err(e) = annotate(&client, &namespace, &verdict.verdict, &summary).await {
            tracing::warn!(error = %e, "could not record the at-rest verdict on the recipients ConfigMap");
        }
        if changed {
            event(&client, &namespace, &identity, &verdict.verdict, &summary).await;
            last = Some(verdict.verdict.clone());
        }
        let gate = gating(verdicts.borrow().as_ref(), &verdict.verdict);
        let _ = verdicts.send(Some(gate));
        tokio::time::sleep(interval).await;
    }
}

async fn annotate(
    client: &Client,
    namespace: &str,
    verdict: &Verdict,
    summary: &str,
) -> Result<(), kube::Error> {
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let annotations = BTreeMap::from([
        (AT_REST_VERDICT_ANNOTATION, verdict.to_string()),
        (AT_REST_DETAIL_ANNOTATION, truncate(summary, 4096)),
        (AT_REST_CHECKED_ANNOTATION, now),
    ]);
    crate::keys::annotate_recipients(client, namespace, AT_REST_MANAGER, &annotations).await
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn event(client: &Client, namespace: &str, identity: &str, verdict: &Verdict, summary: &str) {
    let (warning, reason) = match verdict {
        Verdict::Plaintext => (true, "EncryptionAtRestNotConfigured"),
        Verdict::Unknown => (true, "EncryptionAtRestUnknown"),
        Verdict::Encrypted(_) => (false, "EncryptionAtRestConfigured"),
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(RECIPIENTS_CONFIGMAP.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    };
    let happened = Happened {
        action: "CheckEncryptionAtRest",
        reason,
        warning,
        note: truncate(&format!("{verdict}: {summary}"), 1024),
    };
    events::publish(client.clone(), events::event(regarding, identity, happened)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_verdict_lifts_plaintext() {
        let encrypted = Verdict::Encrypted("kms:v2:vault".into());
        let plaintext = Some(&Verdict::Plaintext);
        assert_eq!(gating(plaintext, &Verdict::Unknown), Verdict::Plaintext);
        assert_eq!(gating(plaintext, &encrypted), encrypted);
        // With nothing known before, or after encrypted, unknown is what was reached:
        // it does not block (a managed control plane gives no evidence either way).
        assert_eq!(gating(None, &Verdict::Unknown), Verdict::Unknown);
        assert_eq!(
            gating(Some(&encrypted), &Verdict::Unknown),
            Verdict::Unknown
        );
        assert!(!blocks(AtRestPolicy::Enforce, Some(&Verdict::Unknown)));
        assert!(blocks(AtRestPolicy::Enforce, Some(&Verdict::Plaintext)));
        assert!(!blocks(AtRestPolicy::Warn, Some(&Verdict::Plaintext)));
    }
}
