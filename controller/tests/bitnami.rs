//! Moving from Bitnami sealed-secrets, against the real thing: Bitnami's controller and
//! `kubeseal` v0.36.6 (built from the Go module proxy) on the same real control plane as
//! kseal. What kseal makes must be what Bitnami made, byte for byte.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Cluster, repo, wait_for, wait_for_within};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kseal_tests::bitnami::{BitnamiController, kubeseal};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use std::time::Duration;

/// What must be identical: data, type, labels, annotations.
type Shape = (
    BTreeMap<String, Vec<u8>>,
    Option<String>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

fn shape(s: &Secret) -> Shape {
    (
        s.data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
        s.type_.clone(),
        s.labels().clone(),
        s.annotations().clone(),
    )
}

/// Installs the Bitnami CRD and the drop-in RBAC, starts the Bitnami controller, and
/// waits for its first key; returns it with that key's certificate file.
pub(crate) async fn with_bitnami(c: &Cluster) -> (BitnamiController, PathBuf) {
    let crd = kseal_tests::bitnami::crd().unwrap();
    c.kubectl(&["apply", "-f", crd.to_str().unwrap()]).await;
    c.kubectl(&[
        "apply",
        "-f",
        repo()
            .join("manifests/components/bitnami/rbac.yaml")
            .to_str()
            .unwrap(),
    ])
    .await;
    c.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/sealedsecrets.bitnami.com",
    ])
    .await;
    // Garbage collection learns of a new CRD at its next discovery, up to 30 s later
    // (a constant in kube-controller-manager), and until then neither collects a pruned
    // Bitnami object's Secret nor orphans it (`--cascade=orphan` waits for that);
    // restarted, it knows the CRD from the start.
    c.plane
        .restart(kseal_tests::cluster::Component::ControllerManager)
        .await
        .unwrap();
    let bitnami = BitnamiController::start(&c.plane, &c.path("bitnami"), &[])
        .await
        .unwrap();
    let cert = bitnami_cert(c, None, "cert-1.pem").await;
    (bitnami, cert)
}

/// Waits for a Bitnami key whose certificate is not the one in `previous` (any key when
/// `None`) and writes its certificate to `file`. (Creation times have one-second
/// resolution: a renewal right after the first key cannot be told apart by them.)
async fn bitnami_cert(c: &Cluster, previous: Option<&Path>, file: &str) -> PathBuf {
    let api: Api<Secret> = Api::namespaced(c.admin.clone(), "kube-system");
    let previous = previous.map(|p| std::fs::read(p).unwrap());
    let cert = wait_for("the Bitnami controller's key", || async {
        let keys = api
            .list(
                &ListParams::default()
                    .labels("sealedsecrets.bitnami.com/sealed-secrets-key=active"),
            )
            .await
            .ok()?
            .items;
        keys.into_iter()
            .filter_map(|k| Some(k.data?.get("tls.crt")?.0.clone()))
            .find(|cert| Some(cert) != previous.as_ref())
    })
    .await;
    let path = c.path(file);
    std::fs::write(&path, cert).unwrap();
    path
}

/// The Bitnami key backup, as its README makes it, written to `file`.
pub(crate) async fn backup_keys(c: &Cluster, file: &str) {
    let keys = c
        .kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "-l",
            "sealedsecrets.bitnami.com/sealed-secrets-key",
            "-o",
            "yaml",
        ])
        .await;
    std::fs::write(c.path(file), keys).unwrap();
}

/// Runs the real kubeseal in the test directory.
pub(crate) fn kubeseal_run(c: &Cluster, args: &[&str], stdin: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(kubeseal().unwrap())
        .args(args)
        .current_dir(c.dir.path())
        .env("KUBECONFIG", c.path("admin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubeseal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn secret(ns: &str, name: &str, extra_meta: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n{extra_meta}{body}"
    )
}

/// Seals with kubeseal --cert into `repo/<file>`.
fn seal(c: &Cluster, cert: &Path, file: &str, args: &[&str], input: &str) {
    let out = c.path(&format!("repo/{file}"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut all = vec![
        "--cert",
        cert.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    kubeseal_run(c, &all, input);
}

/// Every Bitnami input shape: each scope, template labels, annotations, type and
/// immutable, a `--raw` value in a hand-written file with plain template data, several
/// documents in one file, a `--merge-into` update, and a value sealed to a renewed key.
/// Returns the (namespace, name) of every SealedSecret.
async fn bitnami_repository(
    c: &Cluster,
    bitnami: &BitnamiController,
    cert: &Path,
) -> Vec<(&'static str, &'static str)> {
    seal(
        c,
        cert,
        "shop/db.json",
        &[],
        &secret(
            "shop",
            "db",
            "  labels:\n    app: shop\n  annotations:\n    team: payments\n",
            "type: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: \"s3cr\u{e9}t\\n\"\n",
        ),
    );
    // --merge-into: a new item added to the existing file, in place.
    let merged = c.path("repo/shop/db.json");
    kubeseal_run(
        c,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--merge-into",
            merged.to_str().unwrap(),
        ],
        &secret("shop", "db", "", "data:\n  extra: AAEC/w==\n"),
    );
    seal(
        c,
        cert,
        "shop/api.yaml",
        &["--scope", "namespace-wide"],
        &secret(
            "shop",
            "api",
            "  labels:\n    tier: backend\n",
            "stringData:\n  api-key: k-123\n",
        ),
    );
    seal(
        c,
        cert,
        "web/everywhere.yaml",
        &["--scope", "cluster-wide"],
        &secret(
            "web",
            "everywhere",
            "",
            "immutable: true\nstringData:\n  token: t0k3n\n",
        ),
    );
    // --raw values in a hand-written file, with a plain template item, and a second
    // document in the same file.
    let raw = |name: &str, value: &str| {
        let out = kubeseal_run(
            c,
            &[
                "--raw",
                "--cert",
                cert.to_str().unwrap(),
                "--namespace",
                "web",
                "--name",
                name,
                "--from-file=/dev/stdin",
            ],
            value,
        );
        String::from_utf8(out).unwrap()
    };
    let (one, two) = (raw("raw", "first value"), raw("raw", "second"));
    let other = raw("other", "x");
    std::fs::write(
        c.path("repo/web/raw.yaml"),
        format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: raw\n  namespace: web\nspec:\n  encryptedData:\n    one: {one}\n    two: {two}\n  template:\n    metadata:\n      labels:\n        made-by: hand\n    data:\n      mode: production\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: web\ndata:\n  a: b\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: other\n  namespace: web\nspec:\n  encryptedData:\n    x: {other}\n"
        ),
    )
    .unwrap();
    // A renewal (SIGUSR1 makes a new key); the next value is sealed to it.
    assert!(
        Command::new("kill")
            .args(["-USR1", &bitnami.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let renewed = bitnami_cert(c, Some(cert), "cert-2.pem").await;
    assert_ne!(
        std::fs::read(cert).unwrap(),
        std::fs::read(&renewed).unwrap()
    );
    seal(
        c,
        &renewed,
        "dev/renewed.yaml",
        &[],
        &secret("dev", "renewed", "", "stringData:\n  after: renewal\n"),
    );
    vec![
        ("shop", "db"),
        ("shop", "api"),
        ("web", "everywhere"),
        ("web", "raw"),
        ("web", "other"),
        ("dev", "renewed"),
    ]
}

async fn wait_for_secrets(c: &Cluster, objects: &[(&str, &str)]) -> Vec<Secret> {
    let mut out = Vec::new();
    for (ns, name) in objects {
        let api = c.secrets(ns);
        out.push(
            wait_for(&format!("Secret {ns}/{name}"), || async {
                api.get_opt(name).await.ok().flatten()
            })
            .await,
        );
    }
    out
}

fn apply_dir(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            files.push(f.unwrap().path().display().to_string());
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn migrated_files_give_the_secrets_bitnami_made() {
    let mut c = Cluster::new().await;
    let (mut bitnami, cert) = with_bitnami(&c).await;
    c.start_controller("a");
    let recipients = c.recipients().await;
    let objects = bitnami_repository(&c, &bitnami, &cert).await;
    let repo_dir = c.path("repo");
    for file in apply_dir(&repo_dir) {
        c.kubectl(&["apply", "-f", &file]).await;
    }
    let made: Vec<Shape> = wait_for_secrets(&c, &objects)
        .await
        .iter()
        .map(shape)
        .collect();
    // Bitnami's own unsealing, checked against what went in.
    assert_eq!(made[0].0["password"], "s3cr\u{e9}t\n".as_bytes());
    assert_eq!(made[0].0["extra"], [0, 1, 2, 255]);
    assert_eq!(made[3].0["mode"], b"production");
    backup_keys(&c, "bitnami-keys.yaml").await;

    // Bitnami goes away with everything it made.
    bitnami.stop();
    for (ns, name) in &objects {
        c.kubectl(&[
            "delete",
            "-n",
            ns,
            "sealedsecrets.bitnami.com",
            name,
            "--wait",
        ])
        .await;
        c.kubectl(&["delete", "-n", ns, "secret", name, "--ignore-not-found"])
            .await;
    }

    let migrate = |extra: &[&str]| migrate_repo(&c, &recipients, extra);
    // What would change, as one JSON report; nothing is written.
    let before = std::fs::read(repo_dir.join("shop/db.json")).unwrap();
    let out = migrate(&["--dry-run", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["written"], false, "{report}");
    assert_eq!(report["migrated"], 6, "{report}");
    assert_eq!(report["files"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    assert_eq!(
        std::fs::read(repo_dir.join("shop/db.json")).unwrap(),
        before
    );

    let out = migrate(&[]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("migrated 6 SealedSecrets in 5 files"),
        "{summary}"
    );
    // Each file it changed, without -o json (issue 27).
    assert_eq!(
        summary
            .lines()
            .filter(|l| l.starts_with("migrated ") && l.contains(": "))
            .count(),
        5,
        "{summary}"
    );
    assert!(summary.contains("db.json: 1 SealedSecret"), "{summary}");
    for file in apply_dir(&repo_dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("bitnami.com/v1alpha1"), "{file}: {text}");
        assert!(!text.contains("first value") && !text.contains("renewal"));
    }
    let raw = std::fs::read_to_string(repo_dir.join("web/raw.yaml")).unwrap();
    assert!(
        raw.contains("kind: ConfigMap"),
        "other documents stay: {raw}"
    );
    assert!(
        std::fs::read_to_string(repo_dir.join("shop/db.json"))
            .unwrap()
            .trim_start()
            .starts_with('{'),
        "a JSON file stays JSON"
    );
    for file in apply_dir(&repo_dir) {
        c.kubectl(&["apply", "-f", &file]).await;
    }
    let ours = wait_for_secrets(&c, &objects).await;
    for ((made, ours), (ns, name)) in made.iter().zip(&ours).zip(&objects) {
        let mut ours = shape(ours);
        // The one difference: kseal's own label, by which it watches the Secrets it owns.
        assert_eq!(
            ours.2.remove("app.kubernetes.io/managed-by").as_deref(),
            Some("kseal"),
            "{ns}/{name}"
        );
        assert_eq!(
            &ours, made,
            "{ns}/{name}: kseal's Secret differs from Bitnami's"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_in_takes_over_bitnami_secrets_without_a_gap() {
    let mut c = Cluster::new().await;
    let (mut bitnami, cert) = with_bitnami(&c).await;
    seal(
        &c,
        &cert,
        "prod/db.yaml",
        &[],
        &secret(
            "prod",
            "db",
            "  labels:\n    app: db\n",
            "stringData:\n  password: one\n",
        ),
    );
    seal(
        &c,
        &cert,
        "prod/shared.yaml",
        &["--scope", "cluster-wide"],
        &secret("prod", "shared", "", "stringData:\n  token: shared-token\n"),
    );
    let objects = [("prod", "db"), ("prod", "shared")];
    for (ns, name) in objects {
        c.kubectl(&[
            "apply",
            "-f",
            c.path(&format!("repo/{ns}/{name}.yaml")).to_str().unwrap(),
        ])
        .await;
    }
    let before = wait_for_secrets(&c, &objects).await;

    c.start_controller_with(
        "a",
        &[
            "--bitnami-keys-namespace",
            "kube-system",
            "--bitnami-drop-in",
        ],
    );
    let _ = c.recipients().await;
    bitnami.stop();
    // Taken over in place: the same object (uid), the same values, now carrying kseal's
    // label; the Bitnami SealedSecret reports Synced from kseal.
    for (old, (ns, name)) in before.iter().zip(objects) {
        let api = c.secrets(ns);
        let now = wait_for(&format!("kseal to take over {ns}/{name}"), || async {
            let s = api.get_opt(name).await.ok().flatten()?;
            (s.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("kseal"))
            .then_some(s)
        })
        .await;
        assert_eq!(
            now.uid(),
            old.uid(),
            "{ns}/{name} was replaced, not taken over"
        );
        assert_eq!(now.data, old.data);
    }
    let synced = c
        .kubectl(&[
            "get",
            "-n",
            "prod",
            "sealedsecrets.bitnami.com",
            "db",
            "-o",
            "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}",
        ])
        .await;
    assert_eq!(synced, "Synced=True");
    // `kseal status` counts them and the keys imported (issue 27: it said
    // `sealedsecrets: 0` while serving them).
    // (Both objects' conditions, and the count of keys its own task records as they
    // load: waited for.)
    let admin = c.path("admin");
    let expected = [
        "bitnami sealedsecrets: 2 [2 synced]: convert them with `kseal migrate`",
        "bitnami keys: 1 imported from kube-system, drop-in on (the controller unseals them)",
    ];
    let mut status = String::new();
    for _ in 0..300 {
        let out = c.kseal(&["status", "--kubeconfig", admin.to_str().unwrap()], b"");
        status = String::from_utf8(out.stdout).unwrap();
        if expected.iter().all(|line| status.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        expected.iter().all(|line| status.contains(line)),
        "{status}"
    );

    // A change to a Bitnami SealedSecret (kubeseal --merge-into) is applied by kseal.
    let file = c.path("repo/prod/db.yaml");
    kubeseal_run(
        &c,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--merge-into",
            file.to_str().unwrap(),
        ],
        &secret(
            "prod",
            "db",
            "",
            "stringData:\n  password: two\n  added: new\n",
        ),
    );
    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    let api = c.secrets("prod");
    wait_for("kseal to apply the change", || async {
        let data = api.get_opt("db").await.ok().flatten()?.data?;
        (data.get("password")?.0 == b"two" && data.get("added")?.0 == b"new").then_some(())
    })
    .await;
    // A deleted Secret comes back.
    c.kubectl(&["delete", "-n", "prod", "secret", "shared"])
        .await;
    wait_for("kseal to recreate the Secret", || async {
        let data = api.get_opt("shared").await.ok().flatten()?.data?;
        (data.get("token")?.0 == b"shared-token").then_some(())
    })
    .await;

    // The repository converts through the controller, without the keys on this side;
    // the kseal SealedSecret then takes the Secret over from the Bitnami one.
    let out = Command::new(common::kseal_bin())
        .args(["migrate", "--via-controller", "-n", "prod", "repo"])
        .current_dir(c.dir.path())
        .env("KUBECONFIG", c.path("admin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl(&[
        "delete",
        "-n",
        "prod",
        "sealedsecrets.bitnami.com",
        "db",
        "--cascade=orphan",
        "--wait",
    ])
    .await;
    c.kubectl(&[
        "annotate",
        "-n",
        "prod",
        "secret",
        "db",
        "kseal.dev/managed=true",
    ])
    .await;
    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(c.ready("prod", "db").await.0, "True");
    let data = api.get("db").await.unwrap().data.unwrap();
    assert_eq!(data["password"].0, b"two");
    assert_eq!(data["added"].0, b"new");
}

/// What the API reported of one Secret, in order: `Some(uid)` for each write, `None` for
/// its deletion, with the time.
pub(crate) type Seen = std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Option<String>)>>>;

/// Records every change to the Secret `ns/name` from now on (returns once its watch has
/// listed it).
pub(crate) async fn record(c: &Cluster, ns: &str, name: &str) -> Seen {
    let seen: Seen = Default::default();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(c.secrets(ns), config).boxed();
    let (listed, ready) = tokio::sync::oneshot::channel();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut listed = Some(listed);
        // Until the cluster stops.
        while let Some(Ok(event)) = events.next().await {
            let now = std::time::Instant::now();
            match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(s) => out.lock().unwrap().push((now, s.uid())),
                watcher::Event::Delete(_) => out.lock().unwrap().push((now, None)),
                _ => {}
            }
        }
    });
    ready.await.unwrap();
    seen
}

/// A Bitnami SealedSecret `shop/db` applied and unsealed by the real Bitnami controller:
/// its file and the Secret made.
async fn bitnami_db(c: &Cluster, cert: &Path) -> (PathBuf, Secret) {
    seal(
        c,
        cert,
        "shop/db.yaml",
        &[],
        &secret(
            "shop",
            "db",
            "  labels:
    app: db
",
            "stringData:
  password: s3cret
",
        ),
    );
    let file = c.path("repo/shop/db.yaml");
    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    let made = wait_for_secrets(c, &[("shop", "db")]).await.remove(0);
    assert_eq!(made.owner_references().len(), 1, "Bitnami owns its Secret");
    (file, made)
}

/// A migration's start: the real Bitnami controller has unsealed `shop/db` (its file and
/// Secret returned), and kseal's controller runs beside it (its recipients document).
async fn migration() -> (Cluster, BitnamiController, PathBuf, PathBuf, Secret) {
    let mut c = Cluster::new().await;
    let (bitnami, cert) = with_bitnami(&c).await;
    c.start_controller("a");
    let recipients = c.recipients().await;
    let (file, made) = bitnami_db(&c, &cert).await;
    (c, bitnami, recipients, file, made)
}

/// `kseal migrate repo` with the backed-up Bitnami keys, sealed to the cluster's kseal
/// key, and `extra` flags.
fn migrate_repo(c: &Cluster, recipients: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "migrate",
        "repo",
        "--bitnami-key",
        "bitnami-keys.yaml",
        "--cert",
        recipients.to_str().unwrap(),
    ];
    args.extend(extra);
    c.kseal(&args, b"")
}

/// Deletes the Bitnami SealedSecret `shop/db` as a GitOps prune does, with `cascade`
/// (`foreground`: Argo CD's default; `background`: Flux's and kubectl's), waiting for it
/// to be gone.
async fn prune_bitnami_db(c: &Cluster, cascade: &str) {
    let cascade = format!("--cascade={cascade}");
    c.kubectl(&[
        "delete",
        "-n",
        "shop",
        "sealedsecrets.bitnami.com",
        "db",
        &cascade,
        "--wait",
    ])
    .await;
}

/// Backs up the Bitnami keys and converts `repo/` with them.
async fn convert(c: &Cluster, recipients: &Path) {
    backup_keys(c, "bitnami-keys.yaml").await;
    migrate_repo(c, recipients, &[]);
}

/// Flux's and Argo CD's order (the kseal SealedSecret applied, then the Bitnami one
/// pruned with a cascade), after the documented hand-over: the Secret never leaves, and
/// kseal takes the same object over.
#[tokio::test(flavor = "multi_thread")]
async fn a_gitops_migration_after_a_hand_over_keeps_the_secret() {
    let (c, _bitnami, recipients, file, made) = migration().await;

    // Commit 1: the hand-over, applied; the Bitnami controller lets go of the Secret.
    c.kseal(&["migrate", "repo", "--hand-over"], b"");
    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    let api = c.secrets("shop");
    wait_for("the Bitnami controller to let go of the Secret", || async {
        let s = api.get_opt("db").await.ok().flatten()?;
        (s.owner_references().is_empty()
            && s.annotations().get("sealedsecrets.bitnami.com/managed")? == "true")
            .then_some(())
    })
    .await;

    // Commit 2: the converted file applied, then the Bitnami SealedSecret pruned with
    // Argo CD's foreground cascade (which returns once garbage collection is done).
    convert(&c, &recipients).await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("hand-over") && !text.contains("skip"),
        "the hand-over is undone: {text}"
    );
    let seen = record(&c, "shop", "db").await;
    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    prune_bitnami_db(&c, "foreground").await;
    assert_eq!(
        c.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );
    let kss = c.sealed("shop").get("db").await.unwrap();
    let now = wait_for("the Secret owned by the kseal SealedSecret", || async {
        let s = api.get_opt("db").await.ok().flatten()?;
        (s.owner_references().len() == 1 && s.owner_references()[0].uid == kss.uid()?).then_some(s)
    })
    .await;
    assert_eq!(now.uid(), made.uid(), "taken over in place, not replaced");
    assert_eq!(now.data.unwrap()["password"].0, b"s3cret");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, uid)| uid == &made.uid()),
        "the Secret left or was replaced: {seen:?}"
    );

    // The kseal SealedSecret owns it now: pruning that one takes the Secret along.
    c.kubectl(&["delete", "-n", "shop", "kss", "db", "--wait"])
        .await;
    wait_for("the Secret to follow its owner", || async {
        api.get_opt("db").await.ok()?.is_none().then_some(())
    })
    .await;
}

/// The same order without the hand-over: kseal is refused the Secret the Bitnami
/// SealedSecret still owns, and when the prune's garbage collection deletes it, kseal
/// notices at once and writes it again (before, it waited out a minute of backoff).
#[tokio::test(flavor = "multi_thread")]
async fn a_gitops_migration_without_a_hand_over_restores_the_secret_at_once() {
    let (c, _bitnami, recipients, file, made) = migration().await;
    convert(&c, &recipients).await;

    c.kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(c.ready("shop", "db").await.1, "SecretNotOwned");
    let seen = record(&c, "shop", "db").await;
    // Flux's prune: the default (background) cascade.
    prune_bitnami_db(&c, "background").await;
    // Garbage collection deletes the Secret when it gets to it (tens of seconds when
    // its discovery has not yet seen the Bitnami CRD); kseal writes it again on that
    // event, well inside the first minute of backoff its refusal earned.
    let (gone, back) = wait_for_within(
        "the Secret to be deleted and written again",
        Duration::from_secs(120),
        || async {
            let seen = seen.lock().unwrap().clone();
            let deleted = seen.iter().position(|(_, uid)| uid.is_none())?;
            let (back, _) = seen[deleted + 1..].iter().find(|(_, uid)| uid.is_some())?;
            Some((seen[deleted].0, *back))
        },
    )
    .await;
    let gap = back.duration_since(gone);
    eprintln!("the Secret was gone for {} ms", gap.as_millis());
    assert!(gap < Duration::from_secs(30), "gone for {gap:?}");
    let api = c.secrets("shop");
    let now = api.get("db").await.unwrap();
    assert_ne!(now.uid(), made.uid());
    assert_eq!(now.data.unwrap()["password"].0, b"s3cret");
    assert_eq!(c.ready("shop", "db").await.0, "True");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_and_broken_inputs_write_nothing() {
    let mut c = Cluster::new().await;
    let (mut bitnami, cert) = with_bitnami(&c).await;
    c.start_controller("a");
    let recipients = c.recipients().await;
    seal(
        &c,
        &cert,
        "a/good.yaml",
        &[],
        &secret("shop", "good", "", "stringData:\n  v: fine\n"),
    );
    backup_keys(&c, "keys.yaml").await;
    bitnami.stop();
    // A key that is not the one: a fresh RSA key from openssl.
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(c.path("wrong.pem"))
            .arg("2048")
            .output()
            .unwrap()
            .status
            .success()
    );
    let good = std::fs::read_to_string(c.path("repo/a/good.yaml")).unwrap();
    let value = good
        .lines()
        .find_map(|l| l.trim().strip_prefix("v: "))
        .unwrap()
        .to_owned();
    let mut tampered = value.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let cases = [
        (
            "wrong key",
            good.clone(),
            "wrong.pem",
            &["no key could decrypt it"][..],
        ),
        (
            "tampered",
            good.replace(&value, std::str::from_utf8(&tampered).unwrap()),
            "keys.yaml",
            &["tampered"],
        ),
        (
            "moved namespace",
            good.replace("namespace: shop", "namespace: web"),
            "keys.yaml",
            &["no key could decrypt it"],
        ),
        (
            // Cut inside a sealed value or the YAML around it.
            "truncated",
            good[..good.len() / 2].to_owned(),
            "keys.yaml",
            &[
                "not valid YAML",
                "not valid base64",
                "truncated",
                "missing field",
            ],
        ),
    ];
    for (what, text, key, expect) in cases {
        let dir = c.path(&format!("case-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.yaml"), &text).unwrap();
        std::fs::write(dir.join("ok.yaml"), &good).unwrap();
        let out = c.kseal_unchecked(
            &[
                "migrate",
                dir.to_str().unwrap(),
                "--bitnami-key",
                key,
                "--cert",
                recipients.to_str().unwrap(),
            ],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {err}");
        assert!(expect.iter().any(|e| err.contains(e)), "{what}: {err}");
        assert!(err.contains("s.yaml"), "{what}: names the file: {err}");
        assert!(!err.contains("fine"), "{what}: no plaintext in errors");
        // Nothing written: neither the broken file nor the good one beside it.
        assert_eq!(
            std::fs::read_to_string(dir.join("s.yaml")).unwrap(),
            text,
            "{what}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("ok.yaml")).unwrap(),
            good,
            "{what}"
        );
    }
}
