//! The Helm chart installed by real Helm (v4, built from `tests/cluster/go.mod`) into a
//! real kube-apiserver: the release is deployed, and the controller, running as the
//! chart's ServiceAccount with the chart's RBAC, unseals a value sealed with the CLI.
//! (No kubelet runs here, so the chart's Deployment makes no pod: the test runs the
//! controller binary itself, with that identity.)
#![allow(clippy::unwrap_used)]

use crate::common;

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
    // The base, then docs/operations.md's overlay with the Bitnami component, as the
    // page shows it, in a directory beside `manifests/`.
    let dir = docs_overlay("components/bitnami");
    let kubeconfig = dir.path().join("admin");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "default")
        .unwrap();
    let kubectl = |args: Vec<String>| {
        let (kubeconfig, cache) = (kubeconfig.clone(), dir.path().join("cache"));
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("KUBECACHEDIR", cache)
                .output()
                .unwrap()
        })
    };
    for target in [repo().join("manifests"), dir.path().join("overlay")] {
        let out = kubectl(vec![
            "apply".into(),
            "-k".into(),
            target.display().to_string(),
        ])
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", target.display());
        assert!(!stderr.to_lowercase().contains("warning"), "{stderr}");
    }
    let env = kubectl(
        [
            "get",
            "-n",
            "kseal-system",
            "deploy/kseal-controller",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await
    .unwrap();
    let env = String::from_utf8_lossy(&env.stdout);
    assert!(
        env.contains("KSEAL_BITNAMI_DROP_IN") && env.contains("KSEAL_BITNAMI_KEYS_NAMESPACE"),
        "{env}"
    );
}

/// docs/operations.md names every value the chart takes.
#[test]
fn the_docs_list_every_helm_value() {
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("manifests/helm/kseal/values.yaml")).unwrap(),
    )
    .unwrap();
    let page = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let listed = page
        .split("Values:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let listed = listed.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut missing = Vec::new();
    for (key, value) in values.as_object().unwrap() {
        let names: Vec<String> = match value.as_object() {
            Some(nested) if !nested.is_empty() && key != "resources" => {
                nested.keys().map(|k| format!("`{key}.{k}`")).collect()
            }
            _ => vec![format!("`{key}`")],
        };
        missing.extend(names.into_iter().filter(|n| !listed.contains(n.as_str())));
    }
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}
