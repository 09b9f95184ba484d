//! The recipients ConfigMap: the leader publishes the recipients document in it, and
//! reporters annotate it (what `kseal status` reads).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kseal_core::contract::{MANAGED_BY, MANAGER, RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};
use kseal_core::recipients::RecipientsDocument;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::store::KeyStore;

/// Sets `annotations` on the recipients ConfigMap, as field manager `manager` (each
/// reporter its own, so that none removes another's): where `kseal status` reads the
/// at-rest verdict and the imported Bitnami keys.
pub async fn annotate_recipients(
    client: &Client,
    namespace: &str,
    manager: &str,
    annotations: &BTreeMap<&str, String>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECIPIENTS_CONFIGMAP, "annotations": annotations},
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            RECIPIENTS_CONFIGMAP,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// The leader's recipients publisher: publishes the document whenever the keys change
/// (looking again every 30 s, and retrying a publish that failed), until the key watch
/// ends.
pub async fn publish_loop(
    client: Client,
    namespace: String,
    keys: Arc<KeyStore>,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    let mut last = None;
    loop {
        let doc = keys.document();
        if !doc.recipients.is_empty() && last.as_ref() != Some(&doc) {
            match publish(&client, &namespace, &doc).await {
                Ok(()) => last = Some(doc),
                Err(e) => tracing::warn!(error = %e, "could not publish recipients"),
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Publishes the recipients document in the `kseal-recipients` ConfigMap.
pub async fn publish(
    client: &Client,
    namespace: &str,
    document: &RecipientsDocument,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::to_string_pretty(document).unwrap_or_default();
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECIPIENTS_CONFIGMAP, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "data": {RECIPIENTS_KEY: body},
    });
    api.patch(
        RECIPIENTS_CONFIGMAP,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}
