//! Key Secrets changed in place between their two forms: `kseal-controller custody wrap`
//! and `custody unwrap` (moving a running cluster onto custody and off it), and the
//! leader's custody upkeep: keys wrapped again when the custodian's KEK rotates, and what
//! it reports about how keys are held (the recipients ConfigMap for `kseal status`, and
//! Events on key Secrets left in plaintext or not unwrappable).
//!
//! Every change is one merge patch carrying the `resourceVersion` it was computed from:
//! a key Secret that changed meanwhile is left as it is (409), never overwritten, and the
//! controller's watch sees each key go from one form to the other in a single update
//! (the key it holds in memory is the same, so no SealedSecret loses its key).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kseal_core::contract::{
    CUSTODY_ANNOTATION, CUSTODY_MANAGER, KEY_LABEL, MANAGER, RECIPIENT_ANNOTATION,
    WRAPPED_IDENTITY_KEY,
};
use kseal_core::keys::IDENTITY_KEY;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use time::format_description::well_known::Rfc3339;

use crate::custody::Custody;
use crate::events::{self, Happened};
use crate::keys::{self, Held, KeyStore, LoadedKey, Stored};

/// Which way a key Secret is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Wrap,
    Unwrap,
}

/// `custody wrap` / `custody unwrap`: every key Secret in `namespace` (active or retired:
/// a retired key still opens what it sealed) changed to the other form, one update each.
/// Prints a line per key; fails if any key could not be changed (the others are done).
pub async fn move_keys(
    client: &Client,
    namespace: &str,
    custody: &Custody,
    direction: Direction,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = api.list(&ListParams::default().labels(KEY_LABEL)).await?;
    let mut failed = 0;
    for secret in &mut secrets.items {
        let name = secret.name_any();
        // The label's value is ignored: retired keys are moved too.
        let stored = {
            let mut active = secret.clone();
            active
                .metadata
                .labels
                .get_or_insert_default()
                .insert(KEY_LABEL.into(), keys::ACTIVE.into());
            let stored = keys::parse_key_secret(&active, None);
            keys::wipe_data(&mut active);
            stored
        };
        let version = secret.resource_version().unwrap_or_default();
        keys::wipe_data(secret);
        let outcome = match (direction, stored) {
            (_, None) => Err("not a kseal key Secret (no identity in it)".to_owned()),
            (Direction::Wrap, Some(Stored::Wrapped(_)))
            | (Direction::Unwrap, Some(Stored::Plain(_))) => Ok("already done"),
            (Direction::Wrap, Some(Stored::Plain(loaded))) => {
                wrap_in_place(&api, custody, namespace, &loaded, &version)
                    .await
                    .map(|()| "wrapped")
            }
            (Direction::Unwrap, Some(Stored::Wrapped(wrapped))) => {
                unwrap_in_place(&api, custody, namespace, &wrapped, &version)
                    .await
                    .map(|()| "unwrapped")
            }
        };
        match outcome {
            Ok(done) => println!("{name}: {done}"),
            Err(why) => {
                failed += 1;
                eprintln!("{name}: {why}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => anyhow::bail!(
            "{n} key Secret(s) in {namespace} not changed (named above); run the command again"
        ),
    }
}

/// Replaces `loaded`'s plaintext identity with the custodian's wrapping of it, if the
/// Secret is still at `version`.
async fn wrap_in_place(
    api: &Api<Secret>,
    custody: &Custody,
    namespace: &str,
    loaded: &LoadedKey,
    version: &str,
) -> Result<(), String> {
    let created = loaded.created.format(&Rfc3339).unwrap_or_default();
    let wrapped = custody
        .wrap(&loaded.key, namespace, &loaded.secret_name, &created)
        .await
        .map_err(|e| e.to_string())?;
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": version,
            "annotations": {RECIPIENT_ANNOTATION: loaded.key.recipient().to_string()},
        },
        "data": {
            IDENTITY_KEY: null,
            WRAPPED_IDENTITY_KEY: STANDARD.encode(wrapped.to_json()),
        },
    });
    patch_key(api, &loaded.secret_name, &patch).await
}

/// Replaces a wrapped identity with the identity in plaintext, if the Secret is still
/// at `version`: the way off custody, and the only place kseal writes an identity back.
async fn unwrap_in_place(
    api: &Api<Secret>,
    custody: &Custody,
    namespace: &str,
    wrapped: &keys::WrappedKey,
    version: &str,
) -> Result<(), String> {
    let (key, _) = keys::unwrap_stored(Some(custody), wrapped, namespace).await?;
    let created = wrapped.created.format(&Rfc3339).unwrap_or_default();
    let identity = key.to_identity_file(&created);
    let mut patch = serde_json::json!({
        "metadata": {"resourceVersion": version},
        "data": {
            WRAPPED_IDENTITY_KEY: null,
            IDENTITY_KEY: STANDARD.encode(identity.as_bytes()),
        },
    });
    let result = patch_key(api, &wrapped.secret_name, &patch).await;
    if let Some(serde_json::Value::String(text)) =
        patch.pointer_mut(&format!("/data/{IDENTITY_KEY}"))
    {
        zeroize::Zeroize::zeroize(text);
    }
    result
}

async fn patch_key(api: &Api<Secret>, name: &str, patch: &serde_json::Value) -> Result<(), String> {
    match api
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(patch))
        .await
    {
        Ok(mut answer) => {
            keys::wipe_data(&mut answer);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Err("changed while it was being moved (left as it is; run the command again)".into())
        }
        Err(e) => Err(format!("the API refused the update: {e}")),
    }
}

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

/// A Warning Event on each key Secret left in plaintext under custody, and on each that
/// could not be unwrapped: once per Secret and state, not at every pass.
async fn report_events(
    client: &Client,
    namespace: &str,
    keys: &KeyStore,
    custody: Option<&Custody>,
    identity: &str,
    reported: &mut BTreeSet<(String, String)>,
) {
    let Some(custody) = custody else {
        return;
    };
    let mut now = BTreeSet::new();
    for key in keys.snapshot() {
        if key.held == Held::Plaintext {
            now.insert((
                key.secret_name.clone(),
                format!(
                    "PlaintextKey|the key is stored in plaintext while {} holds the cluster's keys: kseal-controller custody wrap wraps it",
                    custody.name()
                ),
            ));
        }
    }
    for key in keys.unavailable() {
        now.insert((
            key.secret_name.clone(),
            format!(
                "KeyUnavailable|the key is under custody and could not be unwrapped: {}",
                key.why
            ),
        ));
    }
    for (name, what) in now.difference(reported) {
        let (reason, note) = what.split_once('|').unwrap_or((what, what));
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
                note: note.to_owned(),
            },
        );
        events::publish(client.clone(), event).await;
    }
    *reported = now;
}
