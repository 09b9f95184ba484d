//! The December security reviews' attacks (kept with the design notes, outside this
//! repository; `docs/threat-model.md` lists each finding and its test), each
//! played as the attacker would against the real controller, running as its
//! ServiceAccount under the RBAC in `manifests/`: a planted cluster key, a squatted key
//! name, hostile templates, hostile sealed values and request bodies, a request flood, and
//! a reseal that used to drop recipients.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::resource::{
    RequestOperation, RequestTarget, SealedSecretRequest, SealedSecretRequestSpec,
};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// Seals `ns/name` (JSON input, so values may hold newlines) with `scope` to `cert`, lets
/// `edit` change the sealed object as an attacker editing the file would, and writes it
/// as `<file>.json`.
fn seal_and_edit(
    cluster: &Cluster,
    cert: &std::path::Path,
    (ns, name, file): (&str, &str, &str),
    scope: &str,
    items: Value,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let input = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": items,
    });
    let out = cluster.kseal(
        &[
            "seal",
            "--cert",
            cert.to_str().unwrap(),
            "--scope",
            scope,
            "-o",
            "json",
        ],
        input.to_string().as_bytes(),
    );
    let mut sealed: Value = serde_json::from_slice(&out.stdout).unwrap();
    edit(&mut sealed);
    let path = cluster.path(&format!("{file}.json"));
    std::fs::write(&path, sealed.to_string()).unwrap();
    path
}

/// A ServiceAccount `default/limited` that may only create and read SealedSecrets in
/// `namespace`: the review's attacker.
async fn limited_user(cluster: &Cluster, namespace: &str) -> Credential {
    let rbac = cluster.path(&format!("limited-{namespace}.yaml"));
    std::fs::write(
        &rbac,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: limited\n  namespace: {namespace}\nrules:\n  - apiGroups: [kseal.dev]\n    resources: [sealedsecrets]\n    verbs: [create, get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: limited\n  namespace: {namespace}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: limited\nsubjects:\n  - kind: ServiceAccount\n    name: limited\n    namespace: default\n"
        ),
    )
    .unwrap();
    cluster
        .kubectl(&["apply", "-f", rbac.to_str().unwrap()])
        .await;
    cluster
        .plane
        .service_account("default", "limited")
        .await
        .unwrap()
}

fn key_template() -> Value {
    json!({
        "type": "kseal.dev/age-key",
        "metadata": {
            "labels": {"kseal.dev/key": "active"},
            "annotations": {"kseal.dev/created": "2099-01-01T00:00:00Z"},
        },
    })
}

/// Item 2: a user who may only create SealedSecrets in `kseal-system` seals their own age
/// identity as a key Secret there. Before the fix the controller unsealed it, loaded it
/// and published it first: every later `kseal seal` sealed to the attacker. Now nothing is
/// unsealed into the controller namespace, templates cannot make key Secrets anywhere,
/// and the published recipients stay the cluster's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealedsecret_cannot_plant_a_cluster_key() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let published = cluster.document().await;
    let token = limited_user(&cluster, "kseal-system").await;
    let denied = cluster
        .kubectl_as(&token, &["get", "secrets", "-n", "kseal-system"])
        .await;
    assert!(!denied.status.success(), "the attacker cannot read Secrets");

    cluster.kseal(&["keygen", "-o", "attacker.key"], b"");
    let identity = std::fs::read_to_string(cluster.path("attacker.key")).unwrap();
    let items = json!({ "identity.txt": identity });
    let planted = seal_and_edit(
        &cluster,
        &cert,
        ("shop", "team-config", "planted"),
        "cluster-wide",
        items.clone(),
        |ss| {
            ss["metadata"]["namespace"] = json!("kseal-system");
            ss["spec"]["template"] = key_template();
        },
    );
    let applied = cluster
        .kubectl_as(&token, &["apply", "-f", planted.to_str().unwrap()])
        .await;
    assert!(
        applied.status.success(),
        "RBAC lets the attacker create it: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(
        cluster.ready("kseal-system", "team-config").await,
        ("False".into(), "ForbiddenNamespace".into())
    );

    // The same key template aimed at a namespace the attacker may use.
    let elsewhere = seal_and_edit(
        &cluster,
        &cert,
        ("shop", "team-config", "elsewhere"),
        "strict",
        items,
        |ss| ss["spec"]["template"] = key_template(),
    );
    cluster
        .kubectl(&["apply", "-f", elsewhere.to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "team-config").await,
        ("False".into(), "ForbiddenTemplate".into())
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    for ns in ["kseal-system", "shop"] {
        let written = cluster.secrets(ns).get_opt("team-config").await.unwrap();
        assert!(written.is_none(), "nothing was unsealed into {ns}");
    }
    assert_eq!(
        cluster.document().await,
        published,
        "the recipients stay ours"
    );
    assert_eq!(cluster.metric("replica-a", "kseal_keys"), Some(1.0));

    // `kseal validate` in CI flags both files.
    for file in [&planted, &elsewhere] {
        let out = cluster.kseal_unchecked(&["validate", file.to_str().unwrap()], b"");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("kseal-system") || stderr.contains("ForbiddenTemplate"),
            "{stderr}"
        );
    }
}

/// Item 2's variant: a Secret squatting the name of the next key (a predictable slot
/// name) made the controller believe another replica had created it, so no key was
/// made. Now a name held by anything but a key gets the key under a generated name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_key_name_does_not_stop_the_first_key() {
    let mut cluster = Cluster::new().await;
    let slot = kseal_controller::keys::slot_name(
        time::OffsetDateTime::now_utc(),
        Duration::from_secs(30 * 86_400),
    );
    let squat: Secret = serde_json::from_value(json!({
        "metadata": {"name": slot, "labels": {"kseal.dev/key": "active"}},
        "stringData": {"identity.txt": "not a key"},
    }))
    .unwrap();
    cluster
        .secrets("kseal-system")
        .create(&PostParams::default(), &squat)
        .await
        .unwrap();
    let port = cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    assert_eq!(cluster.document().await.recipients.len(), 1);
    // Without --http-services, port 8080 serves no decryption to whoever reaches it.
    let (code, _) = tokio::task::spawn_blocking(move || post(port, "/v1/verify", b"{}"))
        .await
        .unwrap();
    assert_eq!(code, 404);
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "v1")])
        .await;
    assert_eq!(cluster.ready("shop", "db").await.0, "True");
}

/// Item 6: the template is not authenticated, and was applied as written. A Git writer
/// could have the token controller mint a ServiceAccount token, or have a replication
/// controller copy a sealed value into other namespaces. Both are refused now; an operator
/// can allow a replicator's annotations on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_cannot_mint_tokens_or_replicate_values() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let token = seal_and_edit(
        &cluster,
        &cert,
        ("shop", "token", "token"),
        "strict",
        json!({"password": "v"}),
        |ss| {
            ss["spec"]["template"] = json!({
                "type": "kubernetes.io/service-account-token",
                "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}},
            })
        },
    );
    let replicated = seal_and_edit(
        &cluster,
        &cert,
        ("shop", "shared", "replicated"),
        "strict",
        json!({"password": "v"}),
        |ss| {
            ss["spec"]["template"] = json!({"metadata": {"annotations": {
                "reflector.v1.k8s.emberstack.com/reflection-allowed": "true",
                "reflector.v1.k8s.emberstack.com/reflection-auto-enabled": "true",
            }}})
        },
    );
    for file in [&token, &replicated] {
        cluster
            .kubectl(&["apply", "-f", file.to_str().unwrap()])
            .await;
    }
    for name in ["token", "shared"] {
        assert_eq!(
            cluster.ready("shop", name).await,
            ("False".into(), "ForbiddenTemplate".into())
        );
        assert!(
            cluster
                .secrets("shop")
                .get_opt(name)
                .await
                .unwrap()
                .is_none()
        );
    }

    cluster.stop_controller("replica-a");
    cluster.start_controller_with(
        "replica-b",
        &[
            "--allow-template-metadata",
            "reflector.v1.k8s.emberstack.com/",
        ],
    );
    let api = cluster.secrets("shop");
    let secret = wait_for("the allowed Secret", || async {
        api.get_opt("shared").await.ok().flatten()
    })
    .await;
    assert_eq!(
        secret.metadata.annotations.unwrap()["reflector.v1.k8s.emberstack.com/reflection-allowed"],
        "true"
    );
    assert_eq!(cluster.ready("shop", "token").await.1, "ForbiddenTemplate");
}

/// Items 3 and 4: a sealed value with 800 stanzas cost age seconds to minutes of CPU on
/// the async workers (so `/healthz` stalled and the liveness probe restarted the pod),
/// and a 1 MB YAML body with aliases expanded to 64 MB. Now the value is refused before
/// age sees it, through a SealedSecret and through `/v1/verify`, the alias body is refused
/// as it is parsed, `/healthz` keeps answering while both are sent over and over, and the
/// controller's peak memory stays under 64 MiB. (`bash bench/hostile.sh` measures
/// `/healthz`'s latency under this load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_and_bodies_are_refused_and_health_holds() {
    let mut cluster = Cluster::new().await;
    let port = cluster.start_controller_with("replica-a", &["--http-services"]);
    let cert = cluster.recipients().await;
    let hostile = many_stanzas(800);
    let path = seal_and_edit(
        &cluster,
        &cert,
        ("shop", "hostile", "hostile"),
        "strict",
        json!({"password": "v"}),
        |ss| ss["spec"]["encryptedData"]["password"] = json!(hostile),
    );
    cluster
        .kubectl(&["apply", "-f", path.to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("shop", "hostile").await,
        ("False".into(), "SealedValueTooLarge".into())
    );
    let object = std::fs::read(&path).unwrap();
    let (code, body) = tokio::task::spawn_blocking({
        let object = object.clone();
        move || post(port, "/v1/verify", &object)
    })
    .await
    .unwrap();
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("SealedValueTooLarge"), "{body}");
    assert!(body.contains("more than 16 recipient stanzas"), "{body}");

    let scalar = "x".repeat(1_000_000);
    let mut alias = format!(
        "apiVersion: kseal.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a\n  namespace: shop\nspec:\n  encryptedData: {{}}\n  template:\n    data:\n      k0: &big {scalar}\n"
    );
    for i in 1..63 {
        alias.push_str(&format!("      k{i}: *big\n"));
    }
    let (code, body) =
        tokio::task::spawn_blocking(move || post(port, "/v1/verify", alias.as_bytes()))
            .await
            .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("aliases are not accepted"), "{body}");

    // Both, over and over from four clients, while /healthz is asked.
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let object = object.clone();
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + Duration::from_secs(5);
                let mut answers = Vec::new();
                while std::time::Instant::now() < until {
                    answers.push(post(port, "/v1/verify", &object).0);
                }
                answers
            })
        })
        .collect();
    for _ in 0..20 {
        let (code, _) = tokio::task::spawn_blocking(move || http_get(port, "/healthz"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in senders {
        let answers = s.join().unwrap();
        assert!(
            answers.iter().all(|c| matches!(c, 409 | 429 | 503)),
            "{answers:?}"
        );
    }
    let peak = cluster.peak_rss_kib("replica-a");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// Item 5: the per-namespace limiter waited inside a shared queue, so 150 requests in one
/// namespace delayed another namespace's `kseal verify` by 27 s. Now a request over its
/// namespace's limit is answered `RateLimited` at once, and the other namespace's request
/// is answered as if nothing else were happening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_in_one_namespace_does_not_delay_another() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "v1")])
        .await;
    let dev: Api<SealedSecretRequest> = Api::namespaced(cluster.admin.clone(), "dev");
    let spec = empty_verify_request("dev");
    let creates = (0..300).map(|i| {
        let (dev, spec) = (dev.clone(), spec.clone());
        async move {
            let mut r = SealedSecretRequest::new(&format!("flood-{i}"), spec);
            r.metadata.namespace = Some("dev".into());
            dev.create(&PostParams::default(), &r).await.unwrap();
        }
    });
    futures::future::join_all(creates).await;

    let out = cluster.kseal_unchecked(
        &[
            "verify",
            "--kubeconfig",
            cluster.path("admin").to_str().unwrap(),
            "--timeout",
            "20",
            "db.yaml",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "shop's verify is answered in time: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let limited = wait_for("RateLimited answers in dev", || async {
        let list = dev.list(&ListParams::default()).await.ok()?;
        let n = list
            .items
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.reason.as_deref() == Some("RateLimited"))
            })
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert!(limited > 0);
}

/// Item 7: `kseal reseal` re-encrypted to the newest cluster key only, so an escrow key
/// (or another cluster) silently lost access. Now the escrow key still opens the resealed
/// file, and the cluster unseals it with its new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_keeps_the_escrow_recipient() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let escrow = cluster.kseal(&["keygen", "-o", "escrow.key"], b"");
    std::fs::write(cluster.path("escrow.recipients"), &escrow.stdout).unwrap();
    let input = secret_yaml("shop", "db", &[("password", "s3cret")]);
    cluster.kseal(
        &[
            "seal",
            "--cert",
            cert.to_str().unwrap(),
            "--recipients-file",
            "escrow.recipients",
            "-w",
            "db.yaml",
        ],
        input.as_bytes(),
    );
    let rotated = cluster.rotate_key(None);
    assert!(rotated.status.success());
    wait_for("two keys", || async {
        (cluster.document().await.recipients.len() == 2).then_some(())
    })
    .await;
    let before = std::fs::read_to_string(cluster.path("db.yaml")).unwrap();
    cluster.kseal(
        &[
            "reseal",
            "--kubeconfig",
            cluster.path("admin").to_str().unwrap(),
            "db.yaml",
        ],
        b"",
    );
    let after = std::fs::read_to_string(cluster.path("db.yaml")).unwrap();
    assert_ne!(before, after, "moved to the new key");
    let newest = cluster.document().await.recipients[0].fingerprint.clone();
    assert!(after.contains(&newest.0), "{after}");

    let opened = cluster.kseal(&["unseal", "-i", "escrow.key", "-f", "db.yaml"], b"");
    assert!(
        String::from_utf8_lossy(&opened.stdout).contains("czNjcmV0"),
        "the escrow key opens the resealed file"
    );
    cluster
        .kubectl(&["apply", "-f", cluster.path("db.yaml").to_str().unwrap()])
        .await;
    assert_eq!(cluster.ready("shop", "db").await.0, "True");
    let secret = cluster.secrets("shop").get("db").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");
}

/// Item 5's other half: sixty 1 MB requests left in the cluster took a restarted
/// controller's memory to 134 MB (over its 128 MiB limit), because the request watch held
/// them all. Requests are watched metadata-only now and read one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_left_behind_cost_the_controller_no_memory() {
    let mut cluster = Cluster::new().await;
    let dev: Api<SealedSecretRequest> = Api::namespaced(cluster.admin.clone(), "dev");
    let pad = "p".repeat(1_000_000);
    for i in 0..60 {
        let spec = SealedSecretRequestSpec {
            operation: RequestOperation::Verify,
            target: RequestTarget {
                namespace: "dev".into(),
                name: "x".into(),
            },
            sealed_secret: serde_json::from_value(
                json!({"encryptedData": {}, "template": {"data": {"pad": pad}}}),
            )
            .unwrap(),
        };
        let mut r = SealedSecretRequest::new(&format!("big-{i}"), spec);
        r.metadata.namespace = Some("dev".into());
        dev.create(&PostParams::default(), &r).await.unwrap();
    }
    cluster.start_controller_with(
        "replica-a",
        &["--rate-limit", "1000", "--rate-limit-burst", "1000"],
    );
    wait_for("every request answered", || async {
        let list = dev.list_metadata(&ListParams::default()).await.ok()?;
        let mut answered = 0;
        for r in &list.items {
            let full = dev.get(r.metadata.name.as_deref()?).await.ok()?;
            answered += usize::from(full.status.and_then(|s| s.phase).is_some());
        }
        (answered == 60).then_some(())
    })
    .await;
    let peak = cluster.peak_rss_kib("replica-a");
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB with 60 MB of requests"
    );
}

/// Sealed by the cluster for any namespace (`cluster-wide`), written as `<file>.json` in
/// namespace `ns` with `template`: the objects of the third review's N2.
fn moved_to(
    cluster: &Cluster,
    cert: &std::path::Path,
    (ns, name, file): (&str, &str, &str),
    items: Value,
    template: Value,
) -> PathBuf {
    seal_and_edit(
        cluster,
        cert,
        ("shop", name, file),
        "cluster-wide",
        items,
        |ss| {
            ss["metadata"]["namespace"] = json!(ns);
            ss["spec"]["template"] = template;
        },
    )
}

/// The third review's N2 and N9: a user who may only create SealedSecrets in
/// `kube-system` sealed a bootstrap token there, which authenticated as a node-joining
/// identity. Now kube-system is refused unless the operator opts in, a bootstrap token
/// (or a Helm release record) is refused everywhere even then, the Bitnami keys namespace
/// is refused always, and `--allow-template-metadata` cannot re-open the Bitnami key label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealedsecret_cannot_mint_credentials_or_write_into_kube_system() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    let token = limited_user(&cluster, "kube-system").await;
    let bootstrap = json!({
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "usage-bootstrap-authentication": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
    });
    let bootstrap_type = json!({"type": "bootstrap.kubernetes.io/token"});
    let minted = moved_to(
        &cluster,
        &cert,
        ("kube-system", "bootstrap-token-abcdef", "minted"),
        bootstrap.clone(),
        bootstrap_type.clone(),
    );
    let plain = moved_to(
        &cluster,
        &cert,
        ("kube-system", "team-config", "plain"),
        json!({"password": "in-kube-system"}),
        json!({"type": "Opaque"}),
    );
    let elsewhere = moved_to(
        &cluster,
        &cert,
        ("shop", "bootstrap-token-abcdef", "elsewhere"),
        bootstrap,
        bootstrap_type,
    );
    let bitnami_label = moved_to(
        &cluster,
        &cert,
        ("shop", "fake-bitnami-key", "bitnami-label"),
        json!({"tls.key": "attacker's"}),
        json!({"metadata": {"labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}}}),
    );
    let helm_release = moved_to(
        &cluster,
        &cert,
        ("shop", "sh.helm.release.v1.shop.v99", "helm-release"),
        json!({"release": "H4sI"}),
        json!({"type": "helm.sh/release.v1", "metadata": {"labels": {"owner": "helm", "name": "shop"}}}),
    );
    for file in [&minted, &plain] {
        let applied = cluster
            .kubectl_as(&token, &["apply", "-f", file.to_str().unwrap()])
            .await;
        assert!(applied.status.success(), "RBAC lets the attacker create it");
    }
    cluster
        .apply(&["elsewhere.json", "bitnami-label.json", "helm-release.json"])
        .await;
    for (ns, name, reason) in [
        (
            "kube-system",
            "bootstrap-token-abcdef",
            "ForbiddenNamespace",
        ),
        ("kube-system", "team-config", "ForbiddenNamespace"),
        ("shop", "bootstrap-token-abcdef", "ForbiddenTemplate"),
        ("shop", "fake-bitnami-key", "ForbiddenTemplate"),
        ("shop", "sh.helm.release.v1.shop.v99", "ForbiddenTemplate"),
    ] {
        assert_eq!(
            cluster.ready(ns, name).await,
            ("False".into(), reason.into()),
            "{ns}/{name}"
        );
    }

    // The operator opts kube-system in, and allows the Bitnami prefix: an ordinary Secret
    // unseals there; the bootstrap token and the Bitnami key label stay refused.
    cluster.stop_controller("replica-a");
    cluster.start_controller_with(
        "replica-b",
        &[
            "--allow-kube-system",
            "--allow-template-metadata",
            "sealedsecrets.bitnami.com/",
        ],
    );
    assert_eq!(
        cluster
            .secret_value("kube-system", "team-config", "password")
            .await,
        "in-kube-system"
    );
    for (ns, name) in [
        ("kube-system", "bootstrap-token-abcdef"),
        ("shop", "fake-bitnami-key"),
    ] {
        let api = cluster.sealed(ns);
        let reason = wait_for("the reason after the restart", || async {
            let ss = api.get_opt(name).await.ok().flatten()?;
            let c = ss
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.reason != "ForbiddenNamespace").then_some(c.reason)
        })
        .await;
        assert_eq!(reason, "ForbiddenTemplate", "{ns}/{name}");
    }

    // kube-system is where the Bitnami keys are: refused even with the opt-in.
    cluster.stop_controller("replica-b");
    cluster.start_controller_with(
        "replica-c",
        &[
            "--allow-kube-system",
            "--bitnami-keys-namespace",
            "kube-system",
        ],
    );
    let again = moved_to(
        &cluster,
        &cert,
        ("kube-system", "team-config-2", "again"),
        json!({"password": "in-kube-system"}),
        json!({"type": "Opaque"}),
    );
    cluster
        .kubectl(&["apply", "-f", again.to_str().unwrap()])
        .await;
    assert_eq!(
        cluster.ready("kube-system", "team-config-2").await,
        ("False".into(), "ForbiddenNamespace".into())
    );
    for (ns, name) in [
        ("kube-system", "bootstrap-token-abcdef"),
        ("shop", "bootstrap-token-abcdef"),
        ("shop", "fake-bitnami-key"),
        ("kube-system", "team-config-2"),
    ] {
        let written = cluster.secrets(ns).get_opt(name).await.unwrap();
        assert!(written.is_none(), "nothing was unsealed as {ns}/{name}");
    }

    // `kseal validate` flags each file; `kseal seal` refuses to make them.
    for (file, needle) in [
        (&minted, "bootstrap.kubernetes.io/token"),
        (&plain, "kube-system"),
        (&elsewhere, "bootstrap.kubernetes.io/token"),
        (
            &bitnami_label,
            "sealedsecrets.bitnami.com/sealed-secrets-key",
        ),
        (&helm_release, "helm.sh/release.v1"),
    ] {
        let out = cluster.kseal_unchecked(&["validate", file.to_str().unwrap()], b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "validate {file:?}: {stderr}");
        assert!(stderr.contains(needle), "validate {file:?}: {stderr}");
    }
    let out = cluster.kseal_unchecked(
        &["validate", "--allow-kube-system", plain.to_str().unwrap()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = secret_yaml("kube-system", "x", &[("password", "p")]);
    let cert_arg = cert.to_str().unwrap();
    let out = cluster.kseal_unchecked(&["seal", "--cert", cert_arg], secret.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--allow-kube-system"),
        "{stderr}"
    );
    let out = cluster.kseal_unchecked(
        &["seal", "--cert", cert_arg, "--allow-kube-system"],
        secret.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Secret `ns/name` with items `k<i>` for `items`, each `size` bytes, as JSON.
fn secret_json((ns, name): (&str, &str), items: std::ops::Range<usize>, size: usize) -> Value {
    let data: serde_json::Map<String, Value> = items
        .map(|i| (format!("k{i}"), json!(format!("{i:0size$}"))))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": data,
    })
}

/// [`secret_json`] sealed to `cert`, as JSON.
fn sealed_items(
    cluster: &Cluster,
    cert: &std::path::Path,
    at: (&str, &str),
    items: std::ops::Range<usize>,
    size: usize,
) -> Value {
    let input = secret_json(at, items, size);
    let out = cluster.kseal(
        &["seal", "--cert", cert.to_str().unwrap(), "-o", "json"],
        input.to_string().as_bytes(),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates `request` in `ns` and waits for its answer: (phase, reason, message).
async fn answer_of(
    cluster: &Cluster,
    ns: &str,
    request: SealedSecretRequest,
) -> (String, String, String) {
    let api: Api<SealedSecretRequest> = Api::namespaced(cluster.admin.clone(), ns);
    let name = request.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &request).await.unwrap();
    wait_for("the request's answer", || async {
        let status = api.get_opt(&name).await.ok().flatten()?.status?;
        Some((
            status.phase?,
            status.reason.unwrap_or_default(),
            status.message.unwrap_or_default(),
        ))
    })
    .await
}

fn request(
    name: &str,
    ns: &str,
    operation: RequestOperation,
    target: (&str, &str),
    sealed: &Value,
) -> SealedSecretRequest {
    let mut r = SealedSecretRequest::new(
        name,
        SealedSecretRequestSpec {
            operation,
            target: RequestTarget {
                namespace: target.0.into(),
                name: target.1.into(),
            },
            sealed_secret: serde_json::from_value(sealed["spec"].clone()).unwrap(),
        },
    );
    r.metadata.namespace = Some(ns.into());
    r
}

/// The third review's N1: the items of one object, and the work of a request, were not
/// bounded, and the limiter counted requests. Now an object over 256 items is refused
/// whole before any decryption (as a SealedSecret, a request and in `kseal validate`); a
/// namespace pays for the items it asks about, so eight maximal requests mostly come back
/// `RateLimited` at once while another namespace's SealedSecret unseals; a migration may
/// not answer for another namespace; and a request whose answer its status could not hold
/// is refused at once instead of going unanswered for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_per_object_and_request_is_bounded() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;

    // 257 items: kseal seal refuses; one added by hand is refused by the controller.
    let too_many = secret_json(("shop", "big"), 0..257, 8).to_string();
    let out = cluster.kseal_unchecked(
        &["seal", "--cert", cert.to_str().unwrap()],
        too_many.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("more than the 256"),
        "{stderr}"
    );
    let mut big = sealed_items(&cluster, &cert, ("shop", "big"), 0..256, 8);
    let extra = sealed_items(&cluster, &cert, ("shop", "big"), 256..257, 8);
    big["spec"]["encryptedData"]["k256"] = extra["spec"]["encryptedData"]["k256"].clone();
    std::fs::write(cluster.path("big.json"), big.to_string()).unwrap();
    cluster.apply(&["big.json"]).await;
    assert_eq!(
        cluster.ready("shop", "big").await,
        ("False".into(), "TooMuchWork".into())
    );
    let out = cluster.kseal_unchecked(
        &["validate", cluster.path("big.json").to_str().unwrap()],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("257 items"),
        "{stderr}"
    );
    let (phase, reason, _) = answer_of(
        &cluster,
        "shop",
        request(
            "too-many",
            "shop",
            RequestOperation::Verify,
            ("shop", "big"),
            &big,
        ),
    )
    .await;
    assert_eq!((phase.as_str(), reason.as_str()), ("Failed", "TooMuchWork"));

    // Eight maximal requests at once from dev: 8 tokens each against a burst of 10.
    let maximal = sealed_items(&cluster, &cert, ("dev", "flood"), 0..256, 8);
    let dev: Api<SealedSecretRequest> = Api::namespaced(cluster.admin.clone(), "dev");
    let creates = (0..8).map(|i| {
        let (dev, r) = (
            dev.clone(),
            request(
                &format!("flood-{i}"),
                "dev",
                RequestOperation::Verify,
                ("dev", "flood"),
                &maximal,
            ),
        );
        async move { dev.create(&PostParams::default(), &r).await.unwrap() }
    });
    futures::future::join_all(creates).await;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "meanwhile")])
        .await;
    assert_eq!(
        cluster.secret_value("shop", "db", "password").await,
        "meanwhile"
    );
    let answers = wait_for("eight answers", || async {
        let list = dev.list(&ListParams::default()).await.ok()?;
        let answers: Vec<(String, String)> = list
            .items
            .into_iter()
            .filter_map(|r| {
                let s = r.status?;
                Some((s.phase?, s.reason.unwrap_or_default()))
            })
            .collect();
        (answers.len() == 8).then_some(answers)
    })
    .await;
    let limited = answers.iter().filter(|(_, r)| r == "RateLimited").count();
    let verified = answers.iter().filter(|(p, _)| p == "Succeeded").count();
    assert!(verified >= 1, "{answers:?}");
    // Counted by requests (burst 10) all eight were verified; counted by items, a second
    // one needs 1.6 s of refill.
    assert!(limited >= 4, "charged by items: {answers:?}");

    // A migration answers for the request's own namespace only.
    let (phase, reason, message) = answer_of(
        &cluster,
        "dev",
        request(
            "elsewhere",
            "dev",
            RequestOperation::Migrate,
            ("shop", "db"),
            &maximal,
        ),
    )
    .await;
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        ("Failed", "ForbiddenNamespace"),
        "{message}"
    );

    // An answer its status could not hold: refused at once, not left unanswered.
    let heavy = sealed_items(&cluster, &cert, ("dev", "heavy"), 0..200, 3500);
    let (phase, reason, message) = answer_of(
        &cluster,
        "dev",
        request(
            "heavy",
            "dev",
            RequestOperation::Reseal,
            ("dev", "heavy"),
            &heavy,
        ),
    )
    .await;
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        ("Failed", "TooMuchWork"),
        "{message}"
    );
    assert!(
        message.contains("more than a request can hold"),
        "{message}"
    );
}
