//! kseal-controller: unseals SealedSecrets into Secrets, owns and rotates the cluster's
//! keys, publishes their recipients, serves health and metrics. `main.rs` parses flags and
//! calls [`run`]; the parts live in [`keys`], [`reconcile`], [`http`], [`metrics`] and
//! [`atrest`] (the encryption-at-rest policy).

pub mod atrest;
pub mod bitnami;
pub mod cached;
pub mod config;
pub mod crypto;
pub mod events;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod owned;
pub mod reconcile;
pub mod refused;
pub mod requests;
pub mod services;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::config::{AtRestPolicy, CommonArgs, RunArgs};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use kseal_core::contract::{LEADER_LEASE, MANAGED_BY, MANAGER};

/// A kube client from `--kubeconfig`, else the usual in-cluster or `KUBECONFIG` lookup.
pub async fn client(args: &CommonArgs) -> anyhow::Result<Client> {
    Ok(Client::try_from(kube_config(args).await?)?)
}

/// The client configuration (the at-rest probe pins one client per apiserver from it).
pub async fn kube_config(args: &CommonArgs) -> anyhow::Result<kube::Config> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &args.kubeconfig {
        Some(path) => {
            // kube's message names the file and repeats its cause: one line instead.
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| match e {
                kube::config::KubeconfigError::ReadConfig(io, _) => {
                    anyhow::anyhow!("kubeconfig {}: {io}", path.display())
                }
                other => anyhow::anyhow!("kubeconfig {}: {other}", path.display()),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("finding cluster credentials")?,
    };
    Ok(config)
}

fn cutoff(args: &RunArgs) -> anyhow::Result<Option<OffsetDateTime>> {
    args.key_cutoff
        .as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339)
                .with_context(|| format!("--key-cutoff {t:?} is not an RFC 3339 time"))
        })
        .transpose()
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let listeners = http::bind(args.listen_addr, args.metrics_addr).await?;
    let kube_config = kube_config(&args.common).await?;
    let client = Client::try_from(kube_config.clone())?;
    let cutoff = cutoff(&args)?;
    let keys = Arc::new(KeyStore::default());
    let metrics = Arc::new(Metrics::default());
    let crypto = Arc::new(crypto::Crypto::default());
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| format!("kseal-{}", std::process::id()))
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let mut http = tokio::spawn(http::serve(
        listeners,
        http::HttpState {
            keys: keys.clone(),
            metrics: metrics.clone(),
            limiter: services::Limiter::new(args.rate_limit, args.rate_limit_burst),
            crypto: crypto.clone(),
            services: args.http_services,
        },
        stop_rx.clone(),
    ));

    // Keys: every replica (the standby too) watches the key Secrets and rebuilds its
    // keyring whenever the watch's view changes, the initial list included.
    let (keys_changed_tx, keys_changed_rx) = watch::channel(0u64);
    tokio::spawn(keys::watch(
        Api::namespaced(client.clone(), &args.common.namespace),
        keys.clone(),
        metrics.clone(),
        cutoff,
        keys_changed_tx,
    ));

    // Bitnami keys (opt-in): watched by every replica too.
    let (bitnami_loaded_tx, bitnami_loaded) = watch::channel(0u64);
    if let Some(namespace) = &args.bitnami_keys_namespace {
        tokio::spawn(keys::watch_bitnami(
            Api::namespaced(client.clone(), namespace),
            keys.clone(),
            bitnami_loaded_tx,
        ));
    }

    // Leader election: only the leader creates keys, publishes recipients and reconciles.
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEADER_LEASE)
        .with_namespace(&args.common.namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration.as_secs().max(2))
        .with_grace((args.lease_duration.as_secs() / 3).max(1))
        .with_field_manager(MANAGER)
        .build()
        .await
        .context("setting up leader election")?;
    let (mut leader_rx, lease_task) = lease.watch().await;
    let mut stop = stop_rx.clone();
    let mut keys_loaded = keys_changed_rx.clone();
    let mut controller_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut maintenance = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            // The endpoints are part of the controller: if they stop, so does it.
            served = &mut http => {
                if let Some(task) = controller_task.take() {
                    task.abort();
                }
                return match served {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped")),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("serving HTTP")),
                    Err(e) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                };
            }
            changed = leader_rx.changed() => {
                if changed.is_err() { break; }
            }
            _ = maintenance.tick() => {}
        }
        let leading = *leader_rx.borrow_and_update();
        metrics.leader.set(i64::from(leading));
        if leading {
            // Decide about a new key only once the existing ones are loaded, or a restart
            // could rotate early.
            if keys_loaded
                .wait_for(|generation| *generation > 0)
                .await
                .is_err()
            {
                break;
            }
            if let Err(e) = keys::ensure_fresh_key(
                &client,
                &args.common.namespace,
                &keys,
                args.key_rotation_period,
                args.key_type,
            )
            .await
            {
                tracing::warn!(error = %e, "could not create a key");
            }
            if controller_task.is_none() {
                tracing::info!(%identity, "became the leader");
                controller_task = Some(tokio::spawn(controllers(
                    client.clone(),
                    kube_config.clone(),
                    args.clone(),
                    Replica {
                        keys: keys.clone(),
                        crypto: crypto.clone(),
                        metrics: metrics.clone(),
                        identity: identity.clone(),
                    },
                    keys_changed_rx.clone(),
                    bitnami_loaded.clone(),
                )));
            }
        } else if let Some(task) = controller_task.take() {
            tracing::info!(%identity, "lost the leadership");
            task.abort();
        }
    }
    if let Some(task) = controller_task.take() {
        task.abort();
    }
    drop(leader_rx);
    let _ = lease_task.await;
    let _ = http.await;
    Ok(())
}

/// What every replica holds, whether it leads or not.
struct Replica {
    keys: Arc<KeyStore>,
    crypto: Arc<crypto::Crypto>,
    metrics: Arc<Metrics>,
    /// This replica's name, for leader election and Events.
    identity: String,
}

/// The leader's work: publish recipients whenever keys change, answer requests, and run
/// one Controller per watched namespace (or one for all).
async fn controllers(
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
    } = replica;
    let publisher = {
        let client = client.clone();
        let keys = keys.clone();
        let namespace = args.common.namespace.clone();
        let mut changed = keys_changed.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let doc = keys.document();
                if !doc.recipients.is_empty() && last.as_ref() != Some(&doc) {
                    match keys::publish(&client, &namespace, &doc).await {
                        Ok(()) => last = Some(doc),
                        Err(e) => tracing::warn!(error = %e, "could not publish recipients"),
                    }
                }
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        })
    };
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
        api_pairs(&client, &args.watch_namespaces);
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
    });
    // Requests are answered once a key is loaded (right after the very first start the
    // key this leader just created may still be on its way through the key watch).
    let answering = tokio::spawn({
        let (client, keys, namespaces) = (
            client.clone(),
            ctx.keys.clone(),
            args.watch_namespaces.clone(),
        );
        let mut changed = keys_changed.clone();
        let (per_second, burst) = (args.rate_limit, args.rate_limit_burst);
        async move {
            if changed.wait_for(|_| keys.newest().is_some()).await.is_ok() {
                requests::run(client, namespaces, keys, crypto, per_second, burst).await;
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
            unsealing_controller(
                refused::Kind::Kseal,
                sealed,
                // The watch has read the resourceVersion; the cache does not need it.
                |ss: &mut cached::Cached| ss.metadata.resource_version = None,
                (secrets, owned.clone(), Some(watch)),
                trigger,
                args.concurrency,
                reconcile,
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
            )> = api_pairs(&client, &namespaces);
            let runs = apis.into_iter().map(|(sealed, secrets)| {
                unsealing_controller(
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
    publisher.abort();
    answering.abort();
    if let Some(task) = bitnami_report {
        task.abort();
    }
    if let Some(task) = at_rest {
        task.abort();
    }
}

/// One pair of APIs per namespace in `namespaces`, or one pair for all namespaces when it
/// is empty.
pub(crate) fn api_pairs<A, B>(client: &Client, namespaces: &[String]) -> Vec<(Api<A>, Api<B>)>
where
    A: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    A::DynamicType: Default,
    B: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    B::DynamicType: Default,
{
    if namespaces.is_empty() {
        return vec![(Api::all(client.clone()), Api::all(client.clone()))];
    }
    namespaces
        .iter()
        .map(|ns| {
            (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            )
        })
        .collect()
}

/// How a Controller watches the Secrets it owns: their API, the label filter, and the
/// number of its view in `Context::owned` to record them in (kseal's own SealedSecrets),
/// if any.
type OwnedWatch = (
    Api<PartialObjectMeta<Secret>>,
    watcher::Config,
    Option<usize>,
);

/// A Controller unsealing the objects of `sealed` (kseal's SealedSecrets, or Bitnami's
/// in drop-in mode) into the Secrets it owns, reconciling everything again on `trigger`.
///
/// `compact` shrinks each object before it is cached (at least: managedFields dropped),
/// so memory grows with what the reconciler reads. Owned Secrets are watched
/// metadata-only and label-filtered (`owned`), so memory does not grow with other
/// Secrets; with a view number, each is recorded there as an [`owned::Owned`].
#[allow(clippy::too_many_arguments)]
fn unsealing_controller<K, Fut>(
    kind: refused::Kind,
    sealed: Api<K>,
    compact: impl Fn(&mut K) + Send + Sync + 'static,
    (secrets, owned, view): OwnedWatch,
    trigger: impl futures::Stream<Item = ()> + Send + Sync + 'static,
    concurrency: u16,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    error_policy: impl Fn(Arc<K>, &reconcile::Error, Arc<Context>) -> kube::runtime::controller::Action,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action, Error = reconcile::Error>
        + Send
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let refused = ctx.refused.clone();
    let sealed_stream = watcher(sealed, watcher::Config::default())
        .default_backoff()
        .modify(compact)
        .reflect(writer)
        .inspect_ok(move |event| {
            // A deleted SealedSecret's refused Secret is of no more interest.
            if let watcher::Event::Delete(ss) = event {
                refused.forget(kind, &ss.namespace().unwrap_or_default(), &ss.name_any());
            }
        })
        .applied_objects();
    let owned_events = watcher(secrets, owned).default_backoff();
    let owned_stream = match view {
        Some(view) => {
            let ctx = ctx.clone();
            owned_events
                .inspect_ok(move |event| {
                    ctx.owned.record(view, event);
                    // Deleted: whatever kseal wrote last is gone, so a reconcile of its
                    // owner stops waiting for that write to show and writes it again.
                    // (Any other change still waits: until the status echoes too, it
                    // cannot tell an edit from its own write on its way.)
                    if let watcher::Event::Delete(s) = event {
                        for owner in s.metadata.owner_references.iter().flatten() {
                            ctx.settled(&owner.uid);
                        }
                    }
                })
                .touched_objects()
                .boxed()
        }
        None => owned_events.touched_objects().boxed(),
    };
    Controller::for_stream(sealed_stream, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_stream(owned_stream)
        .reconcile_on(ctx.refused.changes(kind))
        .reconcile_all_on(trigger)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
}
