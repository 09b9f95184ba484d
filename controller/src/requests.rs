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
//! - each namespace is rate limited by the items it asks about, and a request over the
//!   limit is answered at once (`RateLimited`) instead of waiting, so one namespace's
//!   flood never delays another's;
//! - a request holds at most `MAX_ITEMS` items, and one whose answer could not be stored
//!   in its status is refused (`TooMuchWork`), both before any decryption; an answer the
//!   API refuses anyway is replaced by a short `Failed` one, so no request waits for an
//!   hour;
//! - a migration answers for the request's own namespace only: RBAC on requests decides
//!   who may move which namespace's Bitnami values;
//! - the decryption itself runs in the requests' share of the bounded [`Crypto`] pool.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kseal_core::reason::Reason;
use kseal_core::resource::{RequestOperation, SealedSecretRequest, SealedSecretRequestStatus};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::answer::{Answer, answer};
use crate::crypto::Crypto;
use crate::keys::KeyStore;

/// Requests are deleted after this long, answered or not (the CLI gives up after a
/// minute, and deletes its own requests as soon as it has the answer).
const KEEP: Duration = Duration::from_secs(3600);

/// How often requests older than [`KEEP`] are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

type Limiter = crate::answer::Limiter<String>;

/// The most a request's spec and its answer may take together, in JSON: etcd stores an
/// object of at most 1.5 MiB, and the rest is left for metadata and managed fields.
const MAX_STORED_BYTES: usize = 1024 * 1024;

/// What an item's answer may add to its sealed value, in base64: a kseal envelope line,
/// and a stanza for the newest key (a post-quantum one is ten times a classic one).
const ENVELOPE_GROWTH_BYTES: usize = 1024;
const PQ_STANZA_BYTES: usize = 2200;
const X25519_STANZA_BYTES: usize = 200;

/// Answers requests in `namespaces` (all when empty) until the task is aborted.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    keys: Arc<KeyStore>,
    crypto: Arc<Crypto>,
    metrics: Arc<crate::metrics::Metrics>,
    per_second: u32,
    burst: u32,
) {
    let limiter: Arc<Limiter> = crate::answer::Limiter::new(per_second, burst);
    // Full objects for the sweep's metadata-only listing and for answering; an `Api` of
    // `PartialObjectMeta` for the watch, which then lists and watches metadata only.
    let apis: Vec<(
        Api<SealedSecretRequest>,
        Api<PartialObjectMeta<SealedSecretRequest>>,
    )> = crate::watch::api_pairs(&client, &namespaces);
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
        let (client, keys, crypto, limiter, metrics) = (
            client.clone(),
            keys.clone(),
            crypto.clone(),
            limiter.clone(),
            metrics.clone(),
        );
        watcher(meta, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each_concurrent(4, move |request| {
                let (client, keys, crypto, limiter, metrics) = (
                    client.clone(),
                    keys.clone(),
                    crypto.clone(),
                    limiter.clone(),
                    metrics.clone(),
                );
                async move {
                    match request {
                        Ok(r) => handle(&client, &keys, &crypto, &limiter, &metrics, r).await,
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
    metrics: &crate::metrics::Metrics,
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
    let items = request.spec.sealed_secret.encrypted_data.len();
    let pq = keys.newest().is_some_and(|k| k.key.is_pq());
    let status = if let Err((reason, message)) = admissible(&request, &namespace, pq) {
        failed(reason, message)
    } else if !limiter.charge(&namespace, items) {
        metrics.count_rate_limited("request");
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
        match crypto
            .run_request(move || answer(&keys, operation, &sealed))
            .await
        {
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
    let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    else {
        return;
    };
    tracing::warn!(request = %format!("{namespace}/{name}"), error = %e, "could not answer a request");
    // An answer the API would not store (too large after all, or refused): say so in
    // a few bytes rather than leave the requester waiting until the sweep.
    if matches!(&e, kube::Error::Api(s) if s.code != 404 && s.code != 409) {
        let short = failed(
            Reason::TooMuchWork,
            "the answer could not be stored in the request's status: ask about fewer items at once"
                .into(),
        );
        let patch = serde_json::json!({"status": short});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}

/// Refuses, before any decryption, a request over [`kseal_core::limits`]' item bound, a
/// migration for another namespace, and a request whose answer its status could not hold
/// (`pq`: the newest key is post-quantum, whose stanzas are larger).
fn admissible(
    request: &SealedSecretRequest,
    namespace: &str,
    pq: bool,
) -> Result<(), (Reason, String)> {
    let spec = &request.spec;
    kseal_core::limits::check_items(spec.sealed_secret.encrypted_data.len())
        .map_err(|e| (Reason::TooMuchWork, e.to_string()))?;
    if spec.operation == RequestOperation::Migrate && spec.target.namespace != namespace {
        return Err((
            Reason::ForbiddenNamespace,
            format!(
                "a migration answers for the request's own namespace: create it in {:?}, not {namespace:?}",
                spec.target.namespace
            ),
        ));
    }
    if spec.operation != RequestOperation::Verify {
        let asked = serde_json::to_vec(spec).map_or(usize::MAX, |v| v.len());
        let answer = spec
            .sealed_secret
            .encrypted_data
            .iter()
            .map(|(k, v)| {
                let stanza = if pq {
                    PQ_STANZA_BYTES
                } else {
                    X25519_STANZA_BYTES
                };
                k.len() + v.len() + ENVELOPE_GROWTH_BYTES + stanza
            })
            .fold(0usize, usize::saturating_add);
        let stored = asked.saturating_add(answer);
        if stored > MAX_STORED_BYTES {
            return Err((
                Reason::TooMuchWork,
                format!(
                    "the answer could take {} KiB beside the request's {} KiB, more than a request can hold ({} KiB): ask about fewer items at once",
                    answer / 1024,
                    asked / 1024,
                    MAX_STORED_BYTES / 1024
                ),
            ));
        }
    }
    Ok(())
}

fn failed(reason: Reason, message: String) -> SealedSecretRequestStatus {
    SealedSecretRequestStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.as_str().into()),
        message: Some(message),
        ..Default::default()
    }
}
