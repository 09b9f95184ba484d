//! Drop-in mode (`--bitnami-drop-in`, with `--bitnami-keys-namespace`): the controller
//! also unseals Bitnami sealed-secrets (`bitnami.com/v1alpha1`) with the Bitnami keys it
//! imported, so a cluster can switch controllers first and convert its repository later.
//!
//! It writes the Secret the Bitnami controller would (same data, type, labels and
//! annotations, the owner reference to the same SealedSecret, plus kseal's
//! `app.kubernetes.io/managed-by` label) with the same server-side apply as kseal's own
//! SealedSecrets. A Secret the Bitnami controller made is owned by that SealedSecret, so it
//! is taken over in place: no gap, no delete. The status gets Bitnami's `Synced` condition,
//! which `kubectl get sealedsecrets.bitnami.com` and Argo CD's health check read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kseal_core::bitnami::{self, BitnamiStatus, SealedSecret};
use kseal_core::policy;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use kseal_core::contract::{MERGE_INTO, TAKE_OVER};

use crate::failure::Error;
use crate::reconcile::{Context, desired_secret, ownership, release, write_secret};
use crate::refused::Kind;

pub async fn reconcile(ss: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    if crate::reconcile::being_deleted(&ss.metadata) {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = apply(&ss, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(()) => {
            ctx.metrics.unseals.inc();
            ctx.failures.forget(&failure_key(&ss));
            ctx.refused.forget(
                Kind::Bitnami,
                &ss.namespace().unwrap_or_default(),
                &ss.name_any(),
            );
            set_status(&ss, &ctx, None).await?;
            Ok(Action::requeue(Duration::from_secs(3600)))
        }
        Err(e) => {
            ctx.metrics.failure(e.reason());
            if let Error::SecretNotOwned(name, found) = e {
                let namespace = ss.namespace().unwrap_or_default();
                ctx.refused
                    .watch(Kind::Bitnami, &namespace, name, (**found).clone());
            }
            if !matches!(e, Error::Kube(_)) {
                tracing::warn!(sealedsecret = %location(&ss), kind = "bitnami", reason = %e.reason(), error = %e, "cannot unseal");
                set_status(&ss, &ctx, Some(e)).await?;
            }
            Err(result.err().unwrap_or(Error::NoKeys))
        }
    }
}

/// The same backoff as kseal's own SealedSecrets ([`crate::failure::Failures::backoff`]): a Bitnami object
/// that cannot be unsealed costs its decryptions once a minute at first, then ever less
/// often, up to once an hour (a new Bitnami key, or a change to it, reconciles it at once).
pub fn error_policy(ss: Arc<SealedSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.failures.backoff(failure_key(&ss), error.permanent()))
}

/// Its entry among the failures kseal's own SealedSecrets count too.
fn failure_key(ss: &SealedSecret) -> String {
    format!("bitnami.com/{}", location(ss))
}

fn location(ss: &SealedSecret) -> String {
    format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any())
}

async fn apply(ss: &Arc<SealedSecret>, ctx: &Context) -> Result<(), Error> {
    if crate::atrest::blocks(ctx.at_rest_policy, ctx.at_rest.borrow().as_ref()) {
        return Err(Error::EncryptionAtRestNotConfigured);
    }
    let namespace = ss.namespace().ok_or(Error::NoNamespace)?;
    ctx.namespaces.check(&namespace)?;
    let (template, _) = bitnami::template_of(ss).map_err(Error::Bitnami)?;
    policy::check_template(Some(&template), &ctx.allow_template_metadata)?;
    let keys = ctx.keys.bitnami();
    if keys.is_empty() {
        return Err(Error::NoKeys);
    }
    let sealed = ss.clone();
    let unsealed = ctx
        .crypto
        .run(move || bitnami::unseal(&sealed, &keys))
        .await
        .map_err(Error::Bitnami)?;
    let name = ss.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = ss.uid().unwrap_or_default();
    let (patch_mode, existing) = ownership(&secrets, &name, &uid, TAKE_OVER, MERGE_INTO).await?;
    let owner = (!unsealed.skip_owner)
        .then(|| ss.controller_owner_ref(&()))
        .flatten();
    let owned_by_us = owner.is_some();
    let secret = desired_secret(
        &name,
        &namespace,
        &unsealed.template,
        &unsealed.items,
        patch_mode,
        owner,
    );
    drop(unsealed);
    write_secret(&secrets, &name, secret, &ctx.metrics).await?;
    // A template that asks for no owner (the hand-over's skip-set-owner-references) on a
    // Secret the Bitnami controller made owned: the owner reference goes, as the Bitnami
    // controller would have removed it, so that pruning this object leaves the Secret.
    if !owned_by_us && existing.is_some_and(|found| found.owners.contains(&uid)) {
        release(&secrets, &name, &uid).await?;
    }
    Ok(())
}

/// Writes Bitnami's `Synced` condition when it changes (or the generation does).
async fn set_status(ss: &SealedSecret, ctx: &Context, error: Option<&Error>) -> Result<(), Error> {
    let status = if error.is_none() { "True" } else { "False" };
    let message = error.map(ToString::to_string).unwrap_or_default();
    let existing = ss.status.as_ref();
    let current = existing
        .and_then(|s| s.conditions.iter().find(|c| c["type"] == "Synced"))
        .cloned();
    let same = existing.and_then(|s| s.observed_generation) == ss.metadata.generation
        && current.as_ref().is_some_and(|c| {
            c["status"] == status && c["message"].as_str().unwrap_or_default() == message
        });
    if same {
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let transition = match &current {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut condition = json!({
        "type": "Synced",
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
    });
    if let Some(e) = error {
        condition["reason"] = json!(e.reason());
        condition["message"] = json!(message);
    }
    let new = BitnamiStatus {
        observed_generation: ss.metadata.generation,
        conditions: vec![condition],
    };
    let api: Api<SealedSecret> =
        Api::namespaced(ctx.client.clone(), &ss.namespace().unwrap_or_default());
    api.patch_status(
        &ss.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": new })),
    )
    .await?;
    Ok(())
}

/// Records on the recipients ConfigMap, for `kseal status`, how many Bitnami keys are
/// imported (from `from`) and whether the drop-in mode is on, each time the keys load.
pub async fn report(
    client: kube::Client,
    namespace: String,
    keys: Arc<crate::keys::KeyStore>,
    from: String,
    drop_in: bool,
    mut loaded: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        if *loaded.borrow_and_update() > 0 {
            let annotations = std::collections::BTreeMap::from([
                (
                    bitnami::IMPORTED_KEYS_ANNOTATION,
                    keys.bitnami().len().to_string(),
                ),
                (bitnami::IMPORTED_FROM_ANNOTATION, from.clone()),
                (bitnami::DROP_IN_ANNOTATION, drop_in.to_string()),
            ]);
            let written = crate::keys::annotate_recipients(
                &client,
                &namespace,
                "kseal-controller-bitnami",
                &annotations,
            )
            .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record the imported Bitnami keys on the recipients ConfigMap");
            }
        }
        if loaded.changed().await.is_err() {
            return;
        }
    }
}
