//! What the controller benchmarks share: starting kseal-controller, creating objects all
//! at once, counting Secrets, reading a process's memory, CPU time and metrics.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kseal_core::recipients::RecipientSet;
use kseal_core::recipients::parse_cert;
use kseal_core::resource::SealedSecret;
use kseal_tests::cluster::{ControlPlane, Options};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

/// Creates in flight at once.
pub const CONCURRENCY: usize = 32;

/// What can be created through an `Api` and sent between tasks.
pub trait Object:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Object for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Creates `objects`, [`CONCURRENCY`] at a time.
pub async fn create_all<K: Object>(api: &Api<K>, objects: Vec<K>) {
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

/// How many Secrets `api` holds: a one-item page and the apiserver's remaining count.
pub async fn count(api: &Api<Secret>) -> usize {
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(page) => page.items.len() + page.metadata.remaining_item_count.unwrap_or(0) as usize,
        Err(_) => 0,
    }
}

/// Waits until `api` holds `n` Secrets, or `limit` passes: (elapsed, how many).
pub async fn wait_count(api: &Api<Secret>, n: usize, limit: Duration) -> (Duration, usize) {
    let started = Instant::now();
    loop {
        let have = count(api).await;
        if have >= n || started.elapsed() >= limit {
            return (started.elapsed(), have);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The part of a process's resident memory that is its binary and libraries mapped from
/// files (`RssFile`), in KiB: the rest is its heap and stacks.
pub fn file_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "RssFile:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `n` strict SealedSecrets `ss-00000`… in `namespace`, each with two items (`password`
/// different in each, `username`), sealed to `recipients`.
pub fn sealed_objects(recipients: &RecipientSet, namespace: &str, n: usize) -> Vec<SealedSecret> {
    (0..n)
        .map(|i| {
            let password = format!("value-{i}");
            kseal_tests::sealing::sealed(
                namespace,
                &format!("ss-{i:05}"),
                &[("password", &password), ("username", "admin")],
                recipients,
            )
        })
        .collect()
}

/// An unrelated two-item Secret `s-<i>`.
pub fn plain_secret(i: usize) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s-{i:05}")},
        "data": {"password": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk=", "username": "YWRtaW4="},
    }))
    .unwrap()
}

/// User + system CPU seconds of a process (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks as f64 / 100.0
}

/// A counter from a Prometheus endpoint on 127.0.0.1 (0 when absent or unreachable).
pub fn metric(port: u16, name: &str) -> f64 {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// A release kseal-controller on `plane` as its admin, metrics on 127.0.0.1:`metrics`.
/// The controller the benches run: this build's, or the one `KSEAL_CONTROLLER_BIN`
/// names, such as the `dist` build the image ships (`scripts/build-dist.sh`), whose
/// resident memory is what users see. A relative path is taken from the workspace root
/// (cargo runs a bench in its package's directory).
pub fn controller_binary() -> PathBuf {
    let Some(named) = std::env::var_os("KSEAL_CONTROLLER_BIN") else {
        return env!("CARGO_BIN_EXE_kseal-controller").into();
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(named);
    std::fs::canonicalize(&path)
        .unwrap_or_else(|e| panic!("KSEAL_CONTROLLER_BIN: {}: {e}", path.display()))
}

pub fn start_kseal(plane: &ControlPlane, dir: &Path, metrics: u16) -> Child {
    start_kseal_with(plane, dir, metrics, &[])
}

/// [`start_kseal`] with further flags.
pub fn start_kseal_with(plane: &ControlPlane, dir: &Path, metrics: u16, extra: &[&str]) -> Child {
    let kubeconfig = dir.join("kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "kseal-system")
        .unwrap();
    Command::new(controller_binary())
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--log-level", "warn", "--identity", "bench"])
        .args(["--listen-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A fresh control plane (no controller-manager) with these namespaces, kseal's CRDs and
/// `extra_crds` (YAML documents, or empty), every CRD established; and its admin client.
pub async fn plane(namespaces: &[&str], extra_crds: &str) -> (ControlPlane, Client) {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let admin = plane.client(&plane.admin).await.unwrap();
    for name in namespaces {
        let mut ns = Namespace::default();
        ns.metadata.name = Some((*name).into());
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/crd.yaml"
    ))
    .unwrap();
    if !extra_crds.is_empty() {
        text.push_str("\n---\n");
        text.push_str(extra_crds);
    }
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&text).unwrap();
    let api = Api::<CustomResourceDefinition>::all(admin.clone());
    for crd in &crds {
        api.create(&PostParams::default(), crd).await.unwrap();
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap();
        let established = kube::runtime::conditions::is_crd_established();
        kube::runtime::wait::await_condition(api.clone(), &name, established)
            .await
            .unwrap();
    }
    (plane, admin)
}

/// `n` SealedSecrets for namespace `namespace` ([`sealed_objects`]), sealed to the
/// recipients the controller published.
pub async fn kseal_objects(admin: &Client, namespace: &str, n: usize) -> Vec<SealedSecret> {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "kseal-system");
    let started = Instant::now();
    let doc = loop {
        if let Ok(Some(cm)) = cms.get_opt("kseal-recipients").await {
            break cm.data.unwrap()["recipients.json"].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no recipients");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recipients = RecipientSet::new(parse_cert(&doc).unwrap()).unwrap();
    sealed_objects(&recipients, namespace, n)
}
