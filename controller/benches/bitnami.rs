//! kseal beside the real Bitnami sealed-secrets v0.36.6, on the same real kube-apiserver
//! and etcd (`kseal_tests::cluster`), in one run:
//! - N SealedSecrets (1,000 and 10,000) of two items each created at once → time until
//!   every Secret exists: the Bitnami controller with its stock flags (client QPS 5,
//!   burst 10; capped in time, with the rate reached), the Bitnami controller with its
//!   client limit raised so the apiserver is the limit, and kseal-controller; beside the
//!   apiserver's raw Secret-create rate from a plain client;
//! - RSS of both controllers with those objects, then with 50,000 unrelated Secrets;
//! - a restart of each: time and CPU seconds until it has dealt with every object again
//!   (Bitnami's unseal counter back at N; kseal's objects unsealed plus those found up
//!   to date, which it neither decrypts nor writes, at N);
//! - whole processes: `kubeseal --cert` against `kseal seal -R` on one Secret and on 100.
//!
//! The Bitnami objects are cluster-wide, so every one carries the same two ciphertexts
//! (made once with `kubeseal --raw`); the controller's work per object is the same as for
//! any scope: one RSA-4096 decryption per item, with every key tried. kseal's are strict,
//! sealed per object.
//!
//! Run: `cargo build --release -p kseal-cli && cargo bench -p kseal-controller --bench bitnami`
//! (about three hours, two and a half of them the stock Bitnami controller's 10,000 round,
//! which needs little CPU; the kseal CLI is the release one beside the controller);
//! `-- seal`, `-- stock` or `-- side-by-side` runs one section.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    CONCURRENCY, Object, cpu_seconds, create_all, kseal_objects, metric, plain_secret, start_kseal,
    wait_count,
};
use k8s_openapi::api::core::v1::Secret;
use kseal_tests::bitnami::{BitnamiController, kubeseal};
use kseal_tests::cluster::ControlPlane;
use kube::Client;
use kube::api::{Api, ListParams};

fn rss_mib(pid: u32) -> f64 {
    common::rss_kib(pid) as f64 / 1024.0
}

/// Creates `objects` in `namespace` (all at once, [`CONCURRENCY`] in flight) and waits
/// until as many Secrets exist there, or `limit` passes: (elapsed, how many).
async fn created_until_unsealed<K>(
    admin: &Client,
    namespace: &str,
    objects: Vec<K>,
    limit: Duration,
) -> (Duration, usize)
where
    K: Object + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
{
    let n = objects.len();
    let api: Api<K> = Api::namespaced(admin.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let creating = tokio::spawn(async move { create_all(&api, objects).await });
    let result = wait_count(&secrets, n, limit).await;
    creating.await.unwrap();
    result
}

/// Waits until the sum of a controller's counters `names` reaches `n`: (elapsed, its CPU
/// seconds).
async fn wait_unsealed(
    port: u16,
    names: &[&str],
    n: usize,
    pid: u32,
    limit: Duration,
) -> (f64, f64) {
    let started = Instant::now();
    loop {
        let done: f64 = names.iter().map(|name| metric(port, name)).sum();
        if done >= n as f64 || started.elapsed() >= limit {
            return (started.elapsed().as_secs_f64(), cpu_seconds(pid));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A control plane with both CRDs and the namespaces the rounds use.
async fn plane() -> (ControlPlane, Client) {
    let bitnami = std::fs::read_to_string(kseal_tests::bitnami::crd().unwrap()).unwrap();
    common::plane(
        &["raw", "kseal", "bitnami", "noise", "kseal-system"],
        &bitnami,
    )
    .await
}

/// The Bitnami controller's newest certificate, written to `dir/cert.pem`.
async fn bitnami_cert(admin: &Client, dir: &Path) -> std::path::PathBuf {
    let api: Api<Secret> = Api::namespaced(admin.clone(), "kube-system");
    let started = Instant::now();
    loop {
        let keys = api
            .list(
                &ListParams::default()
                    .labels("sealedsecrets.bitnami.com/sealed-secrets-key=active"),
            )
            .await
            .unwrap();
        if let Some(key) = keys.items.into_iter().next() {
            let path = dir.join("cert.pem");
            std::fs::write(&path, &key.data.unwrap()["tls.crt"].0).unwrap();
            return path;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no Bitnami key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kubeseal_raw(cert: &Path, value: &str) -> String {
    let mut child = Command::new(kubeseal().unwrap())
        .args([
            "--raw",
            "--scope",
            "cluster-wide",
            "--from-file=/dev/stdin",
            "--cert",
        ])
        .arg(cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn bitnami_objects(
    n: usize,
    password: &str,
    username: &str,
) -> Vec<kseal_core::bitnami::SealedSecret> {
    (0..n)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "bitnami.com/v1alpha1",
                "kind": "SealedSecret",
                "metadata": {
                    "name": format!("ss-{i:05}"),
                    "namespace": "bitnami",
                    "annotations": {"sealedsecrets.bitnami.com/cluster-wide": "true"},
                },
                "spec": {
                    "encryptedData": {"password": password, "username": username},
                    "template": {"metadata": {"annotations": {"sealedsecrets.bitnami.com/cluster-wide": "true"}}},
                },
            }))
            .unwrap()
        })
        .collect()
}

fn line(what: &str, n: usize, (elapsed, have): (Duration, usize), raw: f64) {
    let rate = have as f64 / elapsed.as_secs_f64();
    let done = if have >= n {
        format!("every Secret after {:.1} s", elapsed.as_secs_f64())
    } else {
        format!(
            "{have} of {n} Secrets after {:.0} s (stopped there; at this rate all would take {:.0} s)",
            elapsed.as_secs_f64(),
            n as f64 / rate.max(0.001)
        )
    };
    println!(
        "  {n:>6} {what:<34} {done} = {rate:.1}/s ({:.4}x the raw create rate)",
        rate / raw
    );
}

/// The apiserver's own rate: `n` Secrets created from a plain client, per second.
async fn raw_rate(admin: &Client, n: usize) -> f64 {
    let raw_api: Api<Secret> = Api::namespaced(admin.clone(), "raw");
    let started = Instant::now();
    create_all(&raw_api, (0..n).map(plain_secret).collect()).await;
    n as f64 / started.elapsed().as_secs_f64()
}

/// The Bitnami controller with its stock client limits, alone on a fresh control plane,
/// until every Secret exists or `limit` passes.
async fn bitnami_stock(n: usize, limit: Duration) {
    let (plane, admin) = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_rate(&admin, n).await;
    let bitnami = BitnamiController::start(&plane, dir.path(), &[])
        .await
        .unwrap();
    let cert = bitnami_cert(&admin, dir.path()).await;
    let objects = bitnami_objects(
        n,
        &kubeseal_raw(&cert, "secret-value"),
        &kubeseal_raw(&cert, "admin"),
    );
    let result = created_until_unsealed(&admin, "bitnami", objects, limit).await;
    line("Bitnami, stock flags (QPS 5)", n, result, raw);
    drop(bitnami);
    plane.shutdown();
}

/// kseal and the Bitnami controller (client limit raised) on one control plane: the
/// create rounds, memory, the unrelated Secrets, and the restarts.
async fn side_by_side(n: usize, noise: bool) {
    let (plane, admin) = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_rate(&admin, n).await;
    println!("  {n:>6} apiserver raw Secret creates: {raw:.0}/s ({CONCURRENCY} in flight)");

    let kseal_metrics = kseal_tests::ports::free_port().unwrap();
    let mut kseal = start_kseal(&plane, dir.path(), kseal_metrics);
    let sealed = kseal_objects(&admin, "kseal", n).await;
    let result = created_until_unsealed(&admin, "kseal", sealed, Duration::from_secs(1800)).await;
    line("kseal-controller", n, result, raw);

    let raised = ["--kubeclient-qps=1000", "--kubeclient-burst=2000"];
    let mut bitnami = BitnamiController::start(&plane, dir.path(), &raised)
        .await
        .unwrap();
    let cert = bitnami_cert(&admin, dir.path()).await;
    let objects = bitnami_objects(
        n,
        &kubeseal_raw(&cert, "secret-value"),
        &kubeseal_raw(&cert, "admin"),
    );
    let result =
        created_until_unsealed(&admin, "bitnami", objects, Duration::from_secs(1800)).await;
    line("Bitnami, QPS raised (1000)", n, result, raw);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (k_rss, b_rss) = (rss_mib(kseal.id()), rss_mib(bitnami.pid()));
    println!(
        "  {n:>6} RSS with both sets of objects: kseal {k_rss:.1} MiB, Bitnami {b_rss:.1} MiB"
    );
    if noise {
        let unrelated: Api<Secret> = Api::namespaced(admin.clone(), "noise");
        create_all(&unrelated, (0..50_000).map(plain_secret).collect()).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!(
            "  {n:>6} + 50,000 unrelated Secrets: kseal {:.1} MiB ({:+.1}), Bitnami {:.1} MiB ({:+.1})",
            rss_mib(kseal.id()),
            rss_mib(kseal.id()) - k_rss,
            rss_mib(bitnami.pid()),
            rss_mib(bitnami.pid()) - b_rss
        );
    }

    // Restarts: back to every object unsealed again.
    let _ = kseal.kill();
    let _ = kseal.wait();
    let kseal = start_kseal(&plane, dir.path(), kseal_metrics);
    let (secs, cpu) = wait_unsealed(
        kseal_metrics,
        // Objects unsealed, and objects found up to date (no decryption, no write).
        &["kseal_unseals_total", "kseal_up_to_date_total"],
        n,
        kseal.id(),
        Duration::from_secs(1800),
    )
    .await;
    println!(
        "  {n:>6} kseal restart: all {n} looked at (up to date or unsealed) after {secs:.1} s, {cpu:.1} CPU s"
    );
    bitnami.stop();
    let bitnami = BitnamiController::start(&plane, dir.path(), &raised)
        .await
        .unwrap();
    let (secs, cpu) = wait_unsealed(
        bitnami.metrics_port,
        &["sealed_secrets_controller_unseal_requests_total"],
        n,
        bitnami.pid(),
        Duration::from_secs(1800),
    )
    .await;
    println!(
        "  {n:>6} Bitnami restart (QPS raised): all {n} unsealed again after {secs:.1} s, {cpu:.1} CPU s"
    );
    drop(bitnami);
    let mut kseal = kseal;
    let _ = kseal.kill();
    let _ = kseal.wait();
    plane.shutdown();
}

/// Median wall time of `runs` runs of a command with `stdin`.
fn median_run(mut command: impl FnMut() -> Command, stdin: &[u8], runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let mut child = command()
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            assert!(child.wait().unwrap().success());
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// `kubeseal --cert` against `kseal seal -R`, whole processes, on 1 and 100 Secrets.
fn sealing_processes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    assert!(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-days",
                "30",
                "-nodes",
                "-newkey",
                "rsa:4096",
                "-subj",
                "/CN=bench",
                "-keyout"
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap()
            .status
            .success()
    );
    let kseal = Path::new(env!("CARGO_BIN_EXE_kseal-controller")).with_file_name("kseal");
    assert!(
        kseal.exists(),
        "{} missing: cargo build --release -p kseal-cli",
        kseal.display()
    );
    let recipient = Command::new(&kseal)
        .args(["keygen", "-o"])
        .arg(dir.path().join("age.txt"))
        .output()
        .unwrap()
        .stdout;
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(&recipients, recipient).unwrap();
    for n in [1, 100] {
        let input: String = (0..n)
            .map(|i| {
                format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\n  namespace: bench\nstringData:\n  password: value-{i}\n  username: admin\n")
            })
            .collect();
        let bitnami = median_run(
            || {
                let mut c = Command::new(kubeseal().unwrap());
                c.arg("--cert").arg(&cert).args(["-o", "yaml"]);
                c
            },
            input.as_bytes(),
            11,
        );
        let ours = median_run(
            || {
                let mut c = Command::new(&kseal);
                c.args(["seal", "-R"]).arg(&recipients);
                c
            },
            input.as_bytes(),
            11,
        );
        println!(
            "  {n:>3} Secret(s), whole process (median of 11): kubeseal --cert {:.1} ms, kseal seal -R {:.1} ms ({:.2}x)",
            bitnami * 1e3,
            ours * 1e3,
            ours / bitnami
        );
    }
}

#[tokio::main]
async fn main() {
    // Sections to run (`cargo bench … -- stock`): seal, stock, side-by-side; all by default.
    // `stock-10000` runs only the long round of `stock`.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |section: &str| picked.is_empty() || picked.iter().any(|p| p == section);
    println!(
        "kseal beside Bitnami sealed-secrets v0.36.6 (release kseal; real kube-apiserver and etcd on this machine)"
    );
    if run("seal") {
        sealing_processes();
    }
    if run("stock") {
        // At its client limit (about 1.25 objects/s) 1,000 take some 14 minutes and 10,000
        // over two hours (the section is light on CPU: it can run beside other work).
        bitnami_stock(1_000, Duration::from_secs(1200)).await;
    }
    if run("stock") || run("stock-10000") {
        bitnami_stock(10_000, Duration::from_secs(3 * 3600)).await;
    }
    if run("side-by-side") {
        side_by_side(1_000, false).await;
        side_by_side(10_000, true).await;
    }
}
