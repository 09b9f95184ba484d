//! With 20% of requests failing, some throttled, watches cut, etcd compacted under the
//! apiserver (real `410 Gone`) and the apiserver restarted mid-run, every SealedSecret
//! still converges, and no Secret is ever stored with partial data: every version etcd
//! held is checked, read from an etcd watch that starts before the first write.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kseal_tests::cluster::Component;
use kseal_tests::faults::Faults;
use kube::api::ListParams;

const OBJECTS: usize = 20;
/// Sorted, as etcd's stored map is; a basic-auth Secret (`secret_yaml`'s type) needs a
/// username or a password.
const ITEMS: [&str; 3] = ["password", "token", "username"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_faults_without_partial_secrets() {
    // Without the watch cache a watch from a compacted revision reaches etcd, which
    // refuses it: the apiserver answers 410 Gone, as it does when its cache is behind.
    let options = Options {
        apiserver_flags: vec!["--watch-cache=false".into()],
        ..Options::default()
    };
    let mut cluster = Cluster::with_fault_proxy(options).await;

    // Every version of every Secret in `load` that etcd stores, as it is stored.
    let stored = Arc::new(Mutex::new(Vec::new()));
    let mut etcd = cluster.plane.etcd().await.unwrap();
    let mut watch = etcd
        .watch_prefix(b"/registry/secrets/load/", 0)
        .await
        .unwrap();
    let recorder = {
        let stored = stored.clone();
        tokio::spawn(async move {
            while let Ok(Some(events)) = watch.next().await {
                for kv in events
                    .into_iter()
                    .filter(|e| e.kind == 0)
                    .filter_map(|e| e.kv)
                {
                    stored.lock().unwrap().push(kv);
                }
            }
        })
    };

    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let mut input = String::new();
    for i in 0..OBJECTS {
        let items: Vec<(&str, String)> = ITEMS.iter().map(|k| (*k, format!("{k}-{i}"))).collect();
        let refs: Vec<(&str, &str)> = items.iter().map(|(k, v)| (*k, v.as_str())).collect();
        input.push_str(&secret_yaml("load", &format!("obj-{i}"), &refs));
        input.push_str("---\n");
    }
    cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-w", "all.yaml"],
        input.as_bytes(),
    );

    let proxy = cluster.proxy.as_ref().unwrap();
    proxy.set_faults(Faults {
        error_rate: [("*".to_string(), 0.2)].into(),
        throttle_rate: 0.05,
        drop_watches_after: Some(Duration::from_millis(1500)),
        ..Faults::default()
    });
    let cluster = Arc::new(cluster);
    let chaos = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let mut etcd = cluster.plane.etcd().await.unwrap();
            for tick in 0u64.. {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let proxy = cluster.proxy.as_ref().unwrap();
                if tick % 3 == 2 {
                    // Compact etcd to now, then cut: the watches resume from before it.
                    if let Ok(now) = etcd.revision().await {
                        // Refused when nothing was written since the last one.
                        let _ = etcd.compact(now).await;
                    }
                }
                proxy.drop_watches();
            }
        })
    };
    // The objects go in through the admin's own path (no proxy): apply until all are in.
    let applied = cluster.path("all.yaml");
    cluster
        .kubectl(&["apply", "-f", applied.to_str().unwrap()])
        .await;

    // One apiserver restart while the controller works through them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.plane.restart(Component::ApiServer).await.unwrap();

    // Cuts and compactions go on for 3 s more, and until they have happened (a cut watch,
    // a compaction's `410 Gone`), then stop; the errors 4 s more, and until more than ten
    // were injected, then stop too. How many requests the controller makes, and so how
    // many faults land, depends on how fast it converges: the phases end on counts, not on
    // a clock alone. (Under a 20% error rate for good, an object whose reconciles keep
    // failing backs off exponentially, 1 s doubling to 5 min: each reconcile makes several
    // requests, so half of them fail, and one object in twenty would take minutes.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for_within(
        "cut watches and a 410 Gone",
        Duration::from_secs(60),
        || async {
            let injected = proxy_of(&cluster).injected();
            (injected.cut_watches > 2 && injected.gone > 0).then_some(())
        },
    )
    .await;
    chaos.abort();
    // (Not longer: every second of a 20% error rate adds failures in a row, and so
    // backoff, to the convergence waited for below.)
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_for_within(
        "more than ten injected errors",
        Duration::from_secs(60),
        || async { (proxy_of(&cluster).injected().errors > 10).then_some(()) },
    )
    .await;
    let injected = proxy_of(&cluster).injected();
    proxy_of(&cluster).set_faults(Faults::default());
    let secrets = cluster.secrets("load");
    // kube's watcher backs off up to 30 s after the restart's refused connections, and an
    // object's retry may be a minute away.
    wait_for_within(
        "every Secret, complete",
        Duration::from_secs(180),
        || async {
            let list = secrets.list(&ListParams::default()).await.ok()?;
            let complete = list
                .items
                .iter()
                .filter(|s| s.data.as_ref().is_some_and(|d| d.len() == ITEMS.len()))
                .count();
            (complete == OBJECTS).then_some(())
        },
    )
    .await;
    for i in 0..OBJECTS {
        assert_eq!(
            cluster.ready("load", &format!("obj-{i}")).await,
            ("True".into(), "Unsealed".into())
        );
    }
    assert!(
        injected.errors > 10 && injected.cut_watches > 2 && injected.gone > 0,
        "faults happened: {injected:?}"
    );

    // Every Secret version etcd ever stored in namespace `load` had all its items.
    tokio::time::sleep(Duration::from_millis(500)).await;
    recorder.abort();
    let stored = stored.lock().unwrap();
    assert!(stored.len() >= OBJECTS, "{} versions stored", stored.len());
    for kv in stored.iter() {
        let key = String::from_utf8_lossy(&kv.key);
        let items = kseal_tests::stored_values::stored_secret_items(&kv.value)
            .unwrap_or_else(|| panic!("{key} is not a stored Secret"));
        assert_eq!(items, ITEMS, "a partial Secret was stored at {key}");
    }
}

fn proxy_of(cluster: &Cluster) -> &kseal_tests::faults::FaultProxy {
    cluster.proxy.as_ref().unwrap()
}

/// etcd down for a few seconds and back (same data): the apiserver reconnects, the
/// controller rides it out without a restart, and unseals what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_is_ridden_out() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "before", &[("password", "pw-etcd-1")])
        .await;
    assert_eq!(cluster.ready("shop", "before").await.1, "Unsealed");

    cluster.plane.kill(Component::Etcd);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.plane.start_again(Component::Etcd).await.unwrap();

    // kubectl retries nothing: apply until the apiserver serves again.
    let input = secret_yaml("shop", "after", &[("password", "pw-etcd-2")]);
    cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-w", "after.yaml"],
        input.as_bytes(),
    );
    let file = cluster.path("after.yaml");
    wait_for_within("the apiserver back", Duration::from_secs(60), || async {
        let api = cluster.sealed("shop");
        api.get_opt("before").await.ok().map(|_| ())
    })
    .await;
    cluster
        .kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await;
    wait_for_within(
        "the Secret after the outage",
        Duration::from_secs(90),
        || async {
            let s = cluster.secrets("shop").get_opt("after").await.ok()??;
            (s.data?.get("password")?.0 == b"pw-etcd-2").then_some(())
        },
    )
    .await;
    let (_, child, _) = cluster
        .controllers
        .iter_mut()
        .find(|(id, _, _)| id == "replica-a")
        .unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the controller did not exit"
    );
}

/// The Secret written and its status write failing (the apiserver refusing that one
/// request): the retry writes the status alone, as soon as the API takes it, and does not
/// wait out the write's settle time (30 s) to unseal and write the Secret again. Before,
/// Ready stayed unset for those 30 s after an apiserver hiccup, and Flux's health check
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_write_is_retried_alone() {
    let mut cluster = Cluster::with_fault_proxy(Options::default()).await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let status = "/apis/kseal.dev/v1alpha1/namespaces/shop/sealedsecrets/db/status";
    proxy_of(&cluster).set_faults(Faults {
        errors_on: vec![status.into()],
        ..Faults::default()
    });
    let before = proxy_of(&cluster).injected().errors;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-status")])
        .await;
    assert_eq!(
        cluster.secret_value("shop", "db", "password").await,
        "pw-status"
    );
    // Refused twice: the write after the Secret's, and a retry that wrote the status
    // alone (before, the retries waited for the Secret's write to settle, without one).
    wait_for_within(
        "two refused status writes",
        Duration::from_secs(20),
        || async { (proxy_of(&cluster).injected().errors >= before + 2).then_some(()) },
    )
    .await;
    // Refused for good, the status write backs off (1 s, 2 s, 4 s: the fourth try is 7 s
    // after the first) rather than being tried every second.
    let refused = proxy_of(&cluster).injected().errors;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tried = proxy_of(&cluster).injected().errors - refused;
    assert!(tried <= 3, "{tried} status writes in 8 s");
    proxy_of(&cluster).set_faults(Faults::default());
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );
    // Unsealed once: the retries wrote the status, not the Secret again.
    assert_eq!(
        cluster.metric("replica-a", "kseal_unseals_total"),
        Some(1.0)
    );
}
