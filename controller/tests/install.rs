//! The Helm chart installed by real Helm (v4, built from `tests/cluster/go.mod`) into a
//! real kube-apiserver: the release is deployed, and the controller, running as the
//! chart's ServiceAccount with the chart's RBAC, unseals a value sealed with the CLI.
//! (No kubelet runs here, so the chart's Deployment makes no pod: the test runs the
//! controller binary itself, with that identity.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_and_its_identity_unseals() {
    // docs/operations.md's command, without enforcing encryption at rest (this control
    // plane stores Secrets in plaintext).
    let mut cluster = Cluster::with_helm(&["replicas=2", "keyRotationCronJob.enabled=true"]).await;
    let status = cluster
        .kubectl(&[
            "get",
            "secret",
            "-n",
            "default",
            "-l",
            "owner=helm,name=kseal",
            "-o",
            "jsonpath={.items[0].metadata.labels.status}",
        ])
        .await;
    assert_eq!(status, "deployed", "the Helm release");
    for object in [
        "deployment/kseal-controller",
        "cronjob/kseal-rotate-key",
        "serviceaccount/kseal-rotate-key",
    ] {
        cluster
            .kubectl(&["get", object, "-n", "kseal-system"])
            .await;
    }

    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-helm-1")])
        .await;
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );
    let secret = cluster.secrets("shop").get("db").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"pw-helm-1");
}

/// `kubectl apply -k manifests/` on a fresh real apiserver, as the README's install
/// says: no warnings (issue 27: the CRD's `format: uint32`, which Kubernetes does not
/// know, made kubectl warn four times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_install_applies_without_warnings() {
    let plane = kseal_tests::cluster::ControlPlane::start(kseal_tests::cluster::Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("admin");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "default")
        .unwrap();
    let manifests = repo().join("manifests");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .args(["apply", "-k", manifests.to_str().unwrap()])
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", dir.path().join("cache"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("warning"), "{stderr}");
}
