//! No unused permission: for every rule of `manifests/rbac.yaml` (and the binding to
//! `system:monitoring`), install the manifests without it, run the real controller, and
//! show the behaviour that rule exists for breaking. A rule added without a case here
//! fails `every_rule_has_a_behaviour`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::Value;

/// (kind, name, namespace, rule index; `None` drops the whole object), and the behaviour.
const CASES: &[(&str, &str, &str, Option<usize>, &str)] = &[
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(0),
        "SealedSecrets are watched and reconciled",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(1),
        "the Ready condition is reported",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(2),
        "the Secret is written",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(3),
        "an Unsealed Event is published",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(4),
        "SealedSecretRequests are seen",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(5),
        "SealedSecretRequests are answered",
    ),
    (
        "ClusterRole",
        "kseal-controller",
        "",
        Some(6),
        "under key custody, keys are bound to the cluster identity",
    ),
    (
        "Role",
        "kseal-controller",
        "kseal-system",
        Some(0),
        "a leader is elected",
    ),
    (
        "Role",
        "kseal-controller",
        "kseal-system",
        Some(1),
        "the recipients are published",
    ),
    (
        "Role",
        "kseal-controller",
        "kseal-system",
        Some(2),
        "the at-rest canary Secret is deleted",
    ),
    (
        "Role",
        "kseal-recipients-reader",
        "kseal-system",
        Some(0),
        "any user seals with the cluster's key",
    ),
    (
        "ClusterRole",
        "kseal-requester",
        "",
        Some(0),
        "a namespace editor verifies through the API",
    ),
    (
        "ClusterRoleBinding",
        "kseal-controller-monitoring",
        "",
        None,
        "the at-rest check reads /metrics",
    ),
    (
        "Role",
        "kseal-controller-at-rest",
        "kube-system",
        Some(0),
        "the at-rest check reads the apiserver flags",
    ),
    (
        "Role",
        "kseal-controller-at-rest",
        "default",
        Some(0),
        "the at-rest check addresses each apiserver",
    ),
];

fn rbac_docs() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("manifests/rbac.yaml")).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap()
}

fn matches(doc: &Value, kind: &str, name: &str, namespace: &str) -> bool {
    doc["kind"] == kind
        && doc["metadata"]["name"] == name
        && doc["metadata"]["namespace"].as_str().unwrap_or("") == namespace
}

#[test]
fn every_rule_has_a_behaviour() {
    let mut rules = Vec::new();
    for doc in rbac_docs() {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
        match kind {
            "Role" | "ClusterRole" => {
                for i in 0..doc["rules"].as_array().map(Vec::len).unwrap_or(0) {
                    rules.push((kind.to_owned(), name.to_owned(), ns.to_owned(), Some(i)));
                }
            }
            // Bindings of our own roles stand or fall with them; a binding to a built-in
            // role is a grant of its own.
            "ClusterRoleBinding" | "RoleBinding"
                if !doc["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("kseal-") =>
            {
                rules.push((kind.to_owned(), name.to_owned(), ns.to_owned(), None));
            }
            _ => {}
        }
    }
    let cases: Vec<_> = CASES
        .iter()
        .map(|(k, n, ns, i, _)| ((*k).to_owned(), (*n).to_owned(), (*ns).to_owned(), *i))
        .collect();
    assert_eq!(
        rules, cases,
        "every grant in manifests/rbac.yaml has exactly one case"
    );
}

/// The manifests with one rule (or object) removed, in a temporary kustomization.
fn manifests_without(case: usize, dir: &Path) {
    let (kind, name, ns, index, _) = CASES[case];
    let source = repo().join("manifests");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let mut removed = false;
    let docs: Vec<Value> = rbac_docs()
        .into_iter()
        .filter_map(|mut doc| {
            if !matches(&doc, kind, name, ns) {
                return Some(doc);
            }
            removed = true;
            match index {
                None => None,
                Some(i) => {
                    doc["rules"].as_array_mut().unwrap().remove(i);
                    Some(doc)
                }
            }
        })
        .collect();
    assert!(removed, "case {case} names no object");
    // JSON documents are YAML documents: kustomize reads them as they are.
    let text: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    std::fs::write(dir.join("rbac.yaml"), text.join("\n---\n")).unwrap();
}

async fn without(case: usize) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    manifests_without(case, dir.path());
    let mut cluster = Cluster::with_manifests(dir.path()).await;
    cluster.start_controller_with("replica-a", &["--at-rest-interval", "1s"]);
    (cluster, dir)
}

/// Seals and applies shop/db with the controller's recipients.
async fn apply_sealed(cluster: &Cluster, cert: &Path) {
    cluster
        .seal_and_apply(cert, "shop", "db", &[("password", "pw-rbac-1")])
        .await;
}

/// Waits `for_` and asserts `f` never held.
async fn never<F, Fut>(what: &str, for_: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + for_;
    while std::time::Instant::now() < until {
        assert!(!f().await, "{what} happened without its rule");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn at_rest_detail(cluster: &Cluster) -> String {
    let api: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    wait_for("the at-rest verdict", || async {
        let cm = api.get_opt("kseal-recipients").await.ok().flatten()?;
        cm.metadata
            .annotations?
            .get("kseal.dev/encryption-at-rest-detail")
            .cloned()
    })
    .await
}

async fn secret_appears(cluster: &Cluster) {
    wait_for("the Secret", || async {
        cluster.secrets("shop").get_opt("db").await.ok().flatten()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sealedsecret_reads_nothing_is_reconciled() {
    let (cluster, _dir) = without(0).await;
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    never("a Secret", Duration::from_secs(5), || async {
        cluster
            .secrets("shop")
            .get_opt("db")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert!(
        cluster.logs().contains("sealedsecrets"),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_status_patch_no_ready_condition() {
    let (cluster, _dir) = without(1).await;
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    secret_appears(&cluster).await;
    never("a Ready condition", Duration::from_secs(3), || async {
        let ss = cluster.sealed("shop").get("db").await.unwrap();
        ss.status.is_some_and(|s| !s.conditions.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secret_writes_no_secret() {
    let (cluster, _dir) = without(2).await;
    // Without Secret rights there are no keys either: seal to a key we give it.
    let cert = cluster.recipients_or_none(Duration::from_secs(4)).await;
    assert!(
        cert.is_none(),
        "no key Secret can be created or read, so nothing is published"
    );
    never("a Secret", Duration::from_secs(2), || async {
        cluster
            .secrets("shop")
            .get_opt("db")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_events_no_unsealed_event() {
    let (cluster, _dir) = without(3).await;
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    secret_appears(&cluster).await;
    let (status, _) = cluster.ready("shop", "db").await;
    assert_eq!(status, "True");
    never("an Unsealed Event", Duration::from_secs(2), || async {
        cluster
            .kubectl(&["get", "events.events.k8s.io", "-n", "shop", "-o", "name"])
            .await
            .contains("db.")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kube_system_get_no_key_under_custody() {
    let dir = tempfile::tempdir().unwrap();
    manifests_without(6, dir.path());
    let mut cluster = Cluster::with_manifests(dir.path()).await;
    // The custodian is never reached: the cluster identity comes first.
    cluster.start_controller_with(
        "replica-a",
        &[
            "--custody",
            "kms-v2",
            "--custody-kms-socket",
            "/nonexistent/kms.sock",
        ],
    );
    assert!(
        cluster
            .recipients_or_none(Duration::from_secs(5))
            .await
            .is_none(),
        "no key can be bound to the cluster: none is made"
    );
    assert_eq!(key_secrets(&cluster).await, 0);
    let logs = cluster.logs();
    assert!(
        logs.contains("cluster identity") && logs.contains("namespaces"),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_leases_no_leader() {
    let (cluster, _dir) = without(7).await;
    assert!(
        cluster
            .recipients_or_none(Duration::from_secs(5))
            .await
            .is_none(),
        "no leader: no key, nothing published"
    );
    assert!(cluster.logs().contains("leases"), "the refusal is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configmaps_no_recipients() {
    let (cluster, _dir) = without(8).await;
    cluster
        .wait_for_labelled_secret("kseal-system", "kseal.dev/key")
        .await;
    assert!(
        cluster
            .recipients_or_none(Duration::from_secs(3))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secret_delete_the_canary_stays() {
    let (cluster, _dir) = without(9).await;
    cluster
        .wait_for_labelled_secret("kseal-system", "kseal.dev/at-rest-canary")
        .await;
    assert!(!at_rest_detail(&cluster).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recipients_reader_users_cannot_seal() {
    let (cluster, _dir) = without(10).await;
    cluster.recipients().await;
    let token = cluster.plane.user("dev", &[]).unwrap();
    let kubeconfig = cluster.path("dev-kubeconfig");
    cluster
        .plane
        .write_kubeconfig(&kubeconfig, &token, "shop")
        .unwrap();
    let input = secret_yaml("shop", "db", &[("password", "pw-rbac-2")]);
    let out = cluster.kseal_unchecked(
        &["seal", "--kubeconfig", kubeconfig.to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kseal-recipients") && stderr.contains("forbidden"),
        "{stderr}"
    );
}

/// The at-rest verdict the controller records names the check it could not run.
async fn at_rest_check_reports(case: usize, missing: &str) {
    let (cluster, _dir) = without(case).await;
    let detail = at_rest_detail(&cluster).await;
    assert!(detail.contains(missing), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_monitoring_no_metrics() {
    at_rest_check_reports(12, "missing permission to read /metrics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pod_list_no_flags() {
    at_rest_check_reports(13, "missing permission to list pods in kube-system").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_endpointslices_no_per_apiserver_checks() {
    at_rest_check_reports(14, "missing permission to list EndpointSlices in default").await;
}

/// `kseal verify` through the API, as `user` (admin when `None`), with a short timeout.
fn verify_via_api(cluster: &Cluster, who: Option<&Credential>, file: &str) -> std::process::Output {
    let kubeconfig = cluster.path("verify-kubeconfig");
    let plane = &cluster.plane;
    plane
        .write_kubeconfig(&kubeconfig, who.unwrap_or(&plane.admin), "shop")
        .unwrap();
    cluster.kseal_unchecked(
        &[
            "verify",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--timeout",
            "3",
            file,
        ],
        b"",
    )
}

/// `kseal verify` through the API gets no answer, and the controller's log says why.
async fn requests_go_unanswered(case: usize, logged: &str) {
    let (cluster, _dir) = without(case).await;
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    let out = verify_via_api(&cluster, None, cluster.path("db.yaml").to_str().unwrap());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer"));
    assert!(cluster.logs().contains(logged), "the refusal is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_request_watch_no_answer() {
    requests_go_unanswered(4, "sealedsecretrequests").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_request_status_no_answer() {
    requests_go_unanswered(5, "could not answer a request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_requester_role_editors_cannot_ask() {
    let (cluster, _dir) = without(11).await;
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    // A namespace editor: the built-in `edit`, into which kube-controller-manager
    // aggregates kseal-requester (here without its rule).
    let binding = cluster.path("binding.yaml");
    std::fs::write(
        &binding,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: dev-editor\n  namespace: shop\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: edit\nsubjects:\n  - kind: User\n    name: dev\n    apiGroup: rbac.authorization.k8s.io\n",
    )
    .unwrap();
    cluster
        .kubectl(&["apply", "-f", binding.to_str().unwrap()])
        .await;
    let token = cluster.plane.user("dev", &[]).unwrap();
    let out = verify_via_api(
        &cluster,
        Some(&token),
        cluster.path("db.yaml").to_str().unwrap(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("forbidden"), "{stderr}");
}

/// Under real authorization and real role aggregation: a user bound only to the
/// built-in `edit` role in a namespace asks the controller to verify through the API
/// (`kseal-requester` aggregates into `edit`), and neither that user nor one with no
/// binding at all can list or read the cluster's key Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_asks_through_aggregation_and_nobody_reads_the_keys() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    apply_sealed(&cluster, &cert).await;
    cluster
        .kubectl(&[
            "create",
            "rolebinding",
            "editor",
            "--clusterrole=edit",
            "--user=editor",
            "-n",
            "shop",
        ])
        .await;
    let editor = cluster.plane.user("editor", &[]).unwrap();
    // kube-controller-manager aggregates kseal-requester into edit.
    wait_for("kseal-requester aggregated into edit", || async {
        let out = cluster
            .kubectl_as(
                &editor,
                &[
                    "auth",
                    "can-i",
                    "create",
                    "sealedsecretrequests.kseal.dev",
                    "-n",
                    "shop",
                ],
            )
            .await;
        out.status.success().then_some(())
    })
    .await;
    let out = verify_via_api(
        &cluster,
        Some(&editor),
        cluster.path("db.yaml").to_str().unwrap(),
    );
    assert!(
        out.status.success(),
        "the editor verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = cluster
        .kubectl(&[
            "get",
            "secrets",
            "-n",
            "kseal-system",
            "-l",
            "kseal.dev/key",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .await;
    assert!(!key.is_empty());
    let nobody = cluster.plane.user("nobody", &[]).unwrap();
    for (who, name) in [(&editor, "editor"), (&nobody, "nobody")] {
        for args in [
            vec!["get", "secrets", "-n", "kseal-system"],
            vec!["get", "secret", "-n", "kseal-system", key.as_str()],
        ] {
            let out = cluster.kubectl_as(who, &args).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("forbidden"),
                "{name} may not {args:?}: {stderr}"
            );
        }
    }
}
