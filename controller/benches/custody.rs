//! What key custody costs, against a real kube-apiserver and the harness's KMS v2 plugin:
//! - start-up to ready (every key loaded: `kseal_keys` = 20, `/readyz` 200) with 20 key
//!   Secrets in plaintext, and with 20 wrapped (each unwrapped through the plugin), in
//!   alternating rounds on one control plane; the ratio of the medians;
//! - unsealing throughput once keys are unwrapped: N SealedSecrets created at once, time
//!   until every Secret exists, with the plaintext keys and with the wrapped ones, in the
//!   first three rounds of each.
//!
//! Run: `cargo bench -p kseal-controller --bench custody` (`-- N` sets the SealedSecrets
//! per throughput round, default 500).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use common::{CONCURRENCY, create_all, kseal_objects, metric, start_kseal_with, wait_count};
use k8s_openapi::api::core::v1::Secret;
use kseal_controller::custody::Custody;
use kseal_controller::flags::Cli;
use kseal_controller::keys;
use kseal_core::keys::Key;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use time::OffsetDateTime;

const KEYS: usize = 20;
const ROUNDS: usize = 9;
/// Rounds (of the first ones) that also measure unsealing throughput.
const THROUGHPUT_ROUNDS: usize = 3;

/// Writes 20 key Secrets, each made a minute apart, wrapped by `custody` or in plaintext.
async fn write_keys(api: &Api<Secret>, custody: Option<&Custody>) {
    let start = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    for i in 0..KEYS {
        let created = start + Duration::from_secs(60 * i as u64);
        let name = format!("kseal-key-bench-{i:02}");
        let key = Key::generate();
        let secret = match custody {
            Some(custody) => {
                keys::wrapped_key_secret(&key, &name, "kseal-system", created, custody)
                    .await
                    .unwrap()
            }
            None => keys::key_secret(&key, &name, "kseal-system", created),
        };
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
}

async fn delete_keys(api: &Api<Secret>) {
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("kseal.dev/key"),
    )
    .await
    .unwrap();
    // The next controller publishes its own keys' recipients, which the next round seals to.
    let _ = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        api.clone().into_client(),
        "kseal-system",
    )
    .delete("kseal-recipients", &DeleteParams::default())
    .await;
}

/// Starts the controller and times it until it holds every key and is ready.
fn time_to_ready(
    plane: &kseal_tests::cluster::ControlPlane,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Duration, std::process::Child, u16) {
    let metrics = kseal_tests::ports::free_port().unwrap();
    let started = Instant::now();
    let child = start_kseal_with(plane, dir, metrics, extra);
    while metric(metrics, "kseal_keys ") < KEYS as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "keys not loaded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (started.elapsed(), child, metrics)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let objects: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let namespaces: Vec<String> = (0..THROUGHPUT_ROUNDS)
        .flat_map(|r| [format!("load-plain-{r}"), format!("load-custody-{r}")])
        .collect();
    let mut all: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    all.push("kseal-system");
    let (plane, admin) = common::plane(&all, "").await;
    let socket = plane.start_kms_plugin().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custody_flags = [
        "--custody",
        "kms-v2",
        "--custody-kms-socket",
        socket.to_str().unwrap(),
    ];
    let cli = Cli::parse_from(["kseal-controller"].into_iter().chain(custody_flags));
    let custody = Custody::from_args(&cli.run.custody, &admin)
        .unwrap()
        .unwrap();
    let api: Api<Secret> = Api::namespaced(admin.clone(), "kseal-system");

    let (mut plain, mut wrapped) = (Vec::new(), Vec::new());
    let mut throughput = Vec::new();
    for round in 0..ROUNDS {
        for with_custody in [false, true] {
            write_keys(&api, with_custody.then_some(&*custody)).await;
            let extra: &[&str] = if with_custody { &custody_flags } else { &[] };
            let (took, mut child, _) = time_to_ready(&plane, dir.path(), extra);
            if with_custody {
                wrapped.push(took);
            } else {
                plain.push(took);
            }
            if round < THROUGHPUT_ROUNDS {
                // Unsealing once the keys are in memory: the same work either way (each
                // configuration in a namespace of its own).
                let namespace = &format!(
                    "load-{}-{round}",
                    if with_custody { "custody" } else { "plain" }
                );
                let sealed = kseal_objects(&admin, namespace, objects).await;
                let started = Instant::now();
                create_all(&Api::namespaced(admin.clone(), namespace), sealed).await;
                let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
                let (_, n) = wait_count(&secrets, objects, Duration::from_secs(600)).await;
                assert_eq!(n, objects);
                let took = started.elapsed();
                throughput.push((with_custody, objects as f64 / took.as_secs_f64()));
            }
            let _ = child.kill();
            let _ = child.wait();
            delete_keys(&api).await;
        }
    }
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "rounds (ms): plaintext [{}], under custody [{}]",
        ms(&plain),
        ms(&wrapped)
    );
    let (plain, wrapped) = (median(plain), median(wrapped));
    println!(
        "start-up to ready with {KEYS} keys (median of {ROUNDS}, concurrency {CONCURRENCY}): plaintext {:.0} ms, under custody (KMS v2 plugin) {:.0} ms: {:.2}x",
        plain.as_secs_f64() * 1e3,
        wrapped.as_secs_f64() * 1e3,
        wrapped.as_secs_f64() / plain.as_secs_f64()
    );
    for with_custody in [false, true] {
        let rates: Vec<f64> = throughput
            .iter()
            .filter(|(c, _)| *c == with_custody)
            .map(|(_, r)| *r)
            .collect();
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        println!(
            "unsealing {objects} SealedSecrets, keys {}: {mean:.0} objects/s (rounds: {})",
            if with_custody {
                "under custody (unwrapped)"
            } else {
                "in plaintext"
            },
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
