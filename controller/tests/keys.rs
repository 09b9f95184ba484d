//! Keys and high availability, end to end: rotations keep old objects unsealable,
//! replicas racing at first start leave exactly one key, killing the leader lets the
//! other replica take over within the lease duration, and a restart with nothing changed
//! costs no decryption and no write.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::recipients::RecipientsDocument;
use kube::api::{Api, ListParams};

async fn document(cluster: &Cluster) -> RecipientsDocument {
    cluster.document().await
}

fn rotate_key(cluster: &Cluster) -> std::process::Output {
    cluster.rotate_key(None)
}

async fn key_secrets(cluster: &Cluster) -> usize {
    let api: Api<Secret> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    api.list(&ListParams::default().labels("kseal.dev/key"))
        .await
        .unwrap()
        .items
        .len()
}

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
        let backup = cluster
            .kubectl(&[
                "get",
                "secret",
                "-n",
                "kseal-system",
                "-l",
                "kseal.dev/key",
                "-o",
                format,
            ])
            .await;
        let file = format!("kseal-keys.backup.{format}");
        std::fs::write(cluster.path(&file), backup).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_at_first_start_leave_one_key() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.start_controller("replica-b");
    cluster.recipients().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(key_secrets(&cluster).await, 1);
    assert_eq!(document(&cluster).await.recipients.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_hands_over_within_the_lease() {
    let mut cluster = Cluster::new().await;
    let ports = [
        ("replica-a", cluster.start_controller("replica-a")),
        ("replica-b", cluster.start_controller("replica-b")),
    ];
    let cert = cluster.recipients().await;
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    let holder = |l: Lease| {
        l.spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let leader = wait_for("a leader", || async {
        leases
            .get_opt("kseal-controller-leader")
            .await
            .ok()
            .flatten()
            .and_then(holder)
    })
    .await;
    let other = if leader == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };

    let input = secret_yaml("shop", "before", &[("password", "v1")]);
    cluster.kseal(
        &[
            "seal",
            "--cert",
            cert.to_str().unwrap(),
            "-w",
            "before.yaml",
        ],
        input.as_bytes(),
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("before.yaml").to_str().unwrap()])
        .await;
    assert_eq!(cluster.ready("shop", "before").await.0, "True");

    cluster.stop_controller(&leader);
    let killed = Instant::now();
    let new_leader = wait_for("the other replica to lead", || async {
        leases
            .get_opt("kseal-controller-leader")
            .await
            .ok()
            .flatten()
            .and_then(holder)
            .filter(|h| h == other)
    })
    .await;
    let handover = killed.elapsed();
    assert_eq!(new_leader, other);
    let port = ports.iter().find(|(id, _)| *id == other).unwrap().1;
    wait_for_status(port, "/readyz", 200).await;
    // Lease 3 s: the other replica must take over within about one lease duration;
    // the bound leaves room for a loaded CI machine.
    assert!(
        handover < Duration::from_secs(9),
        "handover took {handover:?} with a 3 s lease"
    );

    cluster
        .seal_and_apply(&cert, "shop", "after", &[("password", "v2")])
        .await;
    assert_eq!(
        cluster.ready("shop", "after").await.0,
        "True",
        "the new leader reconciles"
    );
}

/// `kseal verify` and `kseal reseal` through the controller's services: a good file
/// verifies, a damaged one does not; after a rotation, reseal moves a file to the newest
/// key and the cluster still unseals it; the services are rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_reseal_through_the_controller() {
    let mut cluster = Cluster::new().await;
    let port = cluster.start_controller_with("replica-a", &["--http-services"]);
    let url = format!("http://127.0.0.1:{port}");
    let cert = cluster.recipients().await;
    let input = secret_yaml(
        "shop",
        "app",
        &[("password", "pw-one-Qz"), ("token", "tok-two-Qz")],
    );
    cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-w", "app.yaml"],
        input.as_bytes(),
    );

    let out = cluster.kseal(&["verify", "app.yaml", "--controller-url", &url], b"");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("shop/app: the cluster can unseal it (2 items)")
    );
    let damaged = std::fs::read_to_string(cluster.path("app.yaml"))
        .unwrap()
        .replacen("    password: YWdl", "    password: YWdM", 1);
    std::fs::write(cluster.path("damaged.yaml"), damaged).unwrap();
    let out = cluster.kseal_unchecked(&["verify", "damaged.yaml", "--controller-url", &url], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be unsealed by this cluster") && err.contains("item \"password\""),
        "{err}"
    );

    let rotated = rotate_key(&cluster);
    assert!(rotated.status.success());
    wait_for("the new key", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let newest = document(&cluster).await.recipients[0].fingerprint.clone();
    let before = std::fs::read_to_string(cluster.path("app.yaml")).unwrap();
    assert!(!before.contains(&newest.0));
    cluster.kseal(&["reseal", "app.yaml", "--controller-url", &url], b"");
    let after = std::fs::read_to_string(cluster.path("app.yaml")).unwrap();
    assert!(
        after.contains(&newest.0),
        "resealed to the newest key: {after}"
    );
    assert!(!after.contains("pw-one-Qz") && !after.contains("tok-two-Qz"));
    cluster
        .kubectl(&["apply", "-f", cluster.path("app.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "app").await,
        ("True".into(), "Unsealed".into())
    );

    // 40 requests in one go: the per-client limit (5/s, burst 10) refuses some.
    let many = std::iter::repeat_n(after.as_str(), 40)
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(cluster.path("many.yaml"), many).unwrap();
    let out = cluster.kseal_unchecked(&["verify", "many.yaml", "--controller-url", &url], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate limited"));
}

/// The same through SealedSecretRequest objects and the kubeconfig alone (no port, no
/// proxy): verify, refusal with the reason, reseal after a rotation; requests are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_reseal_through_the_api() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let admin = cluster.path("admin");
    let admin = admin.to_str().unwrap();
    let input = secret_yaml("shop", "app", &[("password", "pw-api-Qz")]);
    cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-w", "app.yaml"],
        input.as_bytes(),
    );
    let out = cluster.kseal(&["verify", "app.yaml", "--kubeconfig", admin], b"");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("shop/app: the cluster can unseal it (1 item)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A GitOps directory: the SealedSecret beside a ConfigMap and a kustomization, which
    // are passed over (issue 27: they failed the run).
    let repo = cluster.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(cluster.path("app.yaml"), repo.join("app.yaml")).unwrap();
    std::fs::write(repo.join("kustomization.yaml"), "resources: [app.yaml]\n").unwrap();
    std::fs::write(
        repo.join("config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    )
    .unwrap();
    let out = cluster.kseal(&["verify", "repo", "--kubeconfig", admin], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("repo/app.yaml: shop/app: the cluster can unseal it"),
        "{stdout}"
    );
    // Moved to another name: the envelope refuses it, and the reason comes back.
    let moved = std::fs::read_to_string(cluster.path("app.yaml"))
        .unwrap()
        .replace("name: app", "name: other");
    std::fs::write(cluster.path("moved.yaml"), moved).unwrap();
    let out = cluster.kseal_unchecked(&["verify", "moved.yaml", "--kubeconfig", admin], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shop/other: cannot be unsealed by this cluster: ScopeMismatch (item \"password\": sealed for name \"app\""),
        "{err}"
    );
    // As one JSON report: the reason and the message apart.
    let out = cluster.kseal_unchecked(
        &[
            "verify",
            "app.yaml",
            "moved.yaml",
            "--kubeconfig",
            admin,
            "-o",
            "json",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checked"], 2);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["objects"][0]["ok"], true);
    assert_eq!(report["objects"][0]["items"], 1);
    assert_eq!(report["objects"][1]["object"], "shop/other");
    assert_eq!(report["objects"][1]["refused"]["reason"], "ScopeMismatch");
    assert!(
        report["objects"][1]["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("sealed for name \"app\""),
        "{report}"
    );
    // The same reason as the condition and the metric, with what to do.
    assert!(
        err.contains(
            "): seal it again for where it is (kseal seal with the right -n, --name or --scope)"
        ),
        "{err}"
    );

    assert!(rotate_key(&cluster).status.success());
    wait_for("the new key", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let newest = document(&cluster).await.recipients[0].fingerprint.clone();
    cluster.kseal(&["reseal", "app.yaml", "--kubeconfig", admin], b"");
    let after = std::fs::read_to_string(cluster.path("app.yaml")).unwrap();
    assert!(
        after.contains(&newest.0),
        "resealed to the newest key: {after}"
    );
    assert!(!after.contains("pw-api-Qz"));
    cluster
        .kubectl(&["apply", "-f", cluster.path("app.yaml").to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "app").await,
        ("True".into(), "Unsealed".into())
    );
    let left = cluster
        .kubectl(&["get", "sealedsecretrequests", "-A", "-o", "name"])
        .await;
    assert!(
        left.trim().is_empty(),
        "the CLI deletes its requests: {left}"
    );
}

/// A restarted controller finds the keys it has before deciding about rotation: no new key
/// appears when the newest one is still fresh, and both keys are loaded and used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_rotate() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    assert!(rotate_key(&cluster).status.success());
    wait_for("two keys", || async {
        (document(&cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    cluster.stop_controller("replica-a");
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    let port = cluster.start_controller("replica-b");
    wait_for("the restarted controller to lead", || async {
        let lease = leases
            .get_opt("kseal-controller-leader")
            .await
            .ok()
            .flatten()?;
        (lease.spec?.holder_identity.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    wait_for_status(port, "/readyz", 200).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(key_secrets(&cluster).await, 2);
    assert_eq!(cluster.metric("replica-b", "kseal_keys"), Some(2.0));
}

/// The outage: a controller restarted with existing keys (a rollout, a node drain, an OOM
/// kill) must be ready and unsealing within seconds, with the keys it had: an object
/// sealed before the restart is re-reconciled and one sealed after it unseals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_unseals_with_the_keys_it_had() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "before", &[("password", "v1")])
        .await;
    assert_eq!(cluster.ready("shop", "before").await.0, "True");
    let published = document(&cluster).await;

    cluster.stop_controller("replica-a");
    let restarted = Instant::now();
    let port = cluster.start_controller("replica-a");
    wait_for_status(port, "/readyz", 200).await;
    assert_eq!(cluster.metric("replica-a", "kseal_keys"), Some(1.0));
    cluster
        .seal_and_apply(&cert, "shop", "after", &[("password", "v2")])
        .await;
    assert_eq!(
        cluster.ready("shop", "after").await,
        ("True".into(), "Unsealed".into())
    );
    let secret = cluster.secrets("shop").get("after").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"v2");
    assert!(
        restarted.elapsed() < Duration::from_secs(20),
        "unsealing came back {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(cluster.ready("shop", "before").await.0, "True");
    assert_eq!(key_secrets(&cluster).await, 1, "a restart makes no key");
    assert_eq!(document(&cluster).await, published);
}

/// A standby replica loads the keys too (it serves `/readyz`, verify and the recipients
/// while another replica leads), so a failover starts with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_loads_the_keys() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let published = document(&cluster).await;
    let standby = cluster.start_controller("replica-b");
    wait_for_status(standby, "/readyz", 200).await;
    assert_eq!(cluster.metric("replica-b", "kseal_leader"), Some(0.0));
    assert_eq!(cluster.metric("replica-b", "kseal_keys"), Some(1.0));
    let (code, body) = http_get(standby, "/v1/recipients").unwrap();
    assert_eq!(code, 200);
    let served: RecipientsDocument = serde_json::from_str(&body).unwrap();
    assert_eq!(served, published);
}

/// The rotation CronJob runs as its own ServiceAccount (`components/key-rotation`), not
/// the controller's: it makes a key the controller then publishes and uses, and it can
/// neither list nor read the keys that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_job_makes_keys_and_reads_none() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let first = cluster.recipients().await;
    let rbac = repo().join("manifests/components/key-rotation/rbac.yaml");
    cluster
        .kubectl(&["apply", "-f", rbac.to_str().unwrap()])
        .await;
    let token = cluster
        .plane
        .service_account("kseal-system", "kseal-rotate-key")
        .await
        .unwrap();
    let kubeconfig = cluster.path("rotate-key");
    cluster
        .plane
        .write_kubeconfig(&kubeconfig, &token, "kseal-system")
        .unwrap();
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

/// `--watch-namespaces` limits the controller to those namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_limits_the_controller() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller_with("replica-a", &["--watch-namespaces", "shop,billing"]);
    let cert = cluster.recipients().await;
    for ns in ["shop", "web"] {
        cluster
            .seal_and_apply(&cert, ns, "app", &[("password", "pw-ns-Qz")])
            .await;
    }
    assert_eq!(cluster.ready("shop", "app").await.0, "True");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let web = cluster.sealed("web").get("app").await.unwrap();
    assert!(web.status.is_none(), "web is not watched: {:?}", web.status);
    assert!(
        cluster
            .secrets("web")
            .get_opt("app")
            .await
            .unwrap()
            .is_none()
    );
}

/// The controller's own requests in the apiserver's audit log from line `from` on, as
/// (verb, resource with its subresource, namespace/name).
fn controller_requests(log: &std::path::Path, from: usize) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .skip(from)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["user"]["username"] == "system:serviceaccount:kseal-system:kseal-controller"
        })
        .map(|e| {
            let o = &e["objectRef"];
            let resource = match o["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", o["resource"].as_str().unwrap_or_default()),
                None => o["resource"].as_str().unwrap_or_default().to_owned(),
            };
            let at = format!(
                "{}/{}",
                o["namespace"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default()
            );
            (
                e["verb"].as_str().unwrap_or_default().to_owned(),
                resource,
                at,
            )
        })
        .collect()
}

fn audit_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Requests that write, or that read one object, on resources outside the controller's
/// own namespace (its lease, keys and recipients live there).
fn writes_and_reads(requests: &[(String, String, String)]) -> Vec<&(String, String, String)> {
    requests
        .iter()
        .filter(|(verb, resource, at)| {
            !resource.is_empty()
                && !at.starts_with("kseal-system/")
                && matches!(
                    verb.as_str(),
                    "create" | "update" | "patch" | "delete" | "get"
                )
        })
        .collect()
}

/// Steady state costs nothing. A new SealedSecret costs one write for its Secret and one
/// for its status, and no read. A restarted controller with every object up to date
/// decrypts nothing and writes nothing (its own metrics and the apiserver's audit log
/// agree) and reads nothing beyond its watches. An edit of one Secret's data by hand is
/// undone at once, and that Secret is the only thing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_nothing_changed_costs_nothing_and_an_edit_is_undone() {
    use kseal_core::manifest::SecretInput;
    use kseal_core::recipients::{RecipientSet, parse_cert};
    use kube::api::{Patch, PatchParams, PostParams};

    let audit = tempfile::tempdir().unwrap();
    let (policy, log) = (
        audit.path().join("policy.yaml"),
        audit.path().join("audit.log"),
    );
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    let mut cluster = Cluster::with_options(Options {
        apiserver_flags: vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", log.display()),
            "--audit-log-mode=blocking".into(),
        ],
        ..Options::default()
    })
    .await;
    cluster.start_controller("replica-a");
    let cert = std::fs::read_to_string(cluster.recipients().await).unwrap();
    let recipients = RecipientSet::new(parse_cert(&cert).unwrap()).unwrap();

    // 40 objects in two namespaces: plain ones, one with a template (labels, annotations,
    // a type), one whose Secret has no owner reference.
    let before_create = audit_lines(&log);
    let mut names = Vec::new();
    for i in 0..40 {
        let ns = if i % 2 == 0 { "shop" } else { "web" };
        let name = format!("app-{i:02}");
        let mut input = SecretInput {
            name: Some(name.clone()),
            namespace: Some(ns.into()),
            ..SecretInput::default()
        };
        for (k, v) in [
            ("password", format!("pw-{i}")),
            ("username", "admin".into()),
        ] {
            input
                .data
                .insert(k.into(), zeroize::Zeroizing::new(v.into_bytes()));
        }
        if i == 3 {
            input.labels.insert("app".into(), "web".into());
            input.annotations.insert("team".into(), "payments".into());
            input.type_ = Some("kubernetes.io/basic-auth".into());
        }
        if i == 5 {
            input.annotations.insert(
                kseal_core::policy::SKIP_OWNER_ANNOTATION.into(),
                "true".into(),
            );
        }
        let sealed =
            kseal_core::sealing::seal_secret(&input, kseal_core::scope::Scope::Strict, &recipients)
                .unwrap();
        cluster
            .sealed(ns)
            .create(&PostParams::default(), &sealed)
            .await
            .unwrap();
        names.push((ns, name));
    }
    for (ns, name) in &names {
        assert_eq!(cluster.ready(ns, name).await.0, "True", "{ns}/{name}");
    }
    // Each new object: one Secret write and one status write, no read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = controller_requests(&log, before_create);
    let costly = writes_and_reads(&created);
    for (ns, name) in &names {
        let at = format!("{ns}/{name}");
        let of = |resource: &str| {
            costly
                .iter()
                .filter(|(_, r, a)| r == resource && *a == at)
                .map(|(v, _, _)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(of("secrets"), ["patch"], "{at}: {costly:?}");
        assert_eq!(of("sealedsecrets/status"), ["patch"], "{at}");
        assert!(
            of("sealedsecrets").is_empty(),
            "{at}: {:?}",
            of("sealedsecrets")
        );
    }
    let opened = cluster
        .metric("replica-a", "kseal_items_opened_total")
        .unwrap();
    assert_eq!(opened, 80.0, "two items per object, each opened once");

    // A restart: nothing to do.
    cluster.stop_controller("replica-a");
    let before_restart = audit_lines(&log);
    cluster.start_controller("replica-b");
    // Every object looked at, at least once (the initial list and the keys loading both
    // reconcile everything).
    wait_for("the new leader to look at every object", || async {
        cluster
            .metric("replica-b", "kseal_up_to_date_total")
            .filter(|n| *n >= 40.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.metric("replica-b", "kseal_items_opened_total"),
        Some(0.0)
    );
    let metrics = cluster.metrics("replica-b");
    assert!(
        !metrics.contains("kseal_api_writes_total{"),
        "no writes: {metrics}"
    );
    let restarted = controller_requests(&log, before_restart);
    assert!(
        writes_and_reads(&restarted).is_empty(),
        "after the restart: {:?}",
        writes_and_reads(&restarted)
    );
    for (ns, name) in &names {
        assert_eq!(cluster.ready(ns, name).await.0, "True");
    }

    // An edit of one Secret's data by hand: undone, and nothing else written.
    let secrets = cluster.secrets("web");
    let before_edit = audit_lines(&log);
    secrets
        .patch(
            "app-07",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "tampered"}})),
        )
        .await
        .unwrap();
    wait_for("the edit to be undone", || async {
        let s = secrets.get("app-07").await.ok()?;
        let value = s.data?.get("password")?.0.clone();
        (value == b"pw-7").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let edited = controller_requests(&log, before_edit);
    let writes: Vec<_> = writes_and_reads(&edited)
        .into_iter()
        .filter(|(verb, _, _)| verb != "get")
        .collect();
    assert_eq!(
        writes,
        [&(
            "patch".to_owned(),
            "secrets".to_owned(),
            "web/app-07".to_owned()
        )],
        "only the edited Secret is written"
    );
    assert_eq!(
        cluster.metric("replica-b", "kseal_items_opened_total"),
        Some(2.0)
    );
}

/// `kseal verify` among other requests in its namespace, at one request per second: every
/// file is answered, and the user is told once why it is slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_verify_says_so_once_and_finishes() {
    use kseal_core::resource::SealedSecretRequest;
    let mut cluster = Cluster::new().await;
    let limit = ["--rate-limit", "1", "--rate-limit-burst", "1"];
    cluster.start_controller_with("replica-a", &limit);
    let cert = cluster.recipients().await;
    let admin = cluster.path("admin");
    let mut args = vec![
        "verify",
        "-n",
        "shop",
        "--kubeconfig",
        admin.to_str().unwrap(),
    ];
    let files: Vec<String> = (0..3).map(|i| format!("app{i}.yaml")).collect();
    for (i, file) in files.iter().enumerate() {
        let input = secret_yaml("shop", &format!("app{i}"), &[("password", "pw-throttled")]);
        cluster.kseal(
            &["seal", "--cert", cert.to_str().unwrap(), "-w", file],
            input.as_bytes(),
        );
        args.push(file);
    }
    let requests: Api<SealedSecretRequest> = Api::namespaced(cluster.admin.clone(), "shop");
    let spec = empty_verify_request("shop");
    // Other requests in the namespace, ten a second for three seconds, while it runs.
    let others = tokio::spawn(async move {
        for i in 0..30 {
            let request = SealedSecretRequest::new(&format!("other-{i}"), spec.clone());
            let params = kube::api::PostParams::default();
            requests.create(&params, &request).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = cluster.kseal(&args, b"");
    others.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("the cluster can unseal it").count(),
        3,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("rate limit").count(), 1, "{stderr}");
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
    let stranger = cluster.kseal(&["keygen", "-o", "stranger-key.txt"], b"");
    let recipient = String::from_utf8_lossy(&stranger.stdout).trim().to_owned();
    let input = secret_yaml("shop", "lost", &[("password", "pw-walk-4")]);
    cluster.kseal(
        &["seal", "-r", &recipient, "-w", "lost.yaml"],
        input.as_bytes(),
    );
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
