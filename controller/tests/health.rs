//! What Flux and Argo CD see of a SealedSecret, from the status the real controller
//! writes: the real kstatus library (`sigs.k8s.io/cli-utils` `status.Compute`, what
//! Flux's health checks compute) and Argo CD's Lua health checks, run in gopher-lua the
//! way Argo CD runs them: kseal's (`manifests/components/argocd-health/health.lua`) and,
//! in drop-in mode, the one Argo CD ships for Bitnami's kind, on the `Synced` condition
//! kseal writes. `Current`/`Healthy` once unsealed, `InProgress`/`Progressing` while a
//! new generation is not yet observed, `Failed`/`Degraded` with kseal's reason for a
//! failure only a change can fix.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kseal_tests::cluster::{Health, argocd_bitnami_check, argocd_health, kstatus};

/// kseal's Argo CD health check, as the kustomize component ships it.
fn kseal_check() -> PathBuf {
    repo().join("manifests/components/argocd-health/health.lua")
}

/// kstatus's verdict and the Argo CD check's on one SealedSecret as the API holds it.
async fn health(cluster: &Cluster, ns: &str, name: &str) -> (Health, Health) {
    let json = cluster
        .kubectl(&["get", "sealedsecret", name, "-n", ns, "-o", "json"])
        .await;
    (
        kstatus(&json).unwrap().remove(0),
        argocd_health(&kseal_check(), false, &json)
            .unwrap()
            .remove(0),
    )
}

/// The `Ready` condition's message on a SealedSecret.
async fn ready_message(cluster: &Cluster, ns: &str, name: &str) -> String {
    let json = cluster
        .kubectl(&["get", "sealedsecret", name, "-n", ns, "-o", "json"])
        .await;
    let object: serde_json::Value = serde_json::from_str(&json).unwrap();
    object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A SealedSecret for `ns`/`name` sealed with `cert`, as JSON to change before applying.
fn sealed(cluster: &Cluster, cert: &Path, ns: &str, name: &str) -> serde_json::Value {
    let input = secret_yaml(ns, name, &[("password", &format!("pw-{name}"))]);
    let file = format!("{name}.json");
    cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-w", &file],
        input.as_bytes(),
    );
    serde_json::from_slice(&std::fs::read(cluster.path(&file)).unwrap()).unwrap()
}

async fn apply(cluster: &Cluster, object: &serde_json::Value) {
    let file = format!(
        "{}.applied.json",
        object["metadata"]["name"].as_str().unwrap()
    );
    std::fs::write(cluster.path(&file), object.to_string()).unwrap();
    cluster
        .kubectl(&["apply", "-f", cluster.path(&file).to_str().unwrap()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_and_argo_cd_read_unsealed_in_progress_and_each_failure() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-kstatus-1")])
        .await;
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );
    let (flux, argo) = health(&cluster, "shop", "db").await;
    assert_eq!(flux.status, "Current", "{flux:?}");
    assert_eq!(argo.status, "Healthy", "{argo:?}");

    // A new generation the controller has not seen yet.
    cluster.stop_controller("replica-a");
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-kstatus-2")])
        .await;
    let (flux, argo) = health(&cluster, "shop", "db").await;
    assert_eq!(flux.status, "InProgress", "{flux:?}");
    assert_eq!(argo.status, "Progressing", "{argo:?}");
    cluster.start_controller("replica-a");
    wait_for("the new generation, unsealed", || async {
        let (flux, argo) = health(&cluster, "shop", "db").await;
        (flux.status == "Current" && argo.status == "Healthy").then_some(())
    })
    .await;

    // Failures only a change can fix, one object each.
    // Sealed to a key this cluster does not hold.
    cluster.seal_to_stranger("shop", "foreign", "pw-kstatus-3");
    cluster.apply(&["foreign.yaml"]).await;
    // Sealed for `db`, moved to `moved`: the binding refuses it.
    let mut moved = sealed(&cluster, &cert, "shop", "db");
    moved["metadata"]["name"] = "moved".into();
    apply(&cluster, &moved).await;
    // A sealed value changed on the way: its age file does not decrypt.
    let mut tampered = sealed(&cluster, &cert, "shop", "tampered");
    let value = tampered["spec"]["encryptedData"]["password"]
        .as_str()
        .unwrap();
    let mut bytes = STANDARD.decode(value).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    tampered["spec"]["encryptedData"]["password"] = STANDARD.encode(bytes).into();
    apply(&cluster, &tampered).await;
    // Not a sealed value at all.
    let mut garbage = sealed(&cluster, &cert, "shop", "garbage");
    garbage["spec"]["encryptedData"]["password"] = STANDARD.encode("not sealed").into();
    apply(&cluster, &garbage).await;
    // More items than one object may hold.
    let mut crowded = sealed(&cluster, &cert, "shop", "crowded");
    let one = crowded["spec"]["encryptedData"]["password"].clone();
    crowded["spec"]["encryptedData"] = (0..257)
        .map(|i| (format!("item-{i}"), one.clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    apply(&cluster, &crowded).await;
    // A template that would plant a key Secret's label.
    let mut planted = sealed(&cluster, &cert, "shop", "planted");
    planted["spec"]["template"]["metadata"]["labels"]["kseal.dev/key"] = "active".into();
    apply(&cluster, &planted).await;
    // A Secret of that name that kseal does not manage.
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "occupied",
            "-n",
            "shop",
            "--from-literal=token=someone-elses",
        ])
        .await;
    apply(&cluster, &sealed(&cluster, &cert, "shop", "occupied")).await;
    // A Secret kube-apiserver refuses: a TLS Secret without its certificate and key.
    let mut invalid = sealed(&cluster, &cert, "shop", "invalid");
    invalid["spec"]["template"]["type"] = "kubernetes.io/tls".into();
    apply(&cluster, &invalid).await;
    // In the controller's own namespace (kseal seal refuses to seal for it; moved there).
    let mut planted_key = sealed(&cluster, &cert, "shop", "planted-key");
    planted_key["metadata"]["namespace"] = "kseal-system".into();
    apply(&cluster, &planted_key).await;

    for (ns, name, reason) in [
        ("shop", "foreign", "NoMatchingKey"),
        ("shop", "moved", "ScopeMismatch"),
        ("shop", "tampered", "DecryptionFailed"),
        ("shop", "garbage", "MalformedSealedValue"),
        ("shop", "crowded", "TooMuchWork"),
        ("shop", "planted", "ForbiddenTemplate"),
        ("shop", "occupied", "SecretNotOwned"),
        ("shop", "invalid", "SecretRejected"),
        ("kseal-system", "planted-key", "ForbiddenNamespace"),
    ] {
        assert_eq!(
            cluster.ready(ns, name).await,
            ("False".into(), reason.into()),
            "{name}"
        );
        let message = ready_message(&cluster, ns, name).await;
        let (flux, argo) = health(&cluster, ns, name).await;
        assert_eq!(flux.status, "Failed", "{name}: {flux:?}");
        assert_eq!(flux.message, message, "{name}");
        assert_eq!(argo.status, "Degraded", "{name}: {argo:?}");
        assert_eq!(argo.message, format!("{reason}: {message}"), "{name}");
    }

    // Fixed by a person: sealed again for where it is, it is healthy again.
    cluster
        .seal_and_apply(&cert, "shop", "moved", &[("password", "pw-kstatus-4")])
        .await;
    wait_for("the fixed object, healthy", || async {
        let (flux, argo) = health(&cluster, "shop", "moved").await;
        (flux.status == "Current" && argo.status == "Healthy").then_some(())
    })
    .await;
}

/// Statuses no controller of this version writes (a partial status, an older
/// controller's, a hand-edited one) never make kseal's check fail: Argo CD would show
/// the error instead of a health.
#[test]
fn the_argo_cd_check_reads_any_status_without_an_error() {
    let object = |generation: &str, status: &str| {
        format!(
            r#"{{"apiVersion":"kseal.dev/v1alpha1","kind":"SealedSecret","metadata":{{"name":"x","namespace":"shop"{generation}}}{status}}}"#
        )
    };
    let g = r#","generation":2"#;
    for (generation, status, expected, message) in [
        (
            "",
            "",
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
        (
            g,
            "",
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
        (
            g,
            r#","status":{}"#,
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
        (
            g,
            r#","status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True"}]}"#,
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
        (
            g,
            r#","status":{"observedGeneration":2}"#,
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
        (
            g,
            r#","status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True"}]}"#,
            "Healthy",
            "",
        ),
        (
            g,
            r#","status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"False","reason":"ApiError","message":"etcd timed out"}]}"#,
            "Progressing",
            "ApiError: etcd timed out",
        ),
        (
            g,
            r#","status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"False"},{"type":"Stalled","status":"True"}]}"#,
            "Degraded",
            ": ",
        ),
        (
            g,
            r#","status":{"observedGeneration":2,"conditions":[{"type":"Stalled","status":"True","reason":"NoMatchingKey","message":"m"},{"type":"Ready","status":"False","reason":"NoMatchingKey","message":"m"}]}"#,
            "Degraded",
            "NoMatchingKey: m",
        ),
        (
            g,
            r#","status":{"observedGeneration":2,"conditions":"not a list"}"#,
            "Progressing",
            "Waiting for kseal-controller to unseal this generation",
        ),
    ] {
        let json = object(generation, status);
        let got =
            argocd_health(&kseal_check(), false, &json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(
            (got[0].status.as_str(), got[0].message.as_str()),
            (expected, message),
            "{json}"
        );
    }
}

/// Argo CD's Bitnami check on a Bitnami SealedSecret in `shop` as the API holds it.
async fn bitnami_health(cluster: &Cluster, check: &Path, name: &str) -> Health {
    let json = cluster
        .kubectl(&[
            "get",
            "sealedsecrets.bitnami.com",
            name,
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .await;
    argocd_health(check, true, &json).unwrap().remove(0)
}

/// Waits for Argo CD's Bitnami check to call `shop/db-credentials` Healthy.
async fn bitnami_healthy(cluster: &Cluster, check: &Path) {
    wait_for("Argo CD's check: Healthy", || async {
        let got = bitnami_health(cluster, check, "db-credentials").await;
        (got.status == "Healthy").then_some(())
    })
    .await;
}

/// In drop-in mode kseal writes Bitnami's `Synced` condition on Bitnami's SealedSecrets;
/// Argo CD's own check for that kind (the pinned argo-cd module's, with every standard
/// library as Argo CD gives its own checks) reads it as it reads Bitnami's controller.
/// First the harness runs Argo CD's own test cases for the check, as Argo CD's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_reads_the_drop_in_mode_with_its_own_bitnami_check() {
    let check_dir = argocd_bitnami_check().unwrap();
    let check = check_dir.join("health.lua");
    let cases = std::fs::read_to_string(check_dir.join("health_test.yaml")).unwrap();
    let mut ran = 0;
    for case in cases.split("- healthStatus:").skip(1) {
        let field = |name: &str| {
            case.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let input = std::fs::read_to_string(check_dir.join(field("inputPath"))).unwrap();
        let got = argocd_health(&check, true, &input).unwrap().remove(0);
        assert_eq!(
            (got.status, got.message),
            (field("status"), field("message")),
            "Argo CD's case {}",
            field("inputPath")
        );
        ran += 1;
    }
    assert!(ran >= 6, "Argo CD's cases for the check: {ran}");

    let mut cluster = Cluster::new().await;
    let crd = kseal_tests::bitnami::crd().unwrap();
    cluster
        .kubectl(&["apply", "-f", crd.to_str().unwrap()])
        .await;
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=established",
            "crd/sealedsecrets.bitnami.com",
        ])
        .await;
    let rbac = repo().join("manifests/components/bitnami/rbac.yaml");
    cluster
        .kubectl(&["apply", "-f", rbac.to_str().unwrap()])
        .await;
    let vectors = repo().join("tests/vectors/bitnami");
    cluster
        .kubectl(&["apply", "-f", vectors.join("keys.yaml").to_str().unwrap()])
        .await;
    let drop_in = [
        "--bitnami-keys-namespace",
        "kube-system",
        "--bitnami-drop-in",
    ];
    cluster.start_controller_with("replica-a", &drop_in);
    let db = vectors.join("db-credentials.yaml");
    cluster
        .kubectl(&["apply", "-f", db.to_str().unwrap()])
        .await;
    bitnami_healthy(&cluster, &check).await;

    // A new generation the controller has not seen: Progressing.
    cluster.stop_controller("replica-a");
    let patch = r#"{"spec":{"template":{"metadata":{"labels":{"app":"shop","tier":"db"}}}}}"#;
    cluster
        .kubectl(&[
            "patch",
            "sealedsecrets.bitnami.com",
            "db-credentials",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            patch,
        ])
        .await;
    let got = bitnami_health(&cluster, &check, "db-credentials").await;
    assert_eq!(got.status, "Progressing", "{got:?}");
    cluster.start_controller_with("replica-a", &drop_in);
    bitnami_healthy(&cluster, &check).await;

    // Moved to another name, its strict scope refuses it: Degraded, with kseal's message.
    let moved = std::fs::read_to_string(&db)
        .unwrap()
        .replace("name: db-credentials", "name: moved");
    std::fs::write(cluster.path("bitnami-moved.yaml"), moved).unwrap();
    cluster
        .kubectl(&[
            "apply",
            "-f",
            cluster.path("bitnami-moved.yaml").to_str().unwrap(),
        ])
        .await;
    let got = wait_for("Argo CD's check: Degraded", || async {
        let got = bitnami_health(&cluster, &check, "moved").await;
        (got.status == "Degraded").then_some(got)
    })
    .await;
    assert!(!got.message.is_empty(), "{got:?}");
    assert!(!got.message.contains("pw"), "{got:?}");
}
