//! `kseal at-rest rewrite` of 10,000 Secrets on the real control plane (`tests/cluster/`),
//! beside what the Kubernetes documentation tells you to run,
//! `kubectl get secrets -A -o json | kubectl replace -f -`, in the same run: wall time
//! and each process's peak memory (VmHWM). Each rewrites 10,000 stale Secrets: written
//! in plaintext, then aescbc turned on for kseal, then secretbox moved first for kubectl.
//! `scan-etcd` checks after each that every Secret moved.
//! Run: `cargo bench -p kseal-cli --bench rewrite` (kubectl on PATH). Prints its figures.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kseal_tests::cluster::{ControlPlane, Options};
use kube::api::{Api, PostParams};

const SECRETS: usize = 10_000;

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    )
}
const AESCBC: &str = "      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";
const SECRETBOX_THEN_AESCBC: &str = "      - secretbox:\n          keys:\n            - name: key2\n              secret: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";

/// A process's peak resident memory so far, in KiB (`VmHWM`).
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits for every child, sampling each one's peak memory until it exits; returns the
/// wall time and the peaks in MiB.
fn watch(mut children: Vec<(&str, Child)>) -> (Duration, Vec<(String, f64)>) {
    let started = Instant::now();
    let mut peaks = vec![0u64; children.len()];
    loop {
        let mut running = false;
        for (i, (name, child)) in children.iter_mut().enumerate() {
            if let Some(kib) = peak_kib(child.id()) {
                peaks[i] = peaks[i].max(kib);
            }
            match child.try_wait().unwrap() {
                None => running = true,
                Some(status) => assert!(status.success(), "{name} failed"),
            }
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let peaks = children
        .iter()
        .zip(peaks)
        .map(|((name, _), kib)| ((*name).to_owned(), kib as f64 / 1024.0))
        .collect();
    (took, peaks)
}

fn scan(kseal: &str, etcd: &str) -> serde_json::Value {
    let out = Command::new(kseal)
        .args(["at-rest", "scan-etcd", "--endpoints", etcd, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main() {
    let kseal = env!("CARGO_BIN_EXE_kseal");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plane = runtime
        .block_on(ControlPlane::start(Options::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "default")
        .unwrap();
    runtime.block_on(async {
        let client = plane.client(&plane.admin).await.unwrap();
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some("bench".into());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let api: Api<Secret> = Api::namespaced(client, "bench");
        futures::stream::iter(0..SECRETS)
            .map(|i| {
                let api = api.clone();
                async move {
                    let secret: Secret = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("s-{i:05}")},
                        "data": {"password": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk=", "username": "YWRtaW4="},
                    }))
                    .unwrap();
                    api.create(&PostParams::default(), &secret).await.unwrap()
                }
            })
            .buffer_unordered(32)
            .for_each(|_| async {})
            .await;
        plane
            .set_encryption_config(Some(&config(AESCBC)))
            .await
            .unwrap();
    });
    let before = scan(kseal, &plane.etcd_url);
    assert_eq!(before["formats"]["plaintext-protobuf"], SECRETS);

    let rewrite = Command::new(kseal)
        .args(["at-rest", "rewrite", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (kseal_took, kseal_peak) = watch(vec![("kseal at-rest rewrite", rewrite)]);
    let after = scan(kseal, &plane.etcd_url);
    assert_eq!(after["formats"]["aescbc:key1"], SECRETS, "{after}");

    runtime
        .block_on(plane.set_encryption_config(Some(&config(SECRETBOX_THEN_AESCBC))))
        .unwrap();
    let mut get = Command::new("kubectl")
        .args(["get", "secrets", "-A", "-o", "json", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let replace = Command::new("kubectl")
        .args(["replace", "-f", "-", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdin(get.stdout.take().unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (kubectl_took, kubectl_peaks) =
        watch(vec![("kubectl get", get), ("kubectl replace", replace)]);
    let after = scan(kseal, &plane.etcd_url);
    assert_eq!(after["formats"]["secretbox:key2"], SECRETS, "{after}");

    println!("rewriting {SECRETS} stale Secrets on kube-apiserver v1.37 (one run, same machine):");
    let rate = |d: Duration| SECRETS as f64 / d.as_secs_f64();
    println!(
        "  kseal at-rest rewrite          {:>7.1} s  {:>7.0}/s  peak {:.1} MiB",
        kseal_took.as_secs_f64(),
        rate(kseal_took),
        kseal_peak[0].1
    );
    println!(
        "  kubectl get -A | kubectl replace  {:>7.1} s  {:>7.0}/s  peak {}",
        kubectl_took.as_secs_f64(),
        rate(kubectl_took),
        kubectl_peaks
            .iter()
            .map(|(name, mib)| format!("{name} {mib:.1} MiB"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  ratio: kseal takes {:.2}x kubectl's time",
        kseal_took.as_secs_f64() / kubectl_took.as_secs_f64()
    );
    plane.shutdown();
}
