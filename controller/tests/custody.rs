//! Key custody on the real control plane: the cluster's keys held by a PKCS#11 token
//! (Debian's SoftHSM2) or by a KMS v2 plugin (the one the apiserver encrypts Secrets
//! with), read back from etcd and from `kseal-system` by an attacker who tries every
//! byte string there as an age identity; a running cluster moved onto custody and off
//! it; and the custodian's faults.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::resource::SealedSecret;
use kseal_tests::cluster::Component;
use kseal_tests::custody::{SoftHsm, usable_identities};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

const KMS_CONFIG: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["secrets"]
    providers:
      - kms:
          apiVersion: v2
          name: kseal-test-kms
          endpoint: unix://KMS_SOCKET
          timeout: 3s
      - identity: {}
"#;

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every usable age identity at rest: in every current value under etcd's `/registry/`
/// prefix, and in every value of every Secret in `kseal-system` (as the API serves it,
/// decrypted). Returns where each was found and its recipient.
async fn identities_at_rest(cluster: &Cluster) -> Vec<String> {
    let mut found = Vec::new();
    let stored = cluster.plane.stored_under("/registry/").await.unwrap();
    assert!(
        stored.len() > 50,
        "etcd holds the cluster ({} keys)",
        stored.len()
    );
    for (key, value) in stored {
        found.extend(
            usable_identities(&value)
                .into_iter()
                .map(|r| format!("etcd {key}: {r}")),
        );
    }
    let secrets = cluster
        .secrets("kseal-system")
        .list(&ListParams::default())
        .await
        .unwrap();
    for secret in secrets {
        for (item, value) in secret.data.clone().unwrap_or_default() {
            found.extend(
                usable_identities(&value.0)
                    .into_iter()
                    .map(|r| format!("Secret kseal-system/{} {item}: {r}", secret.name_any())),
            );
        }
    }
    found
}

async fn assert_nothing_usable(cluster: &Cluster, when: &str) {
    let found = identities_at_rest(cluster).await;
    assert!(
        found.is_empty(),
        "{when}: usable identities at rest: {found:?}"
    );
}

/// The key Secrets: name → whether each holds a wrapped identity, and no plaintext one.
async fn key_forms(cluster: &Cluster) -> BTreeMap<String, bool> {
    let secrets = cluster
        .secrets("kseal-system")
        .list(&ListParams::default().labels("kseal.dev/key"))
        .await
        .unwrap();
    secrets
        .into_iter()
        .map(|s| {
            let data = s.data.clone().unwrap_or_default();
            let wrapped =
                data.contains_key("identity.wrapped") && !data.contains_key("identity.txt");
            (s.name_any(), wrapped)
        })
        .collect()
}

/// `kseal-controller` with the controller's credentials and the custody flags.
fn controller_command(
    cluster: &Cluster,
    args: &[&str],
    flags: &[String],
    env: &[(String, String)],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args(args)
        .args([
            "--kubeconfig",
            cluster.controller_kubeconfig().to_str().unwrap(),
        ])
        .args(flags)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Waits until the published newest recipient is not `old`; returns the new document file.
async fn new_recipients(cluster: &Cluster, old: &str) -> std::path::PathBuf {
    wait_for("a new newest key published", || async {
        let doc = cluster.document().await;
        (doc.recipients[0].recipient != old).then_some(())
    })
    .await;
    cluster.recipients().await
}

/// What `kseal status` prints, as the admin.
fn status(cluster: &Cluster) -> String {
    let admin = cluster.path("admin");
    let out = cluster.kseal(&["status", "--kubeconfig", admin.to_str().unwrap()], b"");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn newest(cluster: &Cluster) -> String {
    cluster.document().await.recipients[0].recipient.clone()
}

async fn seal_and_check(cluster: &Cluster, cert: &std::path::Path, name: &str) {
    let value = format!("pw-{name}");
    cluster
        .seal_and_apply(cert, "shop", name, &[("password", &value)])
        .await;
    assert_eq!(cluster.secret_value("shop", name, "password").await, value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pkcs11_custody_no_usable_identity_rests_in_etcd_or_kseal_system() {
    let hsm = SoftHsm::new().unwrap();
    hsm.make_kek("kek-1").unwrap();
    let mut cluster = Cluster::new().await;
    let flags = hsm.controller_flags("kek-1");
    let env = hsm.controller_env();
    cluster.start_controller_env("replica-a", &strs(&flags), &env);
    let cert = cluster.recipients().await;
    seal_and_check(&cluster, &cert, "db").await;
    assert_nothing_usable(&cluster, "after install").await;
    assert!(key_forms(&cluster).await.values().all(|w| *w));

    // Restart: the key is unwrapped again from the token.
    cluster.stop_controller("replica-a");
    cluster.start_controller_env("replica-a", &strs(&flags), &env);
    seal_and_check(&cluster, &cert, "db-after-restart").await;

    // Failover: the standby unwrapped the key too, and leads.
    // The standby reads the PIN from a file, as the chart mounts it.
    let pin_file = hsm.pin_file().unwrap();
    let mut file_flags = flags.clone();
    file_flags.extend([
        "--custody-pkcs11-pin-file".to_owned(),
        pin_file.display().to_string(),
    ]);
    cluster.start_controller_env("replica-b", &strs(&file_flags), &env[..1]);
    wait_for("the standby ready", || async {
        let port = cluster
            .controllers
            .iter()
            .find(|c| c.0 == "replica-b")
            .map(|c| c.2)?;
        (cluster.metric("replica-b", "kseal_keys") == Some(1.0)).then_some(port)
    })
    .await;
    cluster.stop_controller("replica-a");
    seal_and_check(&cluster, &cert, "db-after-failover").await;

    // rotate-key, as the CronJob runs it (its own ServiceAccount, which can create a key
    // Secret and read the cluster identity, and read no key), wraps the key it makes.
    let (job, _) = cluster.rotation_job_kubeconfig().await;
    let old = newest(&cluster).await;
    let out = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args(["rotate-key", "--kubeconfig", job.to_str().unwrap()])
        .args(&flags)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    succeeded("rotate-key as the rotation job", &out);
    let rotated = new_recipients(&cluster, &old).await;
    seal_and_check(&cluster, &rotated, "db-after-rotation").await;
    // The scheduled rotation (the leader's own) wraps its key too: restarted with a
    // period shorter than the newest key's age, it makes one at once.
    cluster.stop_controller("replica-b");
    let mut scheduled = file_flags.clone();
    scheduled.extend(["--key-rotation-period".to_owned(), "2s".to_owned()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = newest(&cluster).await;
    cluster.start_controller_env("replica-b", &strs(&scheduled), &env[..1]);
    let scheduled_cert = new_recipients(&cluster, &before).await;
    seal_and_check(&cluster, &scheduled_cert, "db-after-scheduled-rotation").await;
    let forms = key_forms(&cluster).await;
    assert!(forms.len() >= 3, "{forms:?}");
    assert!(
        forms.values().all(|w| *w),
        "every key is wrapped: {forms:?}"
    );
    assert_nothing_usable(
        &cluster,
        "after a restart, a failover, rotate-key and a scheduled rotation",
    )
    .await;
    // Every SealedSecret made along the way still unseals.
    for name in [
        "db",
        "db-after-restart",
        "db-after-failover",
        "db-after-rotation",
        "db-after-scheduled-rotation",
    ] {
        assert_eq!(cluster.ready("shop", name).await.1, "Unsealed", "{name}");
    }
    // A backup of the key Secrets opens nothing without the token; an escrow key does.
    cluster.back_up_keys("yaml", "keys.backup.yaml").await;
    let opened =
        cluster.kseal_unchecked(&["unseal", "-i", "keys.backup.yaml", "-f", "db.yaml"], b"");
    assert!(
        !opened.status.success(),
        "the wrapped backup opened a value"
    );
    assert!(!String::from_utf8_lossy(&opened.stdout).contains("pw-db"));
    let escrow = cluster.kseal(&["keygen", "-o", "escrow.txt"], b"");
    let escrow = String::from_utf8(escrow.stdout).unwrap().trim().to_owned();
    let input = secret_yaml("shop", "db-escrowed", &[("password", "pw-escrowed")]);
    cluster.kseal(
        &[
            "seal",
            "--cert",
            rotated.to_str().unwrap(),
            "-r",
            &escrow,
            "-w",
            "db-escrowed.yaml",
        ],
        input.as_bytes(),
    );
    let opened = cluster.kseal(
        &["unseal", "-i", "escrow.txt", "-f", "db-escrowed.yaml"],
        b"",
    );
    // The Secret as kseal unseal prints it: the value base64 in `data`.
    assert!(
        String::from_utf8_lossy(&opened.stdout).contains("cHctZXNjcm93ZWQ="),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );

    let status = status(&cluster);
    assert!(
        status.contains("key custody: pkcs11 key \"kek-1\"")
            && status.contains(" wrapped, 0 plaintext"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kms_v2_plugin_guards_the_apiserver_and_kseal_through_kek_rotation_and_refusal() {
    let mut cluster = Cluster::with_options(Options {
        encryption_config: Some(KMS_CONFIG.into()),
        ..Options::default()
    })
    .await;
    let socket = cluster.plane.start_kms_plugin().await.unwrap();
    let flags: Vec<String> = [
        "--custody",
        "kms-v2",
        "--custody-kms-socket",
        socket.to_str().unwrap(),
        "--custody-check-interval",
        "1s",
    ]
    .map(str::to_owned)
    .to_vec();
    cluster.start_controller_with("replica-a", &strs(&flags));
    let cert = cluster.recipients().await;
    // The first key alone (the file is rewritten at each fetch).
    let first_key_only = cluster.path("first-key.json");
    std::fs::copy(&cert, &first_key_only).unwrap();
    seal_and_check(&cluster, &cert, "db").await;
    // The same plugin encrypts what the apiserver stores.
    let stored = cluster
        .plane
        .stored_secret("shop", "db")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.starts_with(b"k8s:enc:kms:v2:kseal-test-kms:"));
    assert_nothing_usable(&cluster, "after install").await;
    // A restart, a failover and rotate-key, as with the token.
    cluster.stop_controller("replica-a");
    cluster.start_controller_with("replica-a", &strs(&flags));
    seal_and_check(&cluster, &cert, "db-after-restart").await;
    cluster.start_controller_with("replica-b", &strs(&flags));
    wait_for("the standby's key", || async {
        (cluster.metric("replica-b", "kseal_keys") == Some(1.0)).then_some(())
    })
    .await;
    cluster.stop_controller("replica-a");
    seal_and_check(&cluster, &cert, "db-after-failover").await;
    let old = newest(&cluster).await;
    succeeded(
        "rotate-key",
        &controller_command(&cluster, &["rotate-key"], &flags, &[]),
    );
    let rotated = new_recipients(&cluster, &old).await;
    seal_and_check(&cluster, &rotated, "db-after-rotation").await;
    assert!(key_forms(&cluster).await.values().all(|w| *w));
    assert_nothing_usable(&cluster, "after a restart, a failover and rotate-key").await;
    // The scheduled rotation (the leader's own), as on the token: restarted with a period
    // shorter than the newest key's age, the leader makes one at once, wrapped; then back
    // to no period, so that the keys stay as they are for what follows.
    cluster.stop_controller("replica-b");
    let mut scheduled = flags.clone();
    scheduled.extend(["--key-rotation-period".to_owned(), "2s".to_owned()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = newest(&cluster).await;
    cluster.start_controller_with("replica-b", &strs(&scheduled));
    let scheduled_cert = new_recipients(&cluster, &before).await;
    seal_and_check(&cluster, &scheduled_cert, "db-after-scheduled-rotation").await;
    cluster.stop_controller("replica-b");
    cluster.start_controller_with("replica-b", &strs(&flags));
    let forms = key_forms(&cluster).await;
    assert!(forms.len() >= 3 && forms.values().all(|w| *w), "{forms:?}");
    assert_nothing_usable(&cluster, "after a scheduled rotation").await;

    // The KEK rotates at the plugin: every key is wrapped again, with no restart, and no
    // SealedSecret leaves Ready meanwhile.
    cluster.plane.set_kms("kseal-test-2", true).unwrap();
    let keys: Api<Secret> = cluster.secrets("kseal-system");
    let kek_of = |s: &Secret| -> String {
        let doc = &s.data.as_ref().unwrap()["identity.wrapped"].0;
        serde_json::from_slice::<serde_json::Value>(doc).unwrap()["kekId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    wait_for("every key wrapped under the new KEK", || async {
        let list = keys
            .list(&ListParams::default().labels("kseal.dev/key"))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|s| kek_of(s) == "kseal-test-2")
            .then_some(())
    })
    .await;
    assert_eq!(cluster.ready("shop", "db").await.1, "Unsealed");
    seal_and_check(&cluster, &cert, "db-after-kek-rotation").await;
    assert_nothing_usable(&cluster, "after the KEK rotation").await;

    // A key Secret the custodian refuses (its KEK id altered): the running replica keeps
    // the key it holds; a restarted one cannot unwrap it (a replica with no key at all is
    // not ready: the outage test), and the reason of a SealedSecret only that key opens
    // says which key and why.
    let name = key_forms(&cluster).await.into_keys().next().unwrap();
    let original = keys.get(&name).await.unwrap();
    let mut altered = original.clone();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&altered.data.as_ref().unwrap()["identity.wrapped"].0).unwrap();
    doc["kekId"] = "kseal-test-9".into();
    altered.data.as_mut().unwrap().insert(
        "identity.wrapped".into(),
        ByteString(serde_json::to_vec(&doc).unwrap()),
    );
    keys.replace(&name, &PostParams::default(), &altered)
        .await
        .unwrap();
    seal_and_check(&cluster, &cert, "db-while-refused").await;
    let keys_before = key_forms(&cluster).await.len();
    cluster.stop_controller("replica-b");
    // It holds the newer key, so it is ready; the refused one is counted, not used.
    let port = cluster.start_controller_with("replica-a", &strs(&flags));
    wait_for_status(port, "/readyz", 200).await;
    wait_for("the refused key counted", || async {
        (cluster.metric("replica-a", "kseal_keys_unavailable") == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(
        cluster.metric("replica-a", "kseal_keys"),
        Some((keys_before - 1) as f64),
        "every key but the refused one"
    );
    cluster
        .seal_and_apply(&first_key_only, "shop", "db-refused", &[("password", "x")])
        .await;
    let api = cluster.sealed("shop");
    let (reason, message) = wait_for("KeyUnavailable on the SealedSecret", || async {
        let ss = api.get_opt("db-refused").await.ok().flatten()?;
        let c = ss
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.reason == "KeyUnavailable").then_some((c.reason, c.message))
    })
    .await;
    assert!(
        message.contains(&name) && message.contains("kms-v2 plugin at"),
        "{reason}: {message}"
    );
    assert_eq!(
        key_forms(&cluster).await.len(),
        keys_before,
        "a refusing custodian is no reason to rotate"
    );
    let status = status(&cluster);
    assert!(
        status.contains("not unwrapped") && status.contains(&name),
        "{status}"
    );

    // Put right, the key loads and the SealedSecret unseals, with no restart.
    let mut restored = original.clone();
    restored.metadata.resource_version = None;
    let current = keys.get(&name).await.unwrap();
    restored.metadata.resource_version = current.metadata.resource_version;
    keys.replace(&name, &PostParams::default(), &restored)
        .await
        .unwrap();
    assert_eq!(
        cluster.secret_value("shop", "db-refused", "password").await,
        "x"
    );
    assert_nothing_usable(&cluster, "at the end").await;
}

/// The kustomize install with `components/custody-kms`, exactly as docs/operations.md
/// shows it (the component and the user's patch adding the plugin): applied to the real
/// apiserver, it stores a controller and a rotation job that reach the plugin through the
/// socket's `emptyDir`; a controller started with the environment the apiserver stored
/// (the socket pointed at the harness's plugin, as the `emptyDir` would be) wraps its
/// first key, and a value sealed to it unseals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_component_puts_the_controller_under_kms_custody() {
    let overlay = docs_overlay("components/custody-kms");
    let mut cluster = Cluster::with_manifests(&overlay.path().join("overlay")).await;
    let deployment = stored_json(&cluster, "deployment/kseal-controller").await;
    let cronjob = stored_json(&cluster, "cronjob/kseal-rotate-key").await;
    let controller = &deployment["spec"]["template"]["spec"];
    let job = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    for (what, pod) in [("the controller", controller), ("the rotation job", job)] {
        assert_eq!(
            custody_env(pod),
            [
                ("KSEAL_CUSTODY".into(), "kms-v2".into()),
                (
                    "KSEAL_CUSTODY_KMS_SOCKET".into(),
                    "/var/run/kseal-kms/kms.sock".into()
                ),
            ],
            "{what}"
        );
        // kseal and the plugin mount one emptyDir at the socket's directory.
        let mounts = |c: &serde_json::Value| {
            c["volumeMounts"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["name"] == "kms-socket" && m["mountPath"] == "/var/run/kseal-kms")
            })
        };
        let plugin = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
            .find(|c| c["name"] == "kms-plugin")
            .unwrap_or_else(|| panic!("{what}: no plugin container: {pod}"));
        assert!(
            mounts(&pod["containers"][0]) && mounts(plugin),
            "{what}: {pod}"
        );
        assert_eq!(pod["volumes"][0]["name"], "kms-socket", "{what}");
        assert!(pod["volumes"][0]["emptyDir"].is_object(), "{what}");
    }
    let mut env = custody_env(controller);
    let socket = cluster.plane.start_kms_plugin().await.unwrap();
    env[1].1 = socket.to_str().unwrap().to_owned();
    cluster.start_controller_env("replica-a", &[], &env);
    let cert = cluster.recipients().await;
    seal_and_check(&cluster, &cert, "db").await;
    let forms = key_forms(&cluster).await;
    assert!(!forms.is_empty() && forms.values().all(|w| *w), "{forms:?}");
    assert_nothing_usable(&cluster, "after the kustomize install").await;
}

/// An object in `kseal-system` as the apiserver stored it.
async fn stored_json(cluster: &Cluster, object: &str) -> serde_json::Value {
    let out = cluster
        .kubectl(&["get", object, "-n", "kseal-system", "-o", "json"])
        .await;
    serde_json::from_str(&out).unwrap()
}

/// The `KSEAL_CUSTODY*` environment of a pod spec's first container, in order.
fn custody_env(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("KSEAL_CUSTODY"))
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap().to_owned();
            (text("name"), text("value"))
        })
        .collect()
}

/// SealedSecrets in `load` whose Ready condition is not True.
async fn not_ready(cluster: &Cluster) -> usize {
    not_ready_reasons(cluster).await.values().sum()
}

/// The Ready reasons of the SealedSecrets in `load` that are not Ready, counted.
async fn not_ready_reasons(cluster: &Cluster) -> BTreeMap<String, usize> {
    let list = cluster
        .sealed("load")
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut reasons = BTreeMap::new();
    for ss in &list.items {
        let ready = ss
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                *reasons
                    .entry(format!("{}: {}", c.reason, c.message))
                    .or_default() += 1
            }
            None => *reasons.entry("no condition yet".to_owned()).or_default() += 1,
        }
    }
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_a_running_cluster_moves_onto_custody_and_off_with_1000_sealedsecrets_ready() {
    const OBJECTS: usize = 1000;
    let objects = std::env::var("KSEAL_TEST_OBJECTS").map_or(OBJECTS, |n| n.parse().unwrap());
    let mut cluster = Cluster::new().await;
    let socket = cluster.plane.start_kms_plugin().await.unwrap();
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    // 1000 SealedSecrets of one cluster-wide sealed value.
    let input = secret_yaml(
        "load",
        "template",
        &[("username", "u"), ("password", "t-1000")],
    );
    cluster.kseal(
        &[
            "seal",
            "--cert",
            cert.to_str().unwrap(),
            "--scope",
            "cluster-wide",
            "-w",
            "template.yaml",
        ],
        input.as_bytes(),
    );
    let template: SealedSecret =
        serde_saphyr::from_str(&std::fs::read_to_string(cluster.path("template.yaml")).unwrap())
            .unwrap();
    let api = cluster.sealed("load");
    futures::stream::iter(0..objects)
        .map(|i| {
            let mut ss = template.clone();
            ss.metadata = Default::default();
            ss.metadata.name = Some(format!("s-{i:04}"));
            let api = api.clone();
            async move { api.create(&PostParams::default(), &ss).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let reasons = not_ready_reasons(&cluster).await;
        if reasons.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        objects
    );
    assert_eq!(
        identities_at_rest(&cluster).await.len(),
        2,
        "the plaintext key: in etcd, and as the API serves it"
    );

    // The controller restarts with custody on: the plaintext key keeps working and is
    // reported (metric, Event, kseal status).
    let flags: Vec<String> = [
        "--custody",
        "kms-v2",
        "--custody-kms-socket",
        socket.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    cluster.stop_controller("replica-a");
    cluster.start_controller_with("replica-a", &strs(&flags));
    wait_for("the plaintext key reported", || async {
        (cluster.metric("replica-a", "kseal_keys_stored{storage=\"plaintext\"}") == Some(1.0))
            .then_some(())
    })
    .await;
    wait_for("a PlaintextKey Event", || async {
        let out = cluster
            .kubectl(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "kseal-system",
                "-o",
                "json",
            ])
            .await;
        out.contains("PlaintextKey").then_some(())
    })
    .await;

    // Moved onto custody while the controller runs, watched throughout: no SealedSecret
    // leaves Ready, and no failure is counted.
    let watching = async {
        let mut worst = 0;
        for _ in 0..20 {
            worst = worst.max(not_ready(&cluster).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        worst
    };
    let move_on = async {
        tokio::task::spawn_blocking({
            let kubeconfig = cluster.controller_kubeconfig();
            let flags = flags.clone();
            move || {
                Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
                    .args([
                        "custody",
                        "wrap",
                        "--kubeconfig",
                        kubeconfig.to_str().unwrap(),
                    ])
                    .args(&flags)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap()
    };
    let (worst, wrapped) = tokio::join!(watching, move_on);
    let printed = succeeded("custody wrap", &wrapped);
    assert!(printed.contains(": wrapped"), "{printed}");
    assert_eq!(worst, 0, "SealedSecrets left Ready during custody wrap");
    assert!(key_forms(&cluster).await.values().all(|w| *w));
    wait_for("the wrapped key in use", || async {
        (cluster.metric("replica-a", "kseal_keys_stored{storage=\"wrapped\"}") == Some(1.0))
            .then_some(())
    })
    .await;
    assert_nothing_usable(&cluster, "after custody wrap").await;
    assert_eq!(not_ready(&cluster).await, 0);

    // Down while running: the plugin stops, the controller keeps unsealing with the key
    // it unwrapped.
    cluster.plane.kill(Component::KmsPlugin);
    seal_and_check(&cluster, &cert, "db-while-kms-down").await;
    // Down at start: a replica started now is not ready and names the custodian.
    let port = cluster.start_controller_with("replica-b", &strs(&flags));
    let why = wait_for("replica-b not ready, naming the custodian", || async {
        let (code, body) = http_get(port, "/readyz")?;
        (code == 503 && body.contains("could not be unwrapped")).then_some(body)
    })
    .await;
    assert!(
        why.contains("kms-v2 plugin at") && why.contains("unreachable"),
        "{why}"
    );
    // Back: it unwraps by itself, with no restart.
    cluster.plane.start_kms_plugin().await.unwrap();
    wait_for_status(port, "/readyz", 200).await;
    cluster.stop_controller("replica-b");

    // And off custody (the custodian being retired): unwrap, then the controller runs
    // without it. Still no SealedSecret leaves Ready.
    let unwrapped = controller_command(&cluster, &["custody", "unwrap"], &flags, &[]);
    assert!(succeeded("custody unwrap", &unwrapped).contains(": unwrapped"));
    assert!(key_forms(&cluster).await.values().all(|w| !*w));
    cluster.stop_controller("replica-a");
    cluster.start_controller("replica-a");
    seal_and_check(&cluster, &cert, "db-off-custody").await;
    assert_eq!(not_ready(&cluster).await, 0);
    let metrics = cluster.metrics("replica-a");
    assert!(metrics.contains("kseal_keys_stored"), "{metrics}");
    assert!(
        !metrics.contains("kseal_unseal_failures_total{"),
        "no unseal failure counted: {metrics}"
    );
}
