//! Key Secrets changed in place between their two forms: `kseal-controller custody wrap`
//! and `custody unwrap` (moving a running cluster onto custody and off it), and the
//! rewrapping of one key under the custodian's current KEK ([`wrap_in_place`], for the
//! [`super::upkeep`]).
//!
//! Every change is one merge patch carrying the `resourceVersion` it was computed from:
//! a key Secret that changed meanwhile is left as it is (409), never overwritten, and the
//! controller's watch sees each key go from one form to the other in a single update
//! (the key it holds in memory is the same, so no SealedSecret loses its key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::contract::{KEY_LABEL, MANAGER, RECIPIENT_ANNOTATION, WRAPPED_IDENTITY_KEY};
use kseal_core::keys::IDENTITY_KEY;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use time::format_description::well_known::Rfc3339;

use super::Custody;
use crate::keys::{self, LoadedKey, Stored};
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
pub(super) async fn wrap_in_place(
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
