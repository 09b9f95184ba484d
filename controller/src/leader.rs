//! The leader's work: publish the recipients whenever keys change, answer requests,
//! check encryption at rest, and run one Controller per watched namespace (or one for
//! all), for kseal's SealedSecrets and, in drop-in mode, Bitnami's.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::contract::MANAGED_BY;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::flags::{AtRestPolicy, RunArgs};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, error_policy};
use crate::{atrest, bitnami, cached, crypto, keys, owned, refused, requests};

/// What every replica holds, whether it leads or not.
pub(crate) struct Replica {
    pub keys: Arc<KeyStore>,
    pub crypto: Arc<crypto::Crypto>,
    pub metrics: Arc<Metrics>,
    /// This replica's name, for leader election and Events.
    pub identity: String,
    /// The custodian wrapping the keys, if custody is on.
    pub custody: Option<Arc<crate::custody::Custody>>,
}

/// The leader's work: publish recipients whenever keys change, answer requests, and run
/// one Controller per watched namespace (or one for all).
pub(crate) async fn lead(
    client: Client,
    kube_config: kube::Config,
    args: RunArgs,
    replica: Replica,
    keys_changed: watch::Receiver<u64>,
    bitnami_loaded: watch::Receiver<u64>,
) {
    let Replica {
        keys,
        crypto,
        metrics,
        identity,
        custody,
    } = replica;
    let publisher = tokio::spawn(keys::publish_loop(
        client.clone(),
        args.common.namespace.clone(),
        keys.clone(),
        keys_changed.clone(),
    ));
    let custody_upkeep = tokio::spawn(crate::custody::upkeep::upkeep(
        client.clone(),
        args.common.namespace.clone(),
        keys.clone(),
        custody,
        identity.clone(),
        args.custody.custody_check_interval,
        keys_changed.clone(),
    ));
    let bitnami_report = args.bitnami_keys_namespace.clone().map(|from| {
        tokio::spawn(bitnami::report(
            client.clone(),
            args.common.namespace.clone(),
            keys.clone(),
            from,
            args.bitnami_drop_in,
            bitnami_loaded.clone(),
        ))
    });
    // Encryption at rest: the first verdict is known before anything is unsealed, so
    // `enforce` never lets a first pass slip through.
    let (verdict_tx, mut verdict_rx) = watch::channel(None);
    let at_rest = (args.require_encryption_at_rest != AtRestPolicy::Off).then(|| {
        tokio::spawn(atrest::run(
            client.clone(),
            kube_config,
            args.common.namespace.clone(),
            args.at_rest_interval,
            metrics.clone(),
            identity.clone(),
            verdict_tx,
        ))
    });
    if at_rest.is_some() && verdict_rx.wait_for(Option::is_some).await.is_err() {
        return;
    }
    let apis: Vec<(Api<cached::Cached>, Api<PartialObjectMeta<Secret>>)> =
        crate::watch::api_pairs(&client, &args.watch_namespaces);
    let ctx = Arc::new(Context {
        client: client.clone(),
        keys,
        metrics,
        identity,
        failures: Default::default(),
        crypto: crypto.clone(),
        at_rest_policy: args.require_encryption_at_rest,
        at_rest: verdict_rx.clone(),
        namespace: args.common.namespace.clone(),
        namespaces: kseal_core::policy::Namespaces {
            controller: args.common.namespace.clone(),
            bitnami_keys: args.bitnami_keys_namespace.clone(),
            denied: args.deny_namespaces.clone(),
            allow_kube_system: args.allow_kube_system,
        },
        allow_template_metadata: args.allow_template_metadata.clone(),
        // One view of the Secrets kseal wrote per watched namespace (or one for all).
        owned: owned::OwnedSecrets::new(apis.len()),
        recent: Mutex::new(Default::default()),
        refused: refused::Refused::new(client.clone()),
        census: Default::default(),
    });
    let census = tokio::spawn(
        ctx.census
            .clone()
            .run(ctx.metrics.clone(), ctx.keys.clone()),
    );
    // Requests are answered once a key is loaded (right after the very first start the
    // key this leader just created may still be on its way through the key watch).
    let answering = tokio::spawn({
        let (client, keys, namespaces, metrics) = (
            client.clone(),
            ctx.keys.clone(),
            args.watch_namespaces.clone(),
            ctx.metrics.clone(),
        );
        let mut changed = keys_changed.clone();
        let (per_second, burst) = (args.rate_limit, args.rate_limit_burst);
        async move {
            if changed.wait_for(|_| keys.newest().is_some()).await.is_ok() {
                requests::run(client, namespaces, keys, crypto, metrics, per_second, burst).await;
            }
        }
    });
    let owned = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let runs = apis
        .into_iter()
        .enumerate()
        .map(|(watch, (sealed, secrets))| {
            // Everything is reconciled again when the keys change or the at-rest verdict
            // does, and every hour.
            let resync = tokio::time::interval_at(
                tokio::time::Instant::now() + reconcile::RESYNC,
                reconcile::RESYNC,
            );
            let trigger = futures::stream::select(
                futures::stream::select(
                    tokio_stream::wrappers::WatchStream::new(keys_changed.clone()).map(|_| ()),
                    tokio_stream::wrappers::IntervalStream::new(resync).map(|_| ()),
                ),
                tokio_stream::wrappers::WatchStream::new(verdict_rx.clone())
                    .map(|v| v.map(|v| v.as_str()))
                    .scan(None, |last, now| {
                        let changed = *last != Some(now);
                        *last = Some(now);
                        futures::future::ready(Some(changed))
                    })
                    .filter(|changed| futures::future::ready(*changed))
                    .map(|_| ()),
            );
            crate::watch::unsealing_controller(
                refused::Kind::Kseal,
                sealed,
                // The watch has read the resourceVersion; the cache does not need it.
                |ss: &mut cached::Cached| ss.metadata.resource_version = None,
                (secrets, owned.clone(), Some(watch)),
                trigger,
                args.concurrency,
                reconcile::reconcile,
                error_policy,
                ctx.clone(),
            )
        });
    // Drop-in: Bitnami SealedSecrets too, once the Bitnami keys are loaded (a first pass
    // without them would mark every one failed).
    let bitnami_runs = args.bitnami_drop_in.then(|| {
        let ctx = ctx.clone();
        let owned = owned.clone();
        let namespaces = args.watch_namespaces.clone();
        let client = client.clone();
        let mut loaded = bitnami_loaded.clone();
        async move {
            if loaded.wait_for(|generation| *generation > 0).await.is_err() {
                return;
            }
            let apis: Vec<(
                Api<kseal_core::bitnami::SealedSecret>,
                Api<PartialObjectMeta<Secret>>,
            )> = crate::watch::api_pairs(&client, &namespaces);
            let runs = apis.into_iter().map(|(sealed, secrets)| {
                crate::watch::unsealing_controller(
                    refused::Kind::Bitnami,
                    sealed,
                    |ss: &mut kseal_core::bitnami::SealedSecret| ss.managed_fields_mut().clear(),
                    (secrets, owned.clone(), None),
                    tokio_stream::wrappers::WatchStream::new(bitnami_loaded.clone()).map(|_| ()),
                    args.concurrency,
                    bitnami::reconcile,
                    bitnami::error_policy,
                    ctx.clone(),
                )
            });
            futures::future::join_all(runs).await;
        }
    });
    match bitnami_runs {
        Some(drop_in) => {
            futures::future::join(futures::future::join_all(runs), drop_in).await;
        }
        None => {
            futures::future::join_all(runs).await;
        }
    }
    census.abort();
    ctx.metrics.clear_census();
    publisher.abort();
    custody_upkeep.abort();
    answering.abort();
    if let Some(task) = bitnami_report {
        task.abort();
    }
    if let Some(task) = at_rest {
        task.abort();
    }
}
