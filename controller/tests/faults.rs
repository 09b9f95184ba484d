//! With 20% of requests failing, watches cut and 410s forced, every SealedSecret still
//! converges, and no Secret is ever written with partial data (checked against every
//! state the API server stored).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kseal_tests::apiserver::Faults;
use kube::api::ListParams;

const OBJECTS: usize = 20;
const ITEMS: [&str; 3] = ["alpha", "bravo", "charlie"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_faults_without_partial_secrets() {
    let mut cluster = Cluster::new().await;
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

    cluster.server.set_faults(Faults {
        error_rate: [("*".to_string(), 0.2)].into(),
        drop_watches_after: Some(Duration::from_millis(500)),
        ..Faults::default()
    });
    let cluster = Arc::new(cluster);
    let chaos = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            for tick in 0u64.. {
                tokio::time::sleep(Duration::from_millis(700)).await;
                if tick % 3 == 2 {
                    cluster.server.force_gone();
                } else {
                    cluster.server.drop_watches();
                }
            }
        })
    };
    // kubectl retries nothing: apply until every object is in (faults hit it too).
    for _ in 0..50 {
        let path = cluster.path("all.yaml");
        let out = tokio::task::spawn_blocking({
            let admin = cluster.path("admin");
            let cache = cluster.path("cache");
            move || {
                std::process::Command::new("kubectl")
                    .args(["apply", "-f", path.to_str().unwrap()])
                    .env("KUBECONFIG", admin)
                    .env("KUBECACHEDIR", cache)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        if out.status.success() {
            break;
        }
    }

    // Cuts and 410s go on for 3 s after the objects are in, then stop; the 20% error rate
    // stays until every Secret is complete.
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos.abort();
    let secrets = cluster.secrets("load");
    wait_for("every Secret, complete", || async {
        let list = secrets.list(&ListParams::default()).await.ok()?;
        let complete = list
            .items
            .iter()
            .filter(|s| s.data.as_ref().is_some_and(|d| d.len() == ITEMS.len()))
            .count();
        (complete == OBJECTS).then_some(())
    })
    .await;
    chaos.abort();
    cluster.server.set_faults(Faults::default());
    for i in 0..OBJECTS {
        assert_eq!(
            cluster.ready("load", &format!("obj-{i}")).await,
            ("True".into(), "Unsealed".into())
        );
    }
    let (errors, dropped, forced) = cluster.server.faults_injected();
    assert!(
        errors > 10 && dropped + forced > 2,
        "faults happened: {errors} errors, {dropped} cut, {forced} forced 410s"
    );

    // Every Secret state ever stored in namespace `load` had all its items.
    let states = cluster.server.written_states("secrets");
    let load: Vec<_> = states
        .iter()
        .filter(|s| s["metadata"]["namespace"] == "load")
        .collect();
    assert!(load.len() >= OBJECTS);
    for state in load {
        let data = state["data"].as_object().map(|d| d.len()).unwrap_or(0);
        assert_eq!(
            data,
            ITEMS.len(),
            "a partial Secret was written: {}",
            state["metadata"]["name"]
        );
    }
}
