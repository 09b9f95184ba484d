//! `kseal reseal` over a repository of 1,000 SealedSecret files (one object of two items
//! each, sealed to the cluster's key and an escrow key), after a key rotation, on a real
//! kube-apiserver and etcd with a release kseal-controller and the release CLI:
//! - through the controller at its default rate limit (5 requests/s per namespace, burst
//!   10), and with the limit raised so the controller and the apiserver are the limit;
//! - offline with `-i` (the escrow key), sealing to the rule's recipients;
//! - beside them: the dry run (reading and deciding only: the floor), and the loop users
//!   script today (one `kseal reseal FILE` process per file, as with `kubeseal
//!   --re-encrypt`), timed on 100 files.
//!
//! Each round starts from the same 1,000 files on the old key, and checks that all 1,000
//! were resealed. Run: `cargo build --release -p kseal-cli && cargo bench -p
//! kseal-controller --bench reseal` (about five minutes; most of it the default rate
//! limit's round).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{controller_binary, start_kseal, start_kseal_with};
use k8s_openapi::api::core::v1::ConfigMap;
use kseal_core::keys::Key;
use kseal_core::recipients::{RecipientSet, parse_cert};
use kube::Client;
use kube::api::Api;

const FILES: usize = 1_000;

fn kseal_cli() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kseal-controller")).with_file_name("kseal")
}

async fn published(admin: &Client, keys: usize) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "kseal-system");
    let started = Instant::now();
    loop {
        if let Ok(Some(cm)) = cms.get_opt("kseal-recipients").await {
            let doc = cm.data.unwrap()["recipients.json"].clone();
            let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
            if v["recipients"].as_array().unwrap().len() == keys {
                return doc;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no recipients");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository: `.kseal.yaml`, the escrow key, and FILES files on `recipients`.
fn repository(dir: &Path, recipients: &RecipientSet, escrow: &Key) {
    std::fs::create_dir_all(dir.join("prod/apps")).unwrap();
    std::fs::write(
        dir.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    context: bench\n    recipientsFiles: [escrow.txt]\n",
    )
    .unwrap();
    std::fs::write(dir.join("escrow.txt"), format!("{}\n", escrow.recipient())).unwrap();
    std::fs::write(
        dir.join("escrow.key"),
        escrow.to_identity_file("2026-12-03T00:00:00Z").as_bytes(),
    )
    .unwrap();
    for i in 0..FILES {
        let (password, token) = (format!("pw-{i}"), format!("tok-{i}"));
        let sealed = kseal_tests::sealing::sealed(
            "prod",
            &format!("app-{i:04}"),
            &[("password", &password), ("token", &token)],
            recipients,
        );
        std::fs::write(
            dir.join(format!("prod/apps/app-{i:04}.yaml")),
            serde_saphyr::to_string(&sealed).unwrap(),
        )
        .unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// One `kseal reseal` run in `repo`: seconds, and how many objects it resealed.
fn reseal(repo: &Path, kubeconfig: &Path, args: &[&str]) -> (f64, u64) {
    let started = Instant::now();
    let out = Command::new(kseal_cli())
        .arg("reseal")
        .args(args)
        .args(["-o", "json"])
        .current_dir(repo)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resealed = report["summary"]["resealed"].as_u64().unwrap_or(0);
    (seconds, resealed)
}

fn line(what: &str, seconds: f64, files: usize) {
    println!(
        "  {what:<58} {seconds:>7.2} s  {:>7.1} files/s",
        files as f64 / seconds
    );
}

#[tokio::main]
async fn main() {
    println!(
        "kseal reseal: {FILES} files after a rotation (release kseal; real kube-apiserver and etcd on this machine)"
    );
    let (plane, admin) = common::plane(&["kseal-system", "prod"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("user-kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "prod")
        .unwrap();
    // The rule's context is the kubeconfig's one context, renamed `bench`.
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let context = text
        .lines()
        .find_map(|l| l.strip_prefix("current-context: "))
        .unwrap()
        .to_owned();
    std::fs::write(&kubeconfig, text.replace(&context, "bench")).unwrap();

    let metrics = kseal_tests::ports::free_port().unwrap();
    let mut controller = start_kseal(&plane, dir.path(), metrics);
    let old = parse_cert(&published(&admin, 1).await).unwrap();
    let escrow = Key::generate();
    let mut recipients = old.clone();
    recipients.push(escrow.recipient().clone());
    let source = dir.path().join("source");
    repository(&source, &RecipientSet::new(recipients).unwrap(), &escrow);

    let rotated = Command::new(controller_binary())
        .args([
            "rotate-key",
            "--kubeconfig",
            dir.path().join("kubeconfig").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(rotated.status.success());
    published(&admin, 2).await;

    let round = |name: &str| {
        let repo = dir.path().join(name);
        copy_dir(&source, &repo);
        repo
    };
    let repo = round("dry");
    let (s, _) = reseal(&repo, &kubeconfig, &[".", "--dry-run"]);
    line("dry run (read, decide; the floor)", s, FILES);

    let repo = round("serial");
    let started = Instant::now();
    for i in 0..100 {
        let file = format!("prod/apps/app-{i:04}.yaml");
        let (_, n) = reseal(&repo, &kubeconfig, &[&file]);
        assert_eq!(n, 1);
    }
    let serial = started.elapsed().as_secs_f64();
    line(
        "one `kseal reseal FILE` per file, default limit (100 files)",
        serial,
        100,
    );

    let repo = round("default");
    let (default, n) = reseal(&repo, &kubeconfig, &["."]);
    assert_eq!(n, FILES as u64);
    line(
        "controller, default rate limit (5/s, burst 10)",
        default,
        FILES,
    );

    let _ = controller.kill();
    let _ = controller.wait();
    controller = start_kseal_with(
        &plane,
        dir.path(),
        metrics,
        &["--rate-limit", "10000", "--rate-limit-burst", "10000"],
    );
    published(&admin, 2).await;
    for concurrency in ["8", "32"] {
        let repo = round(&format!("raised-{concurrency}"));
        let (s, n) = reseal(&repo, &kubeconfig, &[".", "--concurrency", concurrency]);
        assert_eq!(n, FILES as u64);
        line(
            &format!("controller, limit raised, --concurrency {concurrency}"),
            s,
            FILES,
        );
    }

    let repo = round("offline");
    let (offline, n) = reseal(&repo, &kubeconfig, &[".", "-i", "escrow.key"]);
    assert_eq!(n, FILES as u64);
    line("offline, -i escrow.key", offline, FILES);

    let _ = controller.kill();
    let _ = controller.wait();
    plane.shutdown();
    println!(
        "  the serial loop would take {:.0} s for {FILES}: {:.1}x the concurrent run at the default limit",
        serial * FILES as f64 / 100.0,
        serial * FILES as f64 / 100.0 / default
    );
}
