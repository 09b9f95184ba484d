//! The controller's encryption-at-rest policy, end to end: the real binary with the RBAC
//! from `manifests/`, against a real kube-apiserver whose `EncryptionConfiguration`
//! (none, KMS v2 through a plugin, aescbc, identity first) decides what the canary write reports. Under `enforce` with a plaintext verdict nothing is
//! unsealed and the reason is shown; once the verdict is encrypted everything unseals;
//! an existing Secret is left alone when the verdict turns plaintext again.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
/// Secrets through a KMS v2 plugin named `vault`.
const KMS_V2: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix://KMS_SOCKET\n      - identity: {}\n";

/// Back to plaintext after KMS: identity first, the KMS provider kept so that what it
/// encrypted can still be read (without it the apiserver cannot list Secrets at all).
const KMS_THEN_IDENTITY_FIRST: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix://KMS_SOCKET\n";

/// Secrets through aescbc.
const AESCBC: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";

/// An aescbc key configured, but identity first: new writes are plaintext.
const IDENTITY_FIRST: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";

fn kseal_status(cluster: &Cluster) -> String {
    let admin = cluster.path("admin");
    let out = cluster.kseal(&["status", "--kubeconfig", admin.to_str().unwrap()], b"");
    String::from_utf8(out.stdout).unwrap()
}

/// Waits until the replica's metrics show this verdict; returns the metrics text.
async fn verdict_metric(cluster: &Cluster, verdict: &str) -> String {
    let line = format!("kseal_encryption_at_rest{{verdict=\"{verdict}\"}} 1");
    wait_for("the verdict metric", || async {
        let m = cluster.metrics("replica-a");
        m.contains(&line).then_some(m)
    })
    .await
}

/// The Ready condition once it is True. (The Secret is written before the status, so a
/// test that saw the Secret may still read the condition from before.)
async fn ready_true(cluster: &Cluster, name: &str) -> (String, String) {
    wait_for("Ready=True", || async {
        let ready = cluster.ready("shop", name).await;
        (ready.0 == "True").then_some(ready)
    })
    .await
}

async fn seal_and_apply(cluster: &Cluster, cert: &str, name: &str, value: &str) {
    cluster
        .seal_and_apply(
            std::path::Path::new(cert),
            "shop",
            name,
            &[("password", value)],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_holds_unsealing_until_secrets_are_encrypted_at_rest() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller_with(
        "replica-a",
        &[
            "--require-encryption-at-rest",
            "enforce",
            "--at-rest-interval",
            "1s",
        ],
    );
    let recipients = cluster.recipients().await;
    let cert = recipients.to_str().unwrap();
    for name in ["db", "api"] {
        seal_and_apply(&cluster, cert, name, "pw-at-rest-1").await;
    }

    // Plaintext verdict: nothing unsealed, the reason on each object.
    for name in ["db", "api"] {
        let (status, reason) = cluster.ready("shop", name).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "EncryptionAtRestNotConfigured")
        );
    }
    assert!(
        cluster
            .secrets("shop")
            .get_opt("db")
            .await
            .unwrap()
            .is_none()
    );
    let ss = cluster.sealed("shop").get("db").await.unwrap();
    let message = &ss.status.unwrap().conditions[0].message;
    assert!(message.contains("stores Secrets in plaintext"), "{message}");
    let metrics = verdict_metric(&cluster, "plaintext").await;
    assert!(
        metrics.contains("kseal_encryption_at_rest{verdict=\"encrypted\"} 0"),
        "{metrics}"
    );
    let status = kseal_status(&cluster);
    assert!(status.contains("encryption at rest: plaintext"), "{status}");
    assert!(status.contains("recorded no transformation"), "{status}");
    let events = cluster
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "-n",
            "kseal-system",
            "-o",
            "json",
        ])
        .await;
    assert!(events.contains("EncryptionAtRestNotConfigured"), "{events}");

    // Taking away what the checks read turns the verdict unknown, which does not lift
    // plaintext: a new object is still held. (An apiserver that restarts answers its
    // first requests before its RBAC caches fill, which does the same for a moment.)
    let binding = "kseal-controller-monitoring";
    cluster
        .kubectl(&["delete", "clusterrolebinding", binding])
        .await;
    verdict_metric(&cluster, "unknown").await;
    seal_and_apply(&cluster, cert, "cache", "pw-at-rest-1").await;
    let (status, reason) = cluster.ready("shop", "cache").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "EncryptionAtRestNotConfigured")
    );
    let status = kseal_status(&cluster);
    assert!(status.contains("encryption at rest: unknown"), "{status}");
    let role = "--clusterrole=system:monitoring";
    let account = "--serviceaccount=kseal-system:kseal-controller";
    cluster
        .kubectl(&["create", "clusterrolebinding", binding, role, account])
        .await;

    // The apiserver now encrypts Secrets: once a check finds that, everything unseals.
    cluster
        .plane
        .set_encryption_config(Some(KMS_V2))
        .await
        .unwrap();
    verdict_metric(&cluster, "encrypted").await;
    for name in ["db", "api", "cache"] {
        wait_for("the Secret", || async {
            cluster.secrets("shop").get_opt(name).await.ok().flatten()
        })
        .await;
        let (status, reason) = ready_true(&cluster, name).await;
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Unsealed"));
    }
    let status = kseal_status(&cluster);
    assert!(
        status.contains("encryption at rest: encrypted (kms:v2:vault)"),
        "{status}"
    );
    let stored = cluster
        .plane
        .stored_secret("shop", "db")
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.starts_with(b"k8s:enc:kms:v2:vault:"),
        "stored through the plugin"
    );

    // Plaintext again: an update is refused and the existing Secret stays as it was.
    cluster
        .plane
        .set_encryption_config(Some(KMS_THEN_IDENTITY_FIRST))
        .await
        .unwrap();
    verdict_metric(&cluster, "plaintext").await;
    seal_and_apply(&cluster, cert, "db", "pw-at-rest-2").await;
    let (status, reason) = cluster.ready("shop", "db").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "EncryptionAtRestNotConfigured")
    );
    let secret = cluster.secrets("shop").get("db").await.unwrap();
    let value = secret.data.unwrap().get("password").cloned().unwrap();
    assert_eq!(
        value.0, b"pw-at-rest-1",
        "the existing Secret is left alone"
    );
    assert!(
        !cluster.logs().contains("pw-at-rest"),
        "no value in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_reports_plaintext_and_unseals_anyway() {
    let mut cluster = Cluster::with_options(Options {
        encryption_config: Some(IDENTITY_FIRST.into()),
        ..Options::default()
    })
    .await;
    cluster.start_controller_with("replica-a", &["--at-rest-interval", "1s"]);
    let recipients = cluster.recipients().await;
    seal_and_apply(&cluster, recipients.to_str().unwrap(), "db", "pw-warn").await;
    let (status, reason) = cluster.ready("shop", "db").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Unsealed"));
    verdict_metric(&cluster, "plaintext").await;
    assert!(cluster.logs().contains("Secrets are stored in plaintext"));
}

/// Under `enforce` on an apiserver that encrypts with aescbc, everything unseals at once,
/// and etcd holds the Secret encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_unseals_on_aescbc() {
    let mut cluster = Cluster::with_options(Options {
        encryption_config: Some(AESCBC.into()),
        ..Options::default()
    })
    .await;
    cluster.start_controller_with("replica-a", &["--require-encryption-at-rest", "enforce"]);
    let recipients = cluster.recipients().await;
    seal_and_apply(&cluster, recipients.to_str().unwrap(), "db", "pw-aescbc").await;
    let secret = wait_for("the Secret", || async {
        cluster.secrets("shop").get_opt("db").await.ok().flatten()
    })
    .await;
    assert_eq!(secret.data.unwrap()["password"].0, b"pw-aescbc");
    let (status, reason) = ready_true(&cluster, "db").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Unsealed"));
    verdict_metric(&cluster, "encrypted").await;
    let stored = cluster
        .plane
        .stored_secret("shop", "db")
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "stored with aescbc"
    );
    assert!(
        !stored.windows(9).any(|w| w == b"pw-aescbc"),
        "no plaintext in etcd"
    );
}
