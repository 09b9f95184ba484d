//! A kube-rs `Controller` (the runtime kseal-controller is built on) converges against a
//! real kube-apiserver, through the fault proxy: cut watches, real 410s after etcd
//! compactions (the watch cache is off, so a resumed watch reaches etcd) and a 20% error
//! rate on every verb while sources change: once the outage ends, every source object ends
//! with an owned, up-to-date child, deleted children are recreated, and updates propagate.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kseal_tests::cluster::{ControlPlane, Options};
use kseal_tests::faults::{FaultProxy, Faults};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

struct Ctx {
    secrets: Api<Secret>,
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let name = format!("{}-out", cm.name_any());
    let mut secret = Secret {
        string_data: cm.data.clone(),
        ..Default::default()
    };
    secret.metadata.name = Some(name.clone());
    secret.metadata.owner_references = cm.controller_owner_ref(&()).map(|o| vec![o]);
    ctx.secrets
        .patch(
            &name,
            &PatchParams::apply("fault-test").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

fn source(i: usize, value: &str) -> ConfigMap {
    let mut cm = ConfigMap {
        data: Some(BTreeMap::from([("value".to_string(), value.to_string())])),
        ..Default::default()
    };
    cm.metadata.name = Some(format!("src-{i}"));
    cm.metadata.labels = Some(BTreeMap::from([("app".to_string(), "src".to_string())]));
    cm
}

/// Retries a write until the injected faults let it through.
async fn until_ok<F, Fut, T>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    loop {
        if let Ok(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many sources have a child with their current value and an owner reference.
async fn converged(cms: &Api<ConfigMap>, secrets: &Api<Secret>) -> Option<(usize, usize)> {
    let sources = cms
        .list(&ListParams::default().labels("app=src"))
        .await
        .ok()?;
    let children = secrets.list(&ListParams::default()).await.ok()?;
    let ok = sources
        .items
        .iter()
        .filter(|cm| {
            let want = cm
                .data
                .as_ref()
                .and_then(|d| d.get("value"))
                .cloned()
                .unwrap_or_default();
            children.items.iter().any(|s| {
                s.metadata.name.as_deref() == Some(&format!("{}-out", cm.name_any()))
                    && s.data
                        .as_ref()
                        .and_then(|d| d.get("value"))
                        .map(|v| v.0.clone())
                        == Some(want.clone().into_bytes())
                    && s.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == cm.meta().uid.as_ref())
            })
        })
        .count();
    Some((ok, sources.items.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_through_faults() {
    let plane = ControlPlane::start(Options {
        apiserver_flags: vec!["--watch-cache=false".into()],
        ..Options::default()
    })
    .await
    .unwrap();
    let proxy = FaultProxy::start(&plane).await.unwrap();
    let token = plane.admin_token().await.unwrap();
    let client = through(&proxy, &plane, &token).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for i in 0..20 {
        cms.create(&PostParams::default(), &source(i, "v1"))
            .await
            .unwrap();
    }

    // Watches are cut first, with nothing else failing: the Controller's watchers open
    // watches at once, and two are cut within a second. (With the errors on from the
    // start, one shared backoff of kube's Controller, up to 30 s after each error, could
    // keep every watcher from opening a watch for minutes: seen once in ten runs.)
    proxy.set_faults(Faults {
        drop_watches_after: Some(Duration::from_millis(400)),
        ..Faults::default()
    });
    let ctx = Arc::new(Ctx {
        secrets: secrets.clone(),
    });
    let controller = tokio::spawn(
        Controller::new(cms.clone(), watcher::Config::default().labels("app=src"))
            .owns(secrets.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );
    let cutting = Instant::now();
    while proxy.injected().cut_watches < 2 {
        assert!(
            cutting.elapsed() < Duration::from_secs(60),
            "no two watches were cut in 60 s with no other fault: {:?}",
            proxy.injected()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set_faults(Faults {
        error_rate: [("*".to_string(), 0.2)].into(),
        drop_watches_after: Some(Duration::from_millis(400)),
        ..Faults::default()
    });
    let proxy = Arc::new(proxy);
    let mut etcd = plane.etcd().await.unwrap();
    let gone = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for tick in 0u64.. {
                tokio::time::sleep(Duration::from_millis(350)).await;
                if tick % 2 == 1 {
                    // Refused when nothing was written since the last one.
                    let now = etcd.revision().await.unwrap();
                    let _ = etcd.compact(now).await;
                }
                proxy.drop_watches();
            }
        })
    };

    // Changes while the faults run: new sources, updated sources, deleted children.
    let pp = PostParams::default();
    for i in 20..30 {
        let obj = source(i, "v1");
        until_ok(|| cms.create(&pp, &obj)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let patch = Patch::Merge(serde_json::json!({"data": {"value": "v2"}}));
    let params = PatchParams::default();
    for i in 0..10 {
        let name = format!("src-{i}");
        until_ok(|| cms.patch(&name, &params, &patch)).await;
    }
    for i in 20..25 {
        let name = format!("src-{i}-out");
        loop {
            match secrets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    // Cuts, 410s and the 20% error rate go on for 3 s after the last change, then the
    // outage ends and the Controller must converge. (With errors going on, each of them
    // holds every watcher for up to 30 s of kube's shared backoff, and convergence took
    // longer than 90 s once in ten stressed runs: that measures the backoff's tail.)
    // The outage lasts until it has done what the test means by one too: at least ten
    // injected errors and one 410 (the errors are a 20% draw, and in 3 s there were once
    // only nine). Meanwhile the test reads the sources through the proxy, as another
    // client of the apiserver would: the errors are drawn from its requests too, since
    // with every watcher in kube's backoff and nothing left to reconcile the Controller
    // makes few requests (a stressed census run once drew nine errors in 60 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage = Instant::now();
    let sources = ListParams::default().labels("app=src");
    while !(proxy.injected().errors >= 10 && proxy.injected().gone >= 1) {
        assert!(
            outage.elapsed() < Duration::from_secs(60),
            "too few faults in 60 s more: {:?}",
            proxy.injected()
        );
        let _ = cms.list(&sources).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gone.abort();
    proxy.set_faults(Faults::default());
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some((ok, total)) = converged(&cms, &secrets).await {
            last = Some((ok, total));
            if ok == 30 && total == 30 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not converged after 90 s: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gone.abort();
    controller.abort();
    let injected = proxy.injected();
    assert!(
        injected.errors >= 10 && injected.cut_watches >= 2 && injected.gone >= 1,
        "faults really happened: {injected:?}"
    );
}
