//! Keys, end to end: rotations keep old objects unsealable, the rotation CronJob makes
//! keys and reads none, relabelled and removed keys are picked up without a restart, a
//! rotation walked through with the CLI, and a move to post-quantum keys.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::recipients::RecipientsDocument;
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_keep_every_retained_key_working() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    for round in 0..4 {
        if round > 0 {
            let out = rotate_key(&cluster);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let want = round + 1;
        wait_for("the new key to be published", || async {
            (document(&cluster).await.recipients.len() == want).then_some(())
        })
        .await;
        let cert = cluster.recipients().await;
        let input = secret_yaml(
            "shop",
            &format!("gen{round}"),
            &[("password", &format!("value-{round}"))],
        );
        let file = format!("gen{round}.yaml");
        cluster.kseal(
            &["seal", "--cert", cert.to_str().unwrap(), "-w", &file],
            input.as_bytes(),
        );
        let newest = &document(&cluster).await.recipients[0];
        let sealed = std::fs::read_to_string(cluster.path(&file)).unwrap();
        assert!(
            sealed.contains(&newest.fingerprint.0),
            "sealed to the newest key"
        );
    }
    for round in 0..4 {
        cluster
            .kubectl(&[
                "apply",
                "-f",
                cluster.path(&format!("gen{round}.yaml")).to_str().unwrap(),
            ])
            .await;
    }
    for round in 0..4 {
        assert_eq!(
            cluster.ready("shop", &format!("gen{round}")).await,
            ("True".into(), "Unsealed".into()),
            "object sealed with key {round}"
        );
    }
    assert_eq!(key_secrets(&cluster).await, 4);

    // Recovery from the backup docs/operations.md tells users to make (a List of the four
    // key Secrets), in YAML and in JSON: each object opens with it, offline.
    for format in ["yaml", "json"] {
        let file = format!("kseal-keys.backup.{format}");
        cluster.back_up_keys(format, &file).await;
        for round in 0..4 {
            let sealed = format!("gen{round}.yaml");
            let out = cluster.kseal(&["unseal", "-i", &file, "-f", &sealed, "-o", "json"], b"");
            let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let value = secret["data"]["password"].as_str().unwrap();
            use base64::Engine as _;
            let value = base64::engine::general_purpose::STANDARD
                .decode(value)
                .unwrap();
            assert_eq!(
                value,
                format!("value-{round}").as_bytes(),
                "{file}: {sealed}"
            );
        }
    }
}

/// The rotation CronJob runs as its own ServiceAccount (`components/key-rotation`), not
/// the controller's: it makes a key the controller then publishes and uses, and it can
/// neither list nor read the keys that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_job_makes_keys_and_reads_none() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let first = cluster.recipients().await;
    let (kubeconfig, token) = cluster.rotation_job_kubeconfig().await;
    let out = cluster.rotate_key(Some(&kubeconfig));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the new key published", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let first_key = document(&cluster).await.recipients[1].fingerprint.clone();
    let old: RecipientsDocument =
        serde_json::from_str(&std::fs::read_to_string(first).unwrap()).unwrap();
    assert_eq!(old.recipients[0].fingerprint, first_key);
    let key_name = {
        let api: Api<Secret> = Api::namespaced(cluster.admin.clone(), "kseal-system");
        api.list(&ListParams::default().labels("kseal.dev/key"))
            .await
            .unwrap()
            .items[0]
            .metadata
            .name
            .clone()
            .unwrap()
    };
    for args in [
        vec!["get", "secrets", "-n", "kseal-system"],
        vec!["get", "secret", "-n", "kseal-system", &key_name],
    ] {
        let out = cluster.kubectl_as(&token, &args).await;
        assert!(!out.status.success(), "the job may not {args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    }
}

/// Keys relabelled, relabelled back and removed are picked up without a restart: the
/// published recipients follow, and a SealedSecret sealed to that key stops and starts
/// unsealing (its Secret left alone while it cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelled_and_removed_keys_are_picked_up_without_a_restart() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let rotated = rotate_key(&cluster);
    assert!(rotated.status.success());
    let newest = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    wait_for("two published keys", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "app", &[("password", "pw-relabel-Qz")])
        .await;
    assert_eq!(cluster.ready("shop", "app").await.0, "True");

    let label = |value: &str| {
        vec![
            "label".to_owned(),
            "secret".to_owned(),
            "-n".to_owned(),
            "kseal-system".to_owned(),
            newest.clone(),
            format!("kseal.dev/key={value}"),
            "--overwrite".to_owned(),
        ]
    };
    let not_ready = || async {
        let ss = cluster.sealed("shop").get("app").await.ok()?;
        let c = ss
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == "False" && c.reason == "NoMatchingKey").then_some(())
    };
    let ready = || async {
        let ss = cluster.sealed("shop").get("app").await.ok()?;
        let c = ss
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == "True").then_some(())
    };

    // Retired: no longer published, no longer used.
    let args = label("retired");
    cluster
        .kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    wait_for("one published key", || async {
        (document(&cluster).await.recipients.len() == 1).then_some(())
    })
    .await;
    wait_for("NoMatchingKey", not_ready).await;
    let secret = cluster.secrets("shop").get("app").await.unwrap();
    assert!(
        secret.data.unwrap().contains_key("password"),
        "the Secret is left alone"
    );

    // Active again: used again.
    let args = label("active");
    cluster
        .kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    wait_for("Ready again", ready).await;

    // Removed: gone from the recipients, and the object cannot be unsealed.
    cluster
        .kubectl(&["delete", "secret", "-n", "kseal-system", &newest])
        .await;
    wait_for("one published key", || async {
        (document(&cluster).await.recipients.len() == 1).then_some(())
    })
    .await;
    wait_for("NoMatchingKey", not_ready).await;
}

/// A user's month across a key rotation, with the CLI as a user runs it: seal, rotate,
/// `validate` offline and against the cluster, `merge` (refused, pointing to `reseal`),
/// `reseal`, `merge` again, `validate` again; then the cluster unseals every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_walk_through_with_the_cli() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let admin = cluster.path("admin");
    let admin = admin.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = cluster.kseal_unchecked(args, b"");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Sealed to the cluster's key through the kubeconfig, and to the cluster plus an
    // escrow key.
    let input = secret_yaml("shop", "app", &[("password", "pw-walk-1")]);
    cluster.kseal(
        &["seal", "--kubeconfig", admin, "-w", "app.yaml"],
        input.as_bytes(),
    );
    let escrow = cluster.kseal(&["keygen", "-o", "escrow-key.txt"], b"");
    std::fs::write(cluster.path("escrow.recipients"), &escrow.stdout).unwrap();
    // (secret_yaml's type is basic-auth: a password is an item it must have.)
    let input = secret_yaml("shop", "escrowed", &[("password", "tk-walk-2")]);
    cluster.kseal(
        &[
            "seal",
            "--kubeconfig",
            admin,
            "--cluster",
            "-R",
            "escrow.recipients",
            "-w",
            "escrowed.yaml",
        ],
        input.as_bytes(),
    );
    let old = document(&cluster).await.recipients[0].fingerprint.clone();

    assert!(rotate_key(&cluster).status.success());
    wait_for("the new key", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let newest = document(&cluster).await.recipients[0].fingerprint.clone();
    assert_ne!(old, newest);

    // Offline, a kubeconfig in reach or not: the structure is checked, nothing more.
    let (code, stdout, stderr) = run(&["validate", "app.yaml", "--kubeconfig", admin]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("shop/app: ok (1 item, strict scope, 1 recipient)"),
        "{stdout}"
    );
    assert_eq!(stderr, "");
    // Against the cluster: sealed to a key it still holds is a pass, with a notice.
    let (code, stdout, stderr) = run(&["validate", "app.yaml", "--cluster", "--kubeconfig", admin]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("shop/app: ok"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "notice: app.yaml: shop/app: sealed to the cluster's older key {old}, which it still holds (the newest is {newest}): `kseal reseal app.yaml`"
        )),
        "{stderr}"
    );
    // The escrow key is a stranger unless named.
    let (code, _, stderr) = run(&[
        "validate",
        "escrowed.yaml",
        "--cluster",
        "--kubeconfig",
        admin,
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("also sealed to ["), "{stderr}");
    let (code, _, stderr) = run(&[
        "validate",
        "escrowed.yaml",
        "--cluster",
        "-R",
        "escrow.recipients",
        "--kubeconfig",
        admin,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("notice: "), "{stderr}");

    // A merge to the newest key would mix keys in one object: it points to reseal.
    let before = std::fs::read(cluster.path("app.yaml")).unwrap();
    let (code, _, stderr) = run(&[
        "merge",
        "app.yaml",
        "--from-literal",
        "api-token=tk-walk-3",
        "--kubeconfig",
        admin,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "the cluster's newest key is {newest} (keys rotate): run `kseal reseal app.yaml`"
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(cluster.path("app.yaml")).unwrap(),
        before,
        "nothing written"
    );

    cluster.kseal(
        &["reseal", "app.yaml", "escrowed.yaml", "--kubeconfig", admin],
        b"",
    );
    cluster.kseal(
        &[
            "merge",
            "app.yaml",
            "--from-literal",
            "api-token=tk-walk-3",
            "--kubeconfig",
            admin,
        ],
        b"",
    );
    for (file, extra) in [
        ("app.yaml", None),
        ("escrowed.yaml", Some("escrow.recipients")),
    ] {
        let mut args = vec!["validate", file, "--cluster", "--kubeconfig", admin];
        if let Some(r) = extra {
            args.extend(["-R", r]);
        }
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains(": ok ("), "{stdout}");
        assert_eq!(stderr, "", "no notice once resealed");
    }

    // A file sealed to a key the cluster never held fails against the cluster.
    cluster.seal_to_stranger("shop", "lost", "pw-walk-4");
    let (code, _, stderr) = run(&["validate", "lost.yaml", "--cluster", "--kubeconfig", admin]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("none of them a key the cluster holds"),
        "{stderr}"
    );

    // The cluster opens every value: the merged item, and the escrowed one.
    cluster.apply(&["app.yaml", "escrowed.yaml"]).await;
    assert_eq!(
        cluster.secret_value("shop", "app", "password").await,
        "pw-walk-1"
    );
    assert_eq!(
        cluster.secret_value("shop", "app", "api-token").await,
        "tk-walk-3"
    );
    assert_eq!(
        cluster.secret_value("shop", "escrowed", "password").await,
        "tk-walk-2"
    );
    // And the escrow key still opens the resealed file, offline.
    let out = cluster.kseal(
        &["unseal", "-i", "escrow-key.txt", "-f", "escrowed.yaml"],
        b"",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tk-walk-2")
            || String::from_utf8_lossy(&out.stdout).contains("dGstd2Fsay0y")
    );
}

/// A cluster moves from X25519 to post-quantum keys: the controller run with
/// `--key-type pq` makes a post-quantum key at once and publishes it first, `kseal seal`
/// through the kubeconfig then seals post-quantum without being told, and what the
/// X25519 key sealed keeps unsealing, and reseals to the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_moves_to_post_quantum_keys() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let admin = cluster.path("admin");
    let admin = admin.to_str().unwrap();
    let input = secret_yaml("shop", "before", &[("password", "pw-classic-1")]);
    cluster.kseal(
        &["seal", "--kubeconfig", admin, "-w", "before.yaml"],
        input.as_bytes(),
    );

    cluster.stop_controller("replica-a");
    cluster.start_controller_with("replica-b", &["--key-type", "pq"]);
    wait_for("a post-quantum key published first", || async {
        let doc = document(&cluster).await;
        (doc.recipients.len() == 2 && doc.recipients[0].recipient.starts_with("age1pq1"))
            .then_some(())
    })
    .await;
    let input = secret_yaml("shop", "after", &[("password", "pw-pq-2")]);
    cluster.kseal(
        &["seal", "--kubeconfig", admin, "-w", "after.yaml"],
        input.as_bytes(),
    );
    let inspect = |file: &str| {
        String::from_utf8_lossy(&cluster.kseal(&["inspect", file], b"").stdout).into_owned()
    };
    assert!(
        inspect("after.yaml").contains("(post-quantum)"),
        "{}",
        inspect("after.yaml")
    );
    assert!(!inspect("before.yaml").contains("post-quantum"));

    cluster.apply(&["before.yaml", "after.yaml"]).await;
    let value = |name| cluster.secret_value("shop", name, "password");
    assert_eq!(value("before").await, "pw-classic-1");
    assert_eq!(value("after").await, "pw-pq-2");

    // The X25519 value moves to the post-quantum key, and still unseals.
    cluster.kseal(&["reseal", "before.yaml", "--kubeconfig", admin], b"");
    assert!(
        inspect("before.yaml").contains("(post-quantum)"),
        "{}",
        inspect("before.yaml")
    );
    cluster.apply(&["before.yaml"]).await;
    assert_eq!(
        cluster.ready("shop", "before").await,
        ("True".into(), "Unsealed".into())
    );
    assert_eq!(value("before").await, "pw-classic-1");
    // And the CLI's validate holds it to the cluster's keys.
    let out = cluster.kseal(
        &[
            "validate",
            "before.yaml",
            "after.yaml",
            "--cluster",
            "--kubeconfig",
            admin,
        ],
        b"",
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
