//! `SealedSecretRequest`: verify and reseal through the Kubernetes API. The leader watches
//! requests (every namespace, or `--watch-namespaces`), answers each once in its status
//! (the same answers as `/v1/verify` and `/v1/reseal`: never plaintext), and deletes
//! requests an hour old (the CLI deletes its own at once). This path needs no
//! port-forward and no service proxy to the pod, so it works on private clusters whose API
//! server cannot reach pods.
//!
//! Bounded on every side, since anyone with the `kseal-requester` role (every namespace
//! editor) can create requests:
//! - requests are watched metadata-only, and each is read whole only while it is answered,
//!   four at a time: memory does not grow with the requests left in the cluster;
//! - each namespace is rate limited, and a request over the limit is answered at once
//!   (`RateLimited`) instead of waiting, so one namespace's flood never delays another's;
//! - the decryption itself runs in the bounded [`Crypto`] pool.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use governor::DefaultKeyedRateLimiter;
use kseal_core::reason::Reason;
use kseal_core::resource::{SealedSecretRequest, SealedSecretRequestStatus};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::crypto::Crypto;
use crate::keys::KeyStore;
use crate::services::{Answer, answer};

/// Requests are deleted after this long, answered or not (the CLI gives up after a
/// minute, and deletes its own requests as soon as it has the answer).
const KEEP: Duration = Duration::from_secs(3600);

/// How often requests older than [`KEEP`] are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

type Limiter = DefaultKeyedRateLimiter<String>;

/// Answers requests in `namespaces` (all when empty) until the task is aborted.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    keys: Arc<KeyStore>,
    crypto: Arc<Crypto>,
    per_second: u32,
    burst: u32,
) {
    let limiter: Arc<Limiter> = crate::services::limiter(per_second, burst);
    // Full objects for the sweep's metadata-only listing and for answering; an `Api` of
    // `PartialObjectMeta` for the watch, which then lists and watches metadata only.
    let apis: Vec<(
        Api<SealedSecretRequest>,
        Api<PartialObjectMeta<SealedSecretRequest>>,
    )> = crate::api_pairs(&client, &namespaces);
    let sweeps: Vec<_> = apis
        .iter()
        .map(|(api, _)| {
            let api = api.clone();
            let limiter = limiter.clone();
            async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                loop {
                    every.tick().await;
                    sweep(&api).await;
                    limiter.retain_recent();
                }
            }
        })
        .collect();
    let answering = apis.into_iter().map(|(_, meta)| {
        let (client, keys, crypto, limiter) = (
            client.clone(),
            keys.clone(),
            crypto.clone(),
            limiter.clone(),
        );
        watcher(meta, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each_concurrent(4, move |request| {
                let (client, keys, crypto, limiter) = (
                    client.clone(),
                    keys.clone(),
                    crypto.clone(),
                    limiter.clone(),
                );
                async move {
                    match request {
                        Ok(r) => handle(&client, &keys, &crypto, &limiter, r).await,
                        Err(e) => tracing::debug!(error = %e, "request watch"),
                    }
                }
            })
    });
    futures::future::join(
        futures::future::join_all(sweeps),
        futures::future::join_all(answering),
    )
    .await;
}

fn age(created: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Duration {
    created
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

/// Deletes requests older than [`KEEP`], reading metadata only, a page at a time.
async fn sweep(api: &Api<SealedSecretRequest>) {
    let mut params = ListParams::default().limit(500);
    loop {
        let page = match api.list_metadata(&params).await {
            Ok(page) => page,
            Err(e) => {
                tracing::debug!(error = %e, "listing requests to sweep");
                return;
            }
        };
        for old in page
            .items
            .iter()
            .filter(|r| age(r.creation_timestamp()) > KEEP)
        {
            let ns_api: Api<SealedSecretRequest> = Api::namespaced(
                api.clone().into_client(),
                &old.namespace().unwrap_or_default(),
            );
            let _ = ns_api
                .delete(&old.name_any(), &DeleteParams::default())
                .await;
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return,
        }
    }
}

async fn handle(
    client: &Client,
    keys: &Arc<KeyStore>,
    crypto: &Crypto,
    limiter: &Limiter,
    meta: PartialObjectMeta<SealedSecretRequest>,
) {
    let namespace = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let api: Api<SealedSecretRequest> = Api::namespaced(client.clone(), &namespace);
    if age(meta.creation_timestamp()) > KEEP {
        let _ = api.delete(&name, &DeleteParams::default()).await;
        return;
    }
    let request = match api.get_opt(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(request = %format!("{namespace}/{name}"), error = %e, "reading a request");
            return;
        }
    };
    if request.status.as_ref().is_some_and(|s| s.phase.is_some()) {
        return;
    }
    let status = if limiter.check_key(&namespace).is_err() {
        failed(
            Reason::RateLimited,
            format!("too many requests in namespace {namespace:?}; retry in a few seconds"),
        )
    } else {
        let (keys, operation, sealed) = (
            keys.clone(),
            request.spec.operation,
            request.sealed_secret(),
        );
        drop(request);
        match crypto.run(move || answer(&keys, operation, &sealed)).await {
            Answer::Verified(items) => SealedSecretRequestStatus {
                phase: Some("Succeeded".into()),
                items: Some(u32::try_from(items).unwrap_or(u32::MAX)),
                ..Default::default()
            },
            Answer::Resealed(out) => SealedSecretRequestStatus {
                phase: Some("Succeeded".into()),
                resealed: Some(out.spec),
                ..Default::default()
            },
            Answer::Refused { reason, message } => failed(reason, message),
            Answer::Unavailable(why) => failed(Reason::NoMatchingKey, why),
        }
    };
    let patch = serde_json::json!({"status": status});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(request = %format!("{namespace}/{name}"), error = %e, "could not answer a request");
    }
}

fn failed(reason: Reason, message: String) -> SealedSecretRequestStatus {
    SealedSecretRequestStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.as_str().into()),
        message: Some(message),
        ..Default::default()
    }
}
