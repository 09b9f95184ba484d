//! High availability, end to end: replicas racing at first start leave exactly one key,
//! killing the leader lets the other replica take over within the lease duration, a
//! restarted or standby replica holds the keys at once, and a restart with nothing
//! changed costs no decryption and no write.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use kseal_core::recipients::RecipientsDocument;

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
    let leader = wait_for("a leader", || lease_holder(&cluster)).await;
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
        lease_holder(&cluster).await.filter(|h| h == other)
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
    let port = cluster.start_controller("replica-b");
    wait_for("the restarted controller to lead", || async {
        (lease_holder(&cluster).await.as_deref() == Some("replica-b")).then_some(())
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
