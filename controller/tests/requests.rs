//! Asking the controller, end to end: verify and reseal through its HTTP services and
//! through SealedSecretRequests, a throttled verify, and `--watch-namespaces`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use kube::api::Api;

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
    // Counted for the KsealRequestsRateLimited alert, by how the requests came.
    let limited = |via: &str| {
        cluster
            .metric(
                "replica-a",
                &format!("kseal_requests_rate_limited_total{{via=\"{via}\"}}"),
            )
            .unwrap_or_else(|| panic!("no rate-limited count for {via}"))
    };
    assert!(limited("request") >= 1.0);
    assert_eq!(limited("http"), 0.0);
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
