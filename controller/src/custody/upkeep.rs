//! The leader's custody upkeep: keys wrapped again when the custodian's KEK rotates, and
//! what it reports about how keys are held (the recipients ConfigMap for `kseal status`,
//! and Events on key Secrets left in plaintext or not unwrappable).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kseal_core::contract::{CUSTODY_ANNOTATION, CUSTODY_MANAGER};
use kube::Client;
use kube::api::Api;

use super::Custody;
use super::moves::wrap_in_place;
use crate::events::{self, Happened};
use crate::keys::{self, Held, KeyStore};

/// The leader's custody upkeep, until the key watch ends: whenever the keys change and
/// every `interval`, wraps again every key whose KEK is not the custodian's current one
/// (a KEK rotation: the key in memory is wrapped afresh, so nothing is unwrapped and no
/// SealedSecret waits), and reports how the keys are held.
pub async fn upkeep(
    client: Client,
    namespace: String,
    keys: Arc<KeyStore>,
    custody: Option<Arc<Custody>>,
    identity: String,
    interval: Duration,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut reported = BTreeSet::new();
    let mut last_summary = None;
    loop {
        let current_kek = match &custody {
            Some(custody) => match custody.current_kek().await {
                Ok(kek) => Some(kek),
                Err(e) => {
                    tracing::warn!(error = %e, "the custodian's current KEK is not known");
                    None
                }
            },
            None => None,
        };
        if let (Some(custody), Some(kek)) = (&custody, &current_kek) {
            for key in keys.snapshot() {
                if let Held::Wrapped {
                    kek: under,
                    version,
                } = &key.held
                    && under != kek
                {
                    match wrap_in_place(&api, custody, &namespace, &key, version).await {
                        Ok(()) => {
                            tracing::info!(secret = %key.secret_name, from = %under, to = %kek, "wrapped again under the custodian's new KEK")
                        }
                        Err(why) => {
                            tracing::warn!(secret = %key.secret_name, error = %why, "could not wrap a key again under the new KEK")
                        }
                    }
                }
            }
        }
        let summary = summary(&keys, custody.as_deref());
        if last_summary.as_ref() != Some(&summary) {
            let annotations = BTreeMap::from([(CUSTODY_ANNOTATION, summary.clone())]);
            match keys::annotate_recipients(&client, &namespace, CUSTODY_MANAGER, &annotations)
                .await
            {
                Ok(()) => last_summary = Some(summary),
                Err(e) => tracing::warn!(error = %e, "could not report key custody"),
            }
        }
        report_events(
            &client,
            &namespace,
            &keys,
            custody.as_deref(),
            &identity,
            &mut reported,
        )
        .await;
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One line on how the keys are held: `kms-v2 plugin at …: 3 wrapped, 1 plaintext
/// (kseal-key-…)`, and any key that could not be unwrapped with why.
pub fn summary(keys: &KeyStore, custody: Option<&Custody>) -> String {
    let loaded = keys.snapshot();
    let plaintext: Vec<&str> = loaded
        .iter()
        .filter(|k| k.held == Held::Plaintext)
        .map(|k| k.secret_name.as_str())
        .collect();
    let wrapped = loaded.len() - plaintext.len();
    let unavailable = keys.unavailable();
    let mut line = match custody {
        Some(custody) => format!("{}: {wrapped} wrapped", custody.name()),
        None => format!("none: {wrapped} wrapped"),
    };
    line += &format!(", {} plaintext", plaintext.len());
    if custody.is_some() && !plaintext.is_empty() {
        line += &format!(
            " ({}; kseal-controller custody wrap wraps them)",
            plaintext.join(", ")
        );
    }
    if let Some(why) = keys.unavailable_reason() {
        line += &format!(", {} not unwrapped: {why}", unavailable.len());
    }
    line
}

/// The Events sent: (key Secret, reason, note).
type Reported = BTreeSet<(String, &'static str, String)>;

/// A Warning Event on each key Secret left in plaintext under custody, and on each that
/// could not be unwrapped: once per Secret and state, not at every pass.
async fn report_events(
    client: &Client,
    namespace: &str,
    keys: &KeyStore,
    custody: Option<&Custody>,
    identity: &str,
    reported: &mut Reported,
) {
    let Some(custody) = custody else {
        return;
    };
    let mut now = BTreeSet::new();
    for key in keys.snapshot() {
        if key.held == Held::Plaintext {
            now.insert((
                key.secret_name.clone(),
                "PlaintextKey",
                format!(
                    "the key is stored in plaintext while {} holds the cluster's keys: kseal-controller custody wrap wraps it",
                    custody.name()
                ),
            ));
        }
    }
    for key in keys.unavailable() {
        now.insert((
            key.secret_name.clone(),
            "KeyUnavailable",
            format!(
                "the key is under custody and could not be unwrapped: {}",
                key.why
            ),
        ));
    }
    for (name, reason, note) in now.difference(reported) {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        };
        let event = events::event(
            regarding,
            identity,
            Happened {
                action: "Custody",
                reason,
                warning: true,
                note: note.clone(),
            },
        );
        events::publish(client.clone(), event).await;
    }
    *reported = now;
}
