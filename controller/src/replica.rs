//! What every replica runs, leader or standby: the HTTP endpoints, the key watches
//! (every replica holds every key, so a new leader unseals at once), and the leader
//! election that starts and stops the [`crate::leader`]'s work.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kseal_core::contract::{LEADER_LEASE, MANAGER};
use kube::Client;
use kube::api::Api;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::flags::{self, RunArgs};
use crate::keys::{self, KeyStore};
use crate::metrics::Metrics;
use crate::{crypto, http};

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
    let kube_config = flags::kube_config(&args.common).await?;
    let client = Client::try_from(kube_config.clone())?;
    let cutoff = cutoff(&args)?;
    let custody = crate::custody::Custody::from_args(&args.custody, &client)?;
    let keys = Arc::new(KeyStore::default());
    let metrics = Arc::new(Metrics::default());
    metrics
        .rotation_period
        .set(i64::try_from(args.key_rotation_period.as_secs()).unwrap_or(i64::MAX));
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
            limiter: crate::answer::Limiter::new(args.rate_limit, args.rate_limit_burst),
            crypto: crypto.clone(),
            services: args.http_services,
            custody: custody.as_ref().map(|c| c.name()),
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
        custody.clone(),
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
                custody.as_deref(),
            )
            .await
            {
                tracing::warn!(error = %e, "could not create a key");
            }
            if controller_task.is_none() {
                tracing::info!(%identity, "became the leader");
                controller_task = Some(tokio::spawn(crate::leader::lead(
                    client.clone(),
                    kube_config.clone(),
                    args.clone(),
                    crate::leader::Replica {
                        keys: keys.clone(),
                        crypto: crypto.clone(),
                        metrics: metrics.clone(),
                        identity: identity.clone(),
                        custody: custody.clone(),
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
