//! End to end: the real `kseal-controller` binary with the RBAC from `manifests/`, against
//! the Kubernetes API test server; SealedSecrets made by the real `kseal` CLI and applied
//! with kubectl.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

/// Values that must never appear in logs, Events, status or metrics.
const PLAINTEXT: &[&str] = &[
    "pw-7Gq2-hunter",
    "user-Zx81-admin",
    "tok-R5v0-extra",
    "pw-Y3k9-second",
];

fn data_of(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// A Secret deleted right after the controller wrote it, while it is still writing the
/// status, is written again at once: the deletion ends the wait for that write to show
/// in the caches (it used to wait out the 30 s given to a write's own watch events). The
/// controller reaches the apiserver through a proxy adding 300 ms to each request, so
/// each deletion lands while its status write is in flight. Five rounds, each an update
/// then a deletion as soon as the API shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_deleted_right_after_a_write_comes_back_at_once() {
    let mut cluster = Cluster::with_fault_proxy(Options::default()).await;
    cluster
        .proxy
        .as_ref()
        .unwrap()
        .set_faults(kseal_tests::faults::Faults {
            latency: Duration::from_millis(300),
            ..Default::default()
        });
    cluster.start_controller("replica-a");
    let recipients = cluster.recipients().await;
    let cert = recipients.to_str().unwrap();
    let secrets = cluster.secrets("shop");
    let input = secret_yaml("shop", "db", &[("password", "v0")]);
    cluster.kseal(&["seal", "--cert", cert, "-w", "db.yaml"], input.as_bytes());
    let file = cluster.path("db.yaml");
    let file = file.to_str().unwrap();
    cluster.kubectl(&["apply", "-f", file]).await;
    let holds = |value: String| {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get_opt("db").await.ok().flatten()?;
            (data_of(&secret, "password")? == value).then_some(())
        }
    };
    wait_for("the Secret", || holds("v0".into())).await;
    for round in 1..=5 {
        let value = format!("v{round}");
        let literal = format!("password={value}");
        let merge = [
            "merge",
            "db.yaml",
            "--from-literal",
            &literal,
            "--cert",
            cert,
        ];
        cluster.kseal(&merge, b"");
        cluster.kubectl(&["apply", "-f", file]).await;
        wait_for("the update", || holds(value.clone())).await;
        secrets
            .delete("db", &DeleteParams::default())
            .await
            .unwrap();
        let limit = Duration::from_secs(15);
        wait_for_within("the Secret again", limit, || holds(value.clone())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secret_lifecycle() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let recipients = cluster.recipients().await;
    let cert = recipients.to_str().unwrap();
    let secrets = cluster.secrets("shop");

    // seal with the CLI → apply with kubectl → the Secret appears, complete and owned
    let input = secret_yaml(
        "shop",
        "db",
        &[("password", PLAINTEXT[0]), ("username", PLAINTEXT[1])],
    );
    cluster.kseal(&["seal", "--cert", cert, "-w", "db.yaml"], input.as_bytes());
    cluster
        .kubectl(&["apply", "-f", cluster.path("db.yaml").to_str().unwrap()])
        .await;
    let secret = wait_for("the Secret", || async {
        secrets.get_opt("db").await.ok().flatten()
    })
    .await;
    assert_eq!(data_of(&secret, "password").as_deref(), Some(PLAINTEXT[0]));
    assert_eq!(data_of(&secret, "username").as_deref(), Some(PLAINTEXT[1]));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(secret.labels().get("app").map(String::as_str), Some("demo"));
    let sealed = cluster.sealed("shop").get("db").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("SealedSecret", sealed.uid().unwrap().as_str(), Some(true))
    );
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );

    // an update reaches the Secret
    cluster.kseal(
        &[
            "merge",
            "db.yaml",
            "--from-literal",
            &format!("token={}", PLAINTEXT[2]),
            "--cert",
            cert,
        ],
        b"",
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("db.yaml").to_str().unwrap()])
        .await;
    wait_for("the new item", || async {
        secrets
            .get_opt("db")
            .await
            .ok()
            .flatten()
            .and_then(|s| data_of(&s, "token"))
            .filter(|t| t == PLAINTEXT[2])
    })
    .await;

    // an item removed from the SealedSecret leaves the Secret
    cluster.kseal(&["merge", "db.yaml", "--remove", "username"], b"");
    cluster
        .kubectl(&["apply", "-f", cluster.path("db.yaml").to_str().unwrap()])
        .await;
    wait_for("the item to go", || async {
        secrets
            .get_opt("db")
            .await
            .ok()
            .flatten()
            .filter(|s| data_of(s, "username").is_none())
    })
    .await;

    // a deleted Secret is recreated
    secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_for("the Secret again", || async {
        secrets.get_opt("db").await.ok().flatten()
    })
    .await;
    assert_eq!(data_of(&again, "password").as_deref(), Some(PLAINTEXT[0]));

    // deleting the SealedSecret collects the Secret
    cluster
        .sealed("shop")
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Secret to be collected", || async {
        secrets
            .get_opt("db")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;

    // A Secret's type cannot change: taking over one of another type is refused by the
    // apiserver, and the reason says so.
    let opaque = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: typed\n  namespace: shop\n  annotations:\n    kseal.dev/managed: \"true\"\ntype: Opaque\nstringData:\n  password: old\n";
    std::fs::write(cluster.path("typed-secret.yaml"), opaque).unwrap();
    cluster
        .kubectl(&[
            "apply",
            "-f",
            cluster.path("typed-secret.yaml").to_str().unwrap(),
        ])
        .await;
    let input = secret_yaml("shop", "typed", &[("password", PLAINTEXT[3])]);
    cluster.kseal(
        &["seal", "--cert", cert, "-w", "typed.yaml"],
        input.as_bytes(),
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("typed.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "typed").await,
        ("False".into(), "SecretRejected".into())
    );
    let kept = secrets.get("typed").await.unwrap();
    assert_eq!(data_of(&kept, "password").as_deref(), Some("old"));

    assert_no_plaintext(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_secrets_alone() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let recipients = cluster.recipients().await;
    let cert = recipients.to_str().unwrap();

    let input = secret_yaml("shop", "api", &[("password", PLAINTEXT[0])]);
    let sealed = String::from_utf8(
        cluster
            .kseal(&["seal", "--cert", cert], input.as_bytes())
            .stdout,
    )
    .unwrap();

    // moved to another namespace, or renamed: Ready=False ScopeMismatch and no Secret
    for (ns, name) in [("staging", "api"), ("shop", "api-copy")] {
        let moved = sealed
            .replace("namespace: shop", &format!("namespace: {ns}"))
            .replace("name: api\n", &format!("name: {name}\n"));
        std::fs::write(cluster.path("moved.yaml"), moved).unwrap();
        cluster
            .kubectl(&["apply", "-f", cluster.path("moved.yaml").to_str().unwrap()])
            .await;
        assert_eq!(
            cluster.ready(ns, name).await,
            ("False".into(), "ScopeMismatch".into())
        );
        assert!(cluster.secrets(ns).get_opt(name).await.unwrap().is_none());
    }

    // a tampered item: Ready=False, and the previous Secret stays as it was
    std::fs::write(cluster.path("api.yaml"), &sealed).unwrap();
    cluster
        .kubectl(&["apply", "-f", cluster.path("api.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "api").await,
        ("True".into(), "Unsealed".into())
    );
    let before = cluster.secrets("shop").get("api").await.unwrap();
    let ss = cluster.sealed("shop").get("api").await.unwrap();
    let value = &ss.spec.encrypted_data["password"];
    let tampered = format!(
        "{}AAAA{}",
        &value[..value.len() - 8],
        &value[value.len() - 4..]
    );
    let patch = serde_json::json!({"spec": {"encryptedData": {"password": tampered}}});
    cluster
        .sealed("shop")
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        cluster.ready("shop", "api").await,
        ("False".into(), "DecryptionFailed".into())
    );
    let after = cluster.secrets("shop").get("api").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "untouched"
    );

    // an existing Secret the controller does not own is refused, until annotated
    let plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: legacy\n  namespace: shop\ntype: kubernetes.io/basic-auth\nstringData:\n  password: old\n";
    std::fs::write(cluster.path("legacy-secret.yaml"), plain).unwrap();
    cluster
        .kubectl(&[
            "apply",
            "-f",
            cluster.path("legacy-secret.yaml").to_str().unwrap(),
        ])
        .await;
    let input = secret_yaml("shop", "legacy", &[("password", PLAINTEXT[3])]);
    cluster.kseal(
        &["seal", "--cert", cert, "-w", "legacy.yaml"],
        input.as_bytes(),
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("legacy.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "legacy").await,
        ("False".into(), "SecretNotOwned".into())
    );
    assert_eq!(
        data_of(
            &cluster.secrets("shop").get("legacy").await.unwrap(),
            "password"
        )
        .as_deref(),
        Some("old")
    );
    cluster
        .kubectl(&[
            "annotate",
            "secret",
            "legacy",
            "-n",
            "shop",
            "kseal.dev/managed=true",
        ])
        .await;
    cluster
        .kubectl(&[
            "annotate",
            "sealedsecret",
            "legacy",
            "-n",
            "shop",
            "retry=1",
        ])
        .await;
    let secrets = cluster.secrets("shop");
    wait_for("the take-over", || async {
        secrets.get_opt("legacy").await.ok().flatten().filter(|s| {
            data_of(s, "password").as_deref() == Some(PLAINTEXT[3])
                && !s.owner_references().is_empty()
        })
    })
    .await;

    assert_no_plaintext(&cluster).await;
}

/// Scans every log line, Event, status and metric for the plaintext values.
async fn assert_no_plaintext(cluster: &Cluster) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut haystack = cluster.logs();
    haystack.push_str(
        &cluster
            .kubectl(&["get", "events.events.k8s.io", "-A", "-o", "json"])
            .await,
    );
    haystack.push_str(
        &cluster
            .kubectl(&["get", "sealedsecrets", "-A", "-o", "json"])
            .await,
    );
    for (_, _, metrics_port) in &cluster.controllers {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", *metrics_port)) {
            use std::io::{Read, Write};
            let _ = write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body);
            assert!(body.contains("kseal_unseals_total"), "metrics were read");
            haystack.push_str(&body);
        }
    }
    assert!(
        haystack.contains("Unsealed"),
        "the scan saw events and status"
    );
    for value in PLAINTEXT {
        assert!(!haystack.contains(value), "plaintext {value:?} leaked");
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value);
        assert!(
            !haystack.contains(&b64),
            "plaintext {value:?} leaked as base64"
        );
    }
}

/// A developer with no rights beyond being authenticated seals against the cluster through
/// a kubeconfig (the recipients come from a ConfigMap, never from the controller's pod),
/// and `kseal status` reports the keys and the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_from_the_cluster_and_status() {
    let mut cluster = Cluster::new().await;
    // Before any controller runs: status says what is missing and fails; seal says where
    // it looked.
    let admin = cluster.path("admin");
    let admin = admin.to_str().unwrap();
    let status = cluster.kseal_unchecked(&["status", "--kubeconfig", admin], b"");
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr)
            .contains("no kseal controller in namespace \"kseal-system\""),
        "{status:?}"
    );
    let status = String::from_utf8(status.stdout).unwrap();
    let missing = "ConfigMap kseal-system/kseal-recipients not found: is kseal-controller installed and running in namespace kseal-system?";
    assert!(
        status.contains(&format!("keys: none published ({missing}")),
        "{status}"
    );
    assert!(status.contains("leader: none"), "{status}");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: shop\nstringData:\n  password: p\n";
    let out = cluster.kseal_unchecked(&["seal", "--kubeconfig", admin], secret.as_bytes());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(missing),
        "{out:?}"
    );

    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let token = cluster.plane.user("dev", &[]).unwrap();
    let dev = cluster.path("dev-kubeconfig");
    cluster
        .plane
        .write_kubeconfig(&dev, &token, "shop")
        .unwrap();
    let no_namespace = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-cluster\nstringData:\n  password: p\n";
    let out = cluster.kseal(
        &[
            "seal",
            "--kubeconfig",
            dev.to_str().unwrap(),
            "-w",
            "fc.yaml",
        ],
        no_namespace.as_bytes(),
    );
    assert!(out.stderr.is_empty());
    let sealed = std::fs::read_to_string(cluster.path("fc.yaml")).unwrap();
    assert!(
        sealed.contains("namespace: shop"),
        "the context's namespace is the default: {sealed}"
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("fc.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "from-cluster").await,
        ("True".into(), "Unsealed".into())
    );

    let admin = cluster.path("admin");
    let status = String::from_utf8(
        cluster
            .kseal(&["status", "--kubeconfig", admin.to_str().unwrap()], b"")
            .stdout,
    )
    .unwrap();
    assert!(status.contains("leader: replica-a"), "{status}");
    let renewed = status.split("(renewed ").nth(1).unwrap_or_default();
    assert_eq!(renewed.find(')'), Some(20), "to the second: {status}");
    assert!(
        status.contains("sealedsecrets: 1 [1 ready (Unsealed)]"),
        "{status}"
    );
    // kubectl's habit, the namespace first (`kubectl kseal -n shop status`).
    for (ns, want) in [("shop", 1), ("default", 0)] {
        let args = ["-n", ns, "status", "--kubeconfig", admin.to_str().unwrap()];
        let status = String::from_utf8(cluster.kseal(&args, b"").stdout).unwrap();
        let line = format!("sealedsecrets in {ns}: {want} [");
        assert!(status.contains(&line), "{status}");
    }
    let doc: kseal_core::recipients::RecipientsDocument =
        serde_json::from_str(&std::fs::read_to_string(cluster.path("recipients.json")).unwrap())
            .unwrap();
    assert!(
        status.contains(&doc.recipients[0].fingerprint.0),
        "{status}"
    );
    // A namespace the controller is not in: said, not guessed (issue 27: exit 0 with
    // "encryption at rest: not checked by the controller (--require-encryption-at-rest=off?)").
    let out = cluster.kseal_unchecked(
        &[
            "status",
            "--kubeconfig",
            admin.to_str().unwrap(),
            "--controller-namespace",
            "shop",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no kseal controller in namespace \"shop\"")
            && err.contains("--controller-namespace"),
        "{err}"
    );
}

/// An existing Secret annotated `kseal.dev/patch: "true"` gets the sealed items merged in
/// and keeps its other items, with no owner reference; a template annotated
/// `kseal.dev/skip-owner-reference: "true"` gives a Secret that outlives its SealedSecret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_mode_and_skip_owner_reference() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let recipients = cluster.recipients().await;
    let cert = recipients.to_str().unwrap();
    let secrets = cluster.secrets("shop");

    let existing = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\n  namespace: shop\n  annotations:\n    kseal.dev/patch: \"true\"\nstringData:\n  other: kept\n";
    std::fs::write(cluster.path("shared-secret.yaml"), existing).unwrap();
    cluster
        .kubectl(&[
            "apply",
            "-f",
            cluster.path("shared-secret.yaml").to_str().unwrap(),
        ])
        .await;
    let input = secret_yaml("shop", "shared", &[("password", "merged-in")]);
    cluster.kseal(
        &["seal", "--cert", cert, "-w", "shared.yaml"],
        input.as_bytes(),
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("shared.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "shared").await,
        ("True".into(), "Unsealed".into())
    );
    let merged = secrets.get("shared").await.unwrap();
    assert_eq!(data_of(&merged, "other").as_deref(), Some("kept"));
    assert_eq!(data_of(&merged, "password").as_deref(), Some("merged-in"));
    assert!(
        merged.owner_references().is_empty(),
        "patch mode takes no ownership"
    );

    let annotated = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: lasting\n  namespace: shop\n  annotations:\n    kseal.dev/skip-owner-reference: \"true\"\nstringData:\n  password: stays\n";
    cluster.kseal(
        &["seal", "--cert", cert, "-w", "lasting.yaml"],
        annotated.as_bytes(),
    );
    cluster
        .kubectl(&[
            "apply",
            "-f",
            cluster.path("lasting.yaml").to_str().unwrap(),
        ])
        .await;
    let lasting = wait_for("the Secret", || async {
        secrets.get_opt("lasting").await.ok().flatten()
    })
    .await;
    assert!(lasting.owner_references().is_empty());
    cluster
        .sealed("shop")
        .delete("lasting", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        secrets.get_opt("lasting").await.unwrap().is_some(),
        "outlives its SealedSecret"
    );
}

/// Garbage collection by the real kube-controller-manager: deleting a SealedSecret
/// removes its Secret; `kubectl delete --cascade=orphan` keeps the Secret and the
/// collector drops its owner reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_follows_the_cascade() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    for name in ["collected", "orphaned"] {
        cluster
            .seal_and_apply(&cert, "shop", name, &[("password", "pw-gc")])
            .await;
        assert_eq!(cluster.ready("shop", name).await.1, "Unsealed");
    }
    let secrets = cluster.secrets("shop");
    cluster
        .kubectl(&["delete", "sealedsecret", "collected", "-n", "shop"])
        .await;
    wait_for("the Secret to be collected", || async {
        secrets
            .get_opt("collected")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // The controller keeps running: a SealedSecret being deleted is the collector's
    // alone, so the controller does not write the owner reference back (it did, and the
    // Secret the orphaning kept was then collected: seen in the drop-in test).
    cluster
        .kubectl(&[
            "delete",
            "sealedsecret",
            "orphaned",
            "-n",
            "shop",
            "--cascade=orphan",
        ])
        .await;
    wait_for("the orphan's owner reference to go", || async {
        let s = secrets.get_opt("orphaned").await.ok()??;
        s.owner_references().is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = secrets.get("orphaned").await.unwrap();
    assert_eq!(data_of(&kept, "password").as_deref(), Some("pw-gc"));
}
