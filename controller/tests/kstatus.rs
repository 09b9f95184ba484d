//! What Flux and Argo CD see: the real kstatus library (`sigs.k8s.io/cli-utils`
//! `status.Compute`) on the SealedSecrets the controller reports on. `Current` once
//! unsealed, `InProgress` while a new generation is not yet observed, `Failed` for a
//! failure only a person can fix (a wrong key, a value moved to another object).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kseal_tests::cluster::kstatus;

async fn verdict(cluster: &Cluster, name: &str) -> (String, String) {
    let json = cluster
        .kubectl(&["get", "sealedsecret", name, "-n", "shop", "-o", "json"])
        .await;
    let v = kstatus(&json).unwrap().remove(0);
    (v.status, v.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_current_in_progress_and_failed() {
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
    assert_eq!(verdict(&cluster, "db").await.0, "Current");

    // A new generation the controller has not seen yet.
    cluster.stop_controller("replica-a");
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-kstatus-2")])
        .await;
    let (status, message) = verdict(&cluster, "db").await;
    assert_eq!(status, "InProgress", "{message}");
    cluster.start_controller("replica-a");
    wait_for("the new generation, unsealed", || async {
        (verdict(&cluster, "db").await.0 == "Current").then_some(())
    })
    .await;

    // Sealed to a key this cluster does not hold: never unsealable.
    let stranger = cluster.kseal(&["keygen", "-o", "stranger-key.txt"], b"");
    let recipient = String::from_utf8(stranger.stdout).unwrap();
    let input = secret_yaml("shop", "foreign", &[("password", "pw-kstatus-3")]);
    cluster.kseal(
        &["seal", "-r", recipient.trim(), "-w", "foreign.yaml"],
        input.as_bytes(),
    );
    // Sealed for `db`, moved to `moved`: the binding refuses it.
    let moved = std::fs::read_to_string(cluster.path("db.yaml"))
        .unwrap()
        .replace("name: db", "name: moved");
    std::fs::write(cluster.path("moved.yaml"), moved).unwrap();
    for file in ["foreign.yaml", "moved.yaml"] {
        cluster
            .kubectl(&["apply", "-f", cluster.path(file).to_str().unwrap()])
            .await;
    }
    for (name, reason, why) in [
        ("foreign", "NoMatchingKey", "no key matches"),
        ("moved", "ScopeMismatch", "sealed for name \"db\""),
    ] {
        assert_eq!(cluster.ready("shop", name).await.1, reason);
        let (status, message) = verdict(&cluster, name).await;
        assert_eq!(status, "Failed", "{name}: {message}");
        assert!(message.contains(why), "{name}: {message}");
    }
    // Fixed by a person: sealed again for where it is, it is Current again.
    cluster
        .seal_and_apply(&cert, "shop", "moved", &[("password", "pw-kstatus-4")])
        .await;
    wait_for("the fixed object, current", || async {
        (verdict(&cluster, "moved").await.0 == "Current").then_some(())
    })
    .await;
}
