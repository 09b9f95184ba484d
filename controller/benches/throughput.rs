//! Controller throughput and memory, against the test API server in the same process:
//! - N SealedSecrets (1,000 and 10,000) created at once → time until every Secret exists,
//!   beside the server's raw Secret-create rate from a plain client measured in the same
//!   run (target: the controller at ≥ 0.5× that rate);
//! - controller RSS with 10,000 SealedSecrets, then with 50,000 unrelated Secrets added
//!   (target: ≤ 64 MiB and no growth from the unrelated Secrets).
//!
//! Run: `cargo bench -p kseal-controller --bench throughput`. Prints its figures.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kseal_core::manifest::SecretInput;
use kseal_core::recipients::{RecipientSet, parse_cert};
use kseal_core::resource::SealedSecret;
use kseal_core::scope::Scope;
use kseal_core::sealing::seal_secret;
use kseal_tests::apiserver::{Config, TestServer};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use zeroize::Zeroizing;

const CONCURRENCY: usize = 32;

async fn client(server: &TestServer) -> kube::Client {
    let kubeconfig =
        Kubeconfig::from_yaml(&server.kubeconfig(&server.admin_token, "default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn create_all<
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
>(
    api: &Api<K>,
    objects: Vec<K>,
) {
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

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

fn rss_kib(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn wait_count(
    server: &TestServer,
    plural: &str,
    ns: &str,
    n: usize,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while server.count_in(plural, ns) < n {
        assert!(
            started.elapsed() < limit,
            "only {} of {n} {plural} after {limit:?}",
            server.count_in(plural, ns)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn round(n: usize, noise: bool) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TestServer::start(Config {
        history_limit: 1_000_000,
        ..Config::default()
    })
    .await
    .unwrap();
    let admin = client(&server).await;
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/crd.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    for crd in &crds {
        Api::<CustomResourceDefinition>::all(admin.clone())
            .create(&PostParams::default(), crd)
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
    server
        .write_kubeconfig(&kubeconfig, &server.admin_token, "kseal-system")
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
    let sealed: Vec<SealedSecret> = (0..n)
        .map(|i| {
            let mut input = SecretInput {
                name: Some(format!("ss-{i:05}")),
                namespace: Some("bench".into()),
                ..SecretInput::default()
            };
            input.data.insert(
                "password".into(),
                Zeroizing::new(format!("value-{i}").into_bytes()),
            );
            input
                .data
                .insert("username".into(), Zeroizing::new(b"admin".to_vec()));
            seal_secret(&input, Scope::Strict, &recipients).unwrap()
        })
        .collect();

    let api: Api<SealedSecret> = Api::namespaced(admin.clone(), "bench");
    let started = Instant::now();
    let creating = tokio::spawn(async move { create_all(&api, sealed).await });
    wait_count(&server, "secrets", "bench", n, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    creating.await.unwrap();
    let rate = n as f64 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(&controller);
    println!(
        "  {n:>6} SealedSecrets: every Secret after {:.2} s = {:.0}/s; server raw create rate {:.0}/s; ratio {:.2}x; controller RSS {:.1} MiB",
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
        let after = rss_kib(&controller);
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
        "kseal-controller throughput (release; test API server in-process; {CONCURRENCY} concurrent creates)"
    );
    round(1_000, false).await;
    round(10_000, true).await;
}
