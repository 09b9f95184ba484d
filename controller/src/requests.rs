//! `SealedSecretRequest`: verify and reseal through the Kubernetes API. The leader watches
//! requests in every namespace, answers each once in its status (the same answers as
//! `/v1/verify` and `/v1/reseal`: never plaintext), and deletes answered requests an hour
//! later. Requests are rate limited per namespace, like the HTTP services per client.
//! This path needs no port-forward and no service proxy to the pod, so it works on
//! private clusters whose API server cannot reach pods.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota};
use kseal_core::resource::{SealedSecretRequest, SealedSecretRequestStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::keys::KeyStore;
use crate::services::{Answer, answer};

/// Answered requests are deleted after this long (the CLI deletes its own at once).
const KEEP_ANSWERED: Duration = Duration::from_secs(3600);

/// Answers requests until the task is aborted.
pub async fn run(client: Client, keys: Arc<KeyStore>, per_second: u32, burst: u32) {
    let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
    let limiter: Arc<DefaultKeyedRateLimiter<String>> =
        Arc::new(DefaultKeyedRateLimiter::keyed(quota));
    let api: Api<SealedSecretRequest> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .for_each_concurrent(4, |request| {
            let (client, keys, limiter) = (client.clone(), keys.clone(), limiter.clone());
            async move {
                match request {
                    Ok(r) => handle(&client, &keys, &limiter, r).await,
                    Err(e) => tracing::debug!(error = %e, "request watch"),
                }
            }
        })
        .await;
}

async fn handle(
    client: &Client,
    keys: &KeyStore,
    limiter: &DefaultKeyedRateLimiter<String>,
    request: SealedSecretRequest,
) {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let api: Api<SealedSecretRequest> = Api::namespaced(client.clone(), &namespace);
    if request.status.as_ref().is_some_and(|s| s.phase.is_some()) {
        let age = request
            .creation_timestamp()
            .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        if age > KEEP_ANSWERED {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
        return;
    }
    limiter.until_key_ready(&namespace).await;
    let sealed = request.sealed_secret();
    // Right after the first start no key may be loaded yet: wait a little for one.
    let mut result = answer(keys, request.spec.operation, &sealed);
    for _ in 0..30 {
        if !matches!(result, Answer::Unavailable(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        result = answer(keys, request.spec.operation, &sealed);
    }
    let status = match result {
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
        Answer::Refused { reason, message } => SealedSecretRequestStatus {
            phase: Some("Failed".into()),
            reason: Some(reason.into()),
            message: Some(message),
            ..Default::default()
        },
        Answer::Unavailable(why) => SealedSecretRequestStatus {
            phase: Some("Failed".into()),
            reason: Some("NoMatchingKey".into()),
            message: Some(why),
            ..Default::default()
        },
    };
    let patch = serde_json::json!({"status": status});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(request = %format!("{namespace}/{name}"), error = %e, "could not answer a request");
    }
}
