//! `kseal status`: the cluster's keys, the controller's leader, its encryption-at-rest
//! verdict and the SealedSecrets by readiness. Each part that cannot be read says why,
//! and the rest is still shown (before the controller has published, or without every
//! permission).

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use kseal_core::recipients::PublishedRecipient;
use kseal_core::resource::SealedSecret;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::cli::{InspectFormat, StatusArgs};
use crate::cluster::Cluster;
use crate::io::out;
use kseal_core::contract::{
    AT_REST_CHECKED_ANNOTATION, AT_REST_DETAIL_ANNOTATION, AT_REST_VERDICT_ANNOTATION,
    CUSTODY_ANNOTATION, LEADER_LEASE,
};

/// What `kseal status -o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    /// Newest first; the first seals.
    keys: Vec<PublishedRecipient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys_error: Option<String>,
    leader: Leader,
    encryption_at_rest: Option<AtRest>,
    /// How the controller's leader reports the keys are held: the custodian, how many are
    /// wrapped and in plaintext, and any it could not unwrap (absent until it reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_custody: Option<String>,
    sealed_secrets: Readiness,
    /// Bitnami sealed-secrets in the cluster: absent when neither its CRD nor imported
    /// keys are there.
    #[serde(skip_serializing_if = "Option::is_none")]
    bitnami: Option<Bitnami>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bitnami {
    /// The Bitnami keys the controller imported (`--bitnami-keys-namespace`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    imported_keys: Option<ImportedKeys>,
    /// `bitnami.com` SealedSecrets by their `Synced` condition ("synced", "not synced
    /// (REASON)", "pending"); absent when the CRD is not installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_secrets: Option<Readiness>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportedKeys {
    count: usize,
    namespace: String,
    /// The controller unseals Bitnami SealedSecrets too.
    drop_in: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Leader {
    holder: Option<String>,
    renewed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The Lease exists (a controller has run in the namespace).
    #[serde(skip)]
    found: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AtRest {
    verdict: String,
    checked_at: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Readiness {
    /// `None`: every namespace.
    namespace: Option<String>,
    total: usize,
    /// "ready (Unsealed)", "not ready (NoMatchingKey)", "pending": how many of each.
    by_state: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: &StatusArgs) -> Result<()> {
    let cluster = Cluster::require(&args.cluster)?;
    let status = read(&cluster, args.namespace.as_deref());
    // Nothing could be read at all (the apiserver unreachable, or no permission for
    // anything): that is an error, as kubectl makes it, not a report of unknowns.
    if let (Some(_), Some(e), Some(_)) = (
        &status.keys_error,
        &status.leader.error,
        &status.sealed_secrets.error,
    ) {
        anyhow::bail!("{e}");
    }
    match args.output {
        InspectFormat::Json => out!("{}\n", serde_json::to_string_pretty(&status)?)?,
        InspectFormat::Text => out!("{}", text(&status, cluster.controller_namespace()))?,
    }
    // Neither the recipients ConfigMap nor the leader Lease: no controller runs in that
    // namespace (one starting up makes its Lease within seconds). The report says what
    // could be read; the exit status says that nothing was there to report on.
    if status.keys_error.is_some() && status.leader.error.is_none() && !status.leader.found {
        anyhow::bail!(
            "no kseal controller in namespace {:?}: neither its recipients ConfigMap nor its leader Lease is there; is it installed and running there? (another namespace: --controller-namespace or KSEAL_CONTROLLER_NAMESPACE)",
            cluster.controller_namespace()
        );
    }
    Ok(())
}

fn read(cluster: &Cluster, namespace: Option<&str>) -> Status {
    let (keys, keys_error, annotations) = match cluster.configmap_with_annotations() {
        Ok((doc, annotations)) => (doc.recipients, None, annotations),
        Err(e) => (Vec::new(), Some(format!("{e:#}")), BTreeMap::new()),
    };
    let leases: Api<Lease> = Api::namespaced(cluster.client(), cluster.controller_namespace());
    let leader = match cluster.runtime.block_on(leases.get_opt(LEADER_LEASE)) {
        Ok(lease) => {
            let found = lease.is_some();
            let spec = lease.and_then(|l| l.spec).unwrap_or_default();
            Leader {
                holder: spec.holder_identity.filter(|h| !h.is_empty()),
                renewed: spec.renew_time.map(|t| seconds(&t.0.to_string())),
                error: None,
                found,
            }
        }
        Err(e) => Leader {
            holder: None,
            renewed: None,
            error: Some(cluster.describe(&e)),
            found: false,
        },
    };
    let encryption_at_rest = annotations
        .get(AT_REST_VERDICT_ANNOTATION)
        .map(|verdict| AtRest {
            verdict: verdict.clone(),
            checked_at: annotations
                .get(AT_REST_CHECKED_ANNOTATION)
                .map(|t| seconds(t)),
            detail: annotations.get(AT_REST_DETAIL_ANNOTATION).cloned(),
        });
    let readiness = count_by(cluster, namespace, state).unwrap_or_else(|e| Readiness {
        namespace: namespace.map(str::to_owned),
        total: 0,
        by_state: BTreeMap::new(),
        error: Some(cluster.describe(&e)),
    });
    let bitnami = bitnami(cluster, namespace, &annotations);
    Status {
        keys,
        keys_error,
        leader,
        encryption_at_rest,
        key_custody: annotations.get(CUSTODY_ANNOTATION).cloned(),
        sealed_secrets: readiness,
        bitnami,
    }
}

/// The Bitnami keys the controller reports it imported, and the Bitnami SealedSecrets.
fn bitnami(
    cluster: &Cluster,
    namespace: Option<&str>,
    annotations: &BTreeMap<String, String>,
) -> Option<Bitnami> {
    use kseal_core::bitnami::{
        DROP_IN_ANNOTATION, IMPORTED_FROM_ANNOTATION, IMPORTED_KEYS_ANNOTATION,
        SealedSecret as BitnamiSealedSecret,
    };
    let imported_keys = annotations
        .get(IMPORTED_KEYS_ANNOTATION)
        .and_then(|n| n.parse().ok())
        .map(|count| ImportedKeys {
            count,
            namespace: annotations
                .get(IMPORTED_FROM_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            drop_in: annotations
                .get(DROP_IN_ANNOTATION)
                .is_some_and(|v| v == "true"),
        });
    let sealed_secrets = match count_by::<BitnamiSealedSecret>(cluster, namespace, synced) {
        Ok(readiness) => Some(readiness),
        // No Bitnami CRD: nothing to report.
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(e) => Some(Readiness {
            namespace: namespace.map(str::to_owned),
            total: 0,
            by_state: BTreeMap::new(),
            error: Some(cluster.describe(&e)),
        }),
    };
    (imported_keys.is_some() || sealed_secrets.is_some()).then_some(Bitnami {
        imported_keys,
        sealed_secrets,
    })
}

/// The objects of kind `K` in `namespace` (or in every one), counted by `state`.
fn count_by<K>(
    cluster: &Cluster,
    namespace: Option<&str>,
    state: impl Fn(&K) -> String,
) -> Result<Readiness, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(cluster.client(), ns),
        None => Api::all(cluster.client()),
    };
    let list = cluster.runtime.block_on(api.list(&ListParams::default()))?;
    let mut by_state = BTreeMap::new();
    for object in &list.items {
        *by_state.entry(state(object)).or_default() += 1;
    }
    Ok(Readiness {
        namespace: namespace.map(str::to_owned),
        total: list.items.len(),
        by_state,
        error: None,
    })
}

/// "synced", "not synced (REASON)", or "pending", from Bitnami's `Synced` condition
/// (written by the Bitnami controller, or by kseal's in drop-in mode).
fn synced(ss: &kseal_core::bitnami::SealedSecret) -> String {
    ss.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c["type"] == "Synced"))
        .map(|c| match c["status"].as_str() {
            Some("True") => "synced".to_owned(),
            _ => format!(
                "not synced ({})",
                c["reason"].as_str().unwrap_or("no reason")
            ),
        })
        .unwrap_or_else(|| "pending".into())
}

/// "ready (Unsealed)", "not ready (REASON)", or "pending" before the controller's first
/// word on it.
fn state(ss: &SealedSecret) -> String {
    ss.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            let ready = if c.status == "True" {
                "ready"
            } else {
                "not ready"
            };
            format!("{ready} ({})", c.reason)
        })
        .unwrap_or_else(|| "pending".into())
}

fn text(status: &Status, controller_namespace: &str) -> String {
    let mut out = String::new();
    match &status.keys_error {
        Some(e) => {
            let _ = writeln!(out, "keys: none published ({e})");
        }
        None => {
            let _ = writeln!(out, "keys (newest first, the first seals):");
        }
    }
    for r in &status.keys {
        let created = r.created.as_deref().map_or_else(|| "?".to_owned(), seconds);
        let _ = writeln!(
            out,
            "  {}  {}  created {created}",
            r.fingerprint, r.recipient
        );
    }
    let leader = &status.leader;
    let _ = match (&leader.error, &leader.holder) {
        (Some(e), _) => writeln!(out, "leader: unknown ({e})"),
        (None, Some(holder)) => writeln!(
            out,
            "leader: {holder} (renewed {})",
            leader.renewed.as_deref().unwrap_or("never")
        ),
        (None, None) => writeln!(
            out,
            "leader: none (no holder of Lease {controller_namespace}/{LEADER_LEASE})"
        ),
    };
    match &status.encryption_at_rest {
        Some(at_rest) => {
            let _ = writeln!(
                out,
                "encryption at rest: {} (checked {})",
                at_rest.verdict,
                at_rest.checked_at.as_deref().unwrap_or("?")
            );
            if let Some(detail) = &at_rest.detail {
                let _ = writeln!(out, "  {detail}");
            }
        }
        None => {
            let _ = if status.keys_error.is_some() {
                writeln!(
                    out,
                    "encryption at rest: unknown (the controller's recipients ConfigMap, where it reports, could not be read)"
                )
            } else {
                writeln!(
                    out,
                    "encryption at rest: not reported by the controller (its first check is still running, or it runs with --require-encryption-at-rest=off)"
                )
            };
        }
    }
    if let Some(custody) = &status.key_custody {
        let _ = writeln!(out, "key custody: {custody}");
    }
    readiness_line(&mut out, "sealedsecrets", &status.sealed_secrets, "");
    if let Some(bitnami) = &status.bitnami {
        if let Some(readiness) = &bitnami.sealed_secrets {
            let hint = if readiness.total > 0 {
                ": convert them with `kseal migrate`"
            } else {
                ""
            };
            readiness_line(&mut out, "bitnami sealedsecrets", readiness, hint);
        }
        if let Some(keys) = &bitnami.imported_keys {
            let _ = writeln!(
                out,
                "bitnami keys: {} imported from {}, drop-in {}",
                keys.count,
                keys.namespace,
                if keys.drop_in {
                    "on (the controller unseals them)"
                } else {
                    "off"
                }
            );
        }
    }
    out
}

/// `LABEL: TOTAL [N STATE, …]HINT`, or why it is unknown.
fn readiness_line(out: &mut String, label: &str, readiness: &Readiness, hint: &str) {
    let label = match &readiness.namespace {
        Some(ns) => format!("{label} in {ns}"),
        None => label.to_owned(),
    };
    let _ = match &readiness.error {
        Some(e) => writeln!(out, "{label}: unknown ({e})"),
        None => {
            let summary: Vec<String> = readiness
                .by_state
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            writeln!(
                out,
                "{label}: {} [{}]{hint}",
                readiness.total,
                summary.join(", ")
            )
        }
    };
}

/// An RFC 3339 time to the second, as `kseal status` prints every time (the API gives
/// them in seconds, microseconds or nanoseconds); anything else as it is.
fn seconds(time: &str) -> String {
    match time.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => time.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_times_are_to_the_second() {
        for t in [
            "2026-12-02T17:01:23Z",
            "2026-12-02T17:01:23.066136Z",
            "2026-12-02T17:01:23.145993188Z",
        ] {
            assert_eq!(seconds(t), "2026-12-02T17:01:23Z");
        }
        assert_eq!(seconds("?"), "?");
    }
}
