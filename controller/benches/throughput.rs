//! Controller throughput and memory, against a real kube-apiserver (and etcd) started by
//! `kseal_tests::cluster`, a fresh one per round:
//! - N SealedSecrets (1,000 and 10,000) created at once → time until every Secret exists,
//!   beside the apiserver's raw Secret-create rate from a plain kube-rs client measured
//!   in the same run (target: the controller at ≥ 0.5× that rate);
//! - controller RSS with 10,000 SealedSecrets, then with 50,000 unrelated Secrets added
//!   (target: ≤ 64 MiB and no growth from the unrelated Secrets).
//!
//! Run: `cargo bench -p kseal-controller --bench throughput`. Prints its figures.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{CONCURRENCY, create_all, wait_count};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kseal_core::recipients::{RecipientSet, parse_cert};
use kseal_core::resource::SealedSecret;
use kseal_tests::cluster::{ControlPlane, Options};
use kube::api::{Api, PostParams};

fn plain_secret(i: usize, labelled: bool) -> Secret {
    let mut s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s-{i:05}")},
        "data": {"password": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk=", "username": "YWRtaW4="},
    }))
    .unwrap();
    if labelled {
        s.metadata.labels = Some([("app".to_string(), "raw".to_string())].into());
    }
    s
}

async fn round(n: usize, noise: bool) {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let admin = plane.client(&plane.admin).await.unwrap();
    for ns in ["raw", "bench", "noise", "kseal-system"] {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.into());
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/crd.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let crd_api = Api::<CustomResourceDefinition>::all(admin.clone());
    for crd in &crds {
        crd_api.create(&PostParams::default(), crd).await.unwrap();
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap();
        let established = kube::runtime::conditions::is_crd_established();
        kube::runtime::wait::await_condition(crd_api.clone(), &name, established)
            .await
            .unwrap();
    }

    eprintln!("    [{n}] CRD installed");
    // The server's own write rate, from a plain client, in this run.
    let raw: Api<Secret> = Api::namespaced(admin.clone(), "raw");
    let started = Instant::now();
    create_all(&raw, (0..n).map(|i| plain_secret(i, true)).collect()).await;
    let raw_rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("    [{n}] raw creates done");

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "kseal-system")
        .unwrap();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--log-level",
            "warn",
            "--identity",
            "bench",
        ])
        .args([
            "--listen-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "kseal-system");
    let started = Instant::now();
    let doc = loop {
        if let Ok(Some(cm)) = cms.get_opt("kseal-recipients").await {
            break cm.data.unwrap()["recipients.json"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "controller did not publish recipients"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("    [{n}] recipients published");
    let recipients = RecipientSet::new(parse_cert(&doc).unwrap()).unwrap();
    let sealed = common::sealed_objects(&recipients, "bench", n);

    let api: Api<SealedSecret> = Api::namespaced(admin.clone(), "bench");
    let started = Instant::now();
    let creating = tokio::spawn(async move { create_all(&api, sealed).await });
    let unsealed: Api<Secret> = Api::namespaced(admin.clone(), "bench");
    let (_, have) = wait_count(&unsealed, n, Duration::from_secs(1200)).await;
    assert_eq!(have, n, "only {have} of {n} Secrets after 1200 s");
    let elapsed = started.elapsed();
    creating.await.unwrap();
    let rate = n as f64 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = common::rss_kib(controller.id());
    println!(
        "  {n:>6} SealedSecrets: every Secret after {:.2} s = {:.0}/s; apiserver raw create rate {:.0}/s; ratio {:.2}x; controller RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        rate,
        raw_rate,
        rate / raw_rate,
        rss as f64 / 1024.0
    );
    if noise {
        let unrelated: Api<Secret> = Api::namespaced(admin.clone(), "noise");
        create_all(
            &unrelated,
            (0..50_000).map(|i| plain_secret(i, false)).collect(),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = common::rss_kib(controller.id());
        println!(
            "  + 50000 unrelated Secrets: controller RSS {:.1} MiB (was {:.1} MiB, change {:+.1} MiB)",
            after as f64 / 1024.0,
            rss as f64 / 1024.0,
            (after as f64 - rss as f64) / 1024.0
        );
    }
    let _ = controller.kill();
    let _ = controller.wait();
}

#[tokio::main]
async fn main() {
    println!(
        "kseal-controller throughput (release; real kube-apiserver and etcd on this machine; {CONCURRENCY} concurrent creates)"
    );
    round(1_000, false).await;
    round(10_000, true).await;
}
