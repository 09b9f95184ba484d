//! The GitOps loop with the real Flux: source-controller clones a repository from a real
//! Git server (`git http-backend`) on loopback, kustomize-controller applies it with
//! `wait: true` (its health checks are kstatus on what kseal writes), and kseal unseals
//! what Flux applied. A test commits and pushes with `git`, then asks Flux to look now
//! (`reconcile.fluxcd.io/requestedAt`, what `flux reconcile` and a webhook receiver do).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use kseal_tests::flux::{Flux, GitServer, Repository};

/// Flux's namespace, where the `GitRepository` and the `Kustomization` live.
const FLUX_NS: &str = "flux-system";

/// A cluster with kseal's controller, Flux, and a Git repository `fleet` that Flux
/// applies (`./shop`, pruned, `wait: true`). The repository starts with a README.
struct GitOps {
    cluster: Cluster,
    repo: Repository,
    flux: Flux,
    _git: GitServer,
}

impl GitOps {
    async fn start() -> GitOps {
        let mut gitops = Self::without_kseal().await;
        gitops.cluster.start_controller("a");
        gitops
    }

    /// The same, before kseal's controller starts.
    async fn without_kseal() -> GitOps {
        let cluster = Cluster::with_options(Options {
            workloads: true,
            ..Options::default()
        })
        .await;
        cluster.kubectl(&["create", "namespace", FLUX_NS]).await;
        let crds = kseal_tests::flux::crds().unwrap();
        cluster
            .kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()])
            .await;
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=established",
                "crd/gitrepositories.source.toolkit.fluxcd.io",
                "crd/kustomizations.kustomize.toolkit.fluxcd.io",
            ])
            .await;
        let git = GitServer::start(&cluster.path("git")).unwrap();
        let repo = git.repository("fleet").unwrap();
        repo.write("README.md", "kseal's Flux tests\n").unwrap();
        repo.write("shop/kustomization.yaml", &kustomization_file(&[]))
            .unwrap();
        repo.commit("start").unwrap();
        let flux = Flux::start(&cluster.path("admin"), FLUX_NS, &cluster.path("flux")).unwrap();
        let sources = format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: {FLUX_NS}}}
spec:
  interval: 10m
  url: {url}
  ref: {{branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: shop, namespace: {FLUX_NS}}}
spec:
  interval: 10m
  retryInterval: 5s
  timeout: 2m
  path: ./shop
  prune: true
  wait: true
  sourceRef: {{kind: GitRepository, name: fleet}}
",
            url = repo.url
        );
        std::fs::write(cluster.path("flux.yaml"), sources).unwrap();
        cluster.apply(&["flux.yaml"]).await;
        GitOps {
            cluster,
            repo,
            flux,
            _git: git,
        }
    }

    /// Commits what the working copy holds and asks Flux to fetch it now; returns the
    /// revision as Flux names it (`main@sha1:<hash>`) and when the push ended.
    async fn push(&self, message: &str) -> (String, Instant) {
        let hash = self.repo.commit(message).unwrap();
        let pushed = Instant::now();
        self.cluster
            .kubectl(&[
                "annotate",
                "--overwrite",
                "-n",
                FLUX_NS,
                "gitrepository/fleet",
                &format!("reconcile.fluxcd.io/requestedAt={hash}"),
            ])
            .await;
        (format!("main@sha1:{hash}"), pushed)
    }

    /// The Kustomization's `Ready` condition (status, reason, message) once Flux has
    /// finished with `revision`: applied it (`True`) or failed on it (`False`).
    async fn kustomization_at(&self, revision: &str) -> (String, String, String) {
        let found = wait_for_within(
            "the Kustomization to settle",
            Duration::from_secs(120),
            || async {
                let json = self
                    .cluster
                    .kubectl(&["get", "kustomization", "shop", "-n", FLUX_NS, "-o", "json"])
                    .await;
                let k: serde_json::Value = serde_json::from_str(&json).unwrap();
                let status = &k["status"];
                let ready = status["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?;
                let field = |n: &str| ready[n].as_str().unwrap_or_default().to_owned();
                let settled = match field("status").as_str() {
                    "True" => status["lastAppliedRevision"] == revision,
                    "False" => status["lastAttemptedRevision"] == revision,
                    _ => false,
                };
                settled.then(|| (field("status"), field("reason"), field("message")))
            },
        )
        .await;
        eprintln!("Kustomization at {revision}: {found:?}");
        found
    }

    /// Lists `resources` in the working copy's `shop/kustomization.yaml`.
    fn list(&self, resources: &[&str]) {
        self.repo
            .write("shop/kustomization.yaml", &kustomization_file(resources))
            .unwrap();
    }

    /// Commits `shop/db` and `shop/cache`, sealed to the cluster's key, and waits until
    /// Flux applied them and kseal unsealed both.
    async fn commit_two_secrets(&self) {
        self.seal("db", &[("password", "db-pw")]).await;
        self.seal("cache", &[("password", "cache-pw")]).await;
        self.list(&["db.yaml", "cache.yaml"]);
        let (revision, _) = self.push("two secrets").await;
        assert_eq!(self.kustomization_at(&revision).await.0, "True");
        for name in ["db", "cache"] {
            assert_eq!(
                self.cluster.ready("shop", name).await,
                ("True".into(), "Unsealed".into())
            );
        }
    }

    /// Runs `kseal ARGS` in the working copy, as someone changing the repository would;
    /// it must succeed.
    fn kseal(&self, args: &[&str]) {
        let out = self.cluster.kseal_in(self.repo.dir(), &[], args, b"");
        assert!(
            out.status.success(),
            "kseal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Seals `items` as Secret `shop/name` to the cluster's recipients into the working
    /// copy's `shop/<name>.yaml`.
    async fn seal(&self, name: &str, items: &[(&str, &str)]) {
        let cert = self.cluster.recipients().await;
        let out = self.repo.path(&format!("shop/{name}.yaml"));
        self.cluster.kseal(
            &[
                "seal",
                "--cert",
                cert.to_str().unwrap(),
                "-w",
                out.to_str().unwrap(),
            ],
            secret_yaml("shop", name, items).as_bytes(),
        );
    }
}

impl Drop for GitOps {
    /// A failing test prints what Flux logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.flux.logs());
        }
    }
}

/// `shop/kustomization.yaml` listing `resources`.
fn kustomization_file(resources: &[&str]) -> String {
    let list: String = resources.iter().map(|r| format!("\n  - {r}")).collect();
    let list = if list.is_empty() {
        " []".to_owned()
    } else {
        list
    };
    format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:{list}\n")
}

/// A Deployment whose container reads `password` of Secret `secret` as `DB_PASSWORD`.
/// No kubelet runs here, so it asks for no replicas: the Deployment controller still
/// gives it the status kstatus (and so `wait: true`) reads.
fn workload(secret: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: shop}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: shop}}}}
  template:
    metadata: {{labels: {{app: shop}}}}
    spec:
      containers:
        - name: app
          image: registry.invalid/shop:1
          env:
            - name: DB_PASSWORD
              valueFrom: {{secretKeyRef: {{name: {secret}, key: password}}}}
"
    )
}

/// The value the Deployment's container would get as `DB_PASSWORD`: its `secretKeyRef`
/// followed to the Secret, as the kubelet follows it.
async fn workload_sees(cluster: &Cluster) -> Option<String> {
    let json = cluster
        .kubectl(&["get", "deployment", "app", "-n", "shop", "-o", "json"])
        .await;
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    let reference =
        &d["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"];
    let (name, key) = (reference["name"].as_str()?, reference["key"].as_str()?);
    let secret = cluster.secrets("shop").get_opt(name).await.ok()??;
    let value = secret.data?.get(key)?.0.clone();
    Some(String::from_utf8(value).unwrap())
}

/// A commit with a SealedSecret and a workload that reads it becomes a Secret and a
/// Ready Kustomization; a commit sealed to a key the cluster lacks fails the
/// Kustomization fast (kstatus reads kseal's `Stalled`), and the fixing commit recovers.
#[tokio::test]
async fn a_commit_becomes_a_secret_and_a_wrong_key_fails_the_kustomization() {
    let gitops = GitOps::start().await;
    let cluster = &gitops.cluster;

    gitops.seal("db", &[("password", "first-pw")]).await;
    gitops.repo.write("shop/app.yaml", &workload("db")).unwrap();
    gitops.list(&["db.yaml", "app.yaml"]);
    let (revision, pushed) = gitops.push("add the shop's database password").await;
    let secrets = cluster.secrets("shop");
    wait_for_within(
        "the Secret from the commit",
        Duration::from_secs(120),
        || async { secrets.get_opt("db").await.ok().flatten() },
    )
    .await;
    eprintln!("commit to Secret: {:?}", pushed.elapsed());
    let ready = gitops.kustomization_at(&revision).await;
    eprintln!("commit to Ready Kustomization: {:?}", pushed.elapsed());
    assert_eq!(ready.0, "True", "{ready:?}\n{}", gitops.flux.logs());
    // Ready with `wait: true` means the SealedSecret was unsealed: the workload's
    // reference already reads the value from Git.
    assert_eq!(workload_sees(cluster).await.as_deref(), Some("first-pw"));
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );

    // A commit sealed to a key this cluster never held.
    cluster.seal_to_stranger("shop", "db", "stranger-pw");
    std::fs::copy(cluster.path("db.yaml"), gitops.repo.path("shop/db.yaml")).unwrap();
    let (revision, _) = gitops.push("reseal the password to the wrong key").await;
    let (status, reason, message) = gitops.kustomization_at(&revision).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "HealthCheckFailed"),
        "{message}"
    );
    assert!(
        message.contains("SealedSecret/shop/db status: 'Failed'"),
        "{message}"
    );
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("False".into(), "NoMatchingKey".into())
    );
    // The value the workload reads is still the last one that unsealed.
    assert_eq!(workload_sees(cluster).await.as_deref(), Some("first-pw"));

    // The fixing commit.
    gitops.seal("db", &[("password", "second-pw")]).await;
    let (revision, _) = gitops.push("seal the password to the cluster's key").await;
    let ready = gitops.kustomization_at(&revision).await;
    assert_eq!(ready.0, "True", "{ready:?}");
    assert_eq!(workload_sees(cluster).await.as_deref(), Some("second-pw"));
}

/// A SealedSecret removed from Git: Flux prunes it, and the garbage collector deletes
/// the Secret kseal made from it.
#[tokio::test]
async fn a_sealed_secret_removed_from_git_is_pruned_with_its_secret() {
    let gitops = GitOps::start().await;
    let cluster = &gitops.cluster;
    gitops.commit_two_secrets().await;

    gitops.repo.remove("shop/db.yaml").unwrap();
    gitops.list(&["cache.yaml"]);
    let (revision, _) = gitops.push("drop the database password").await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    let (sealed, secrets) = (cluster.sealed("shop"), cluster.secrets("shop"));
    wait_for("the pruned SealedSecret and its Secret to go", || async {
        let gone = sealed.get_opt("db").await.ok()?.is_none()
            && secrets.get_opt("db").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    // What stays in Git stays unsealed.
    assert_eq!(
        cluster.secret_value("shop", "cache", "password").await,
        "cache-pw"
    );
    assert_eq!(
        cluster.ready("shop", "cache").await,
        ("True".into(), "Unsealed".into())
    );
}

/// A key rotation, then the commit `kseal reseal` makes of the repository: Flux applies
/// it and no SealedSecret leaves Ready at any moment (a watch records every condition
/// the controller writes), and the values stay what they were.
#[tokio::test]
async fn a_rotation_and_the_resealed_commit_keep_every_object_ready() {
    use futures::StreamExt as _;
    use kube::runtime::watcher;

    let gitops = GitOps::start().await;
    let cluster = &gitops.cluster;
    gitops.commit_two_secrets().await;

    // Every Ready condition written from here on.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let record = seen.clone();
    let mut events = watcher(cluster.sealed("shop"), watcher::Config::default()).boxed();
    let watch = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let (watcher::Event::Apply(ss) | watcher::Event::InitApply(ss)) = event.unwrap() else {
                continue;
            };
            let name = ss.metadata.name.clone().unwrap_or_default();
            for c in ss.status.into_iter().flat_map(|s| s.conditions) {
                if c.type_ == "Ready" {
                    record.lock().unwrap().push((name.clone(), c.status));
                }
            }
        }
    });

    let out = cluster.rotate_key(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the new key published", || async {
        (document(cluster).await.recipients.len() == 2).then_some(())
    })
    .await;
    let newest = document(cluster).await.recipients[0].fingerprint.0.clone();
    let admin = cluster.path("admin");
    gitops.kseal(&["reseal", "shop", "--kubeconfig", admin.to_str().unwrap()]);
    for file in ["shop/db.yaml", "shop/cache.yaml"] {
        let path = gitops.repo.path(file);
        let inspected = cluster.kseal(&["inspect", path.to_str().unwrap()], b"");
        let inspected = String::from_utf8_lossy(&inspected.stdout);
        assert!(
            inspected.contains(&newest),
            "{file} not resealed to {newest}: {inspected}"
        );
    }
    let (revision, _) = gitops.push("reseal to the new key").await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    let generation = |name: &'static str| async move {
        let ss = cluster.sealed("shop").get(name).await.unwrap();
        ss.metadata.generation
    };
    assert_eq!(
        generation("db").await,
        Some(2),
        "Flux applied the resealed file"
    );
    assert_eq!(
        cluster.ready("shop", "db").await,
        ("True".into(), "Unsealed".into())
    );
    assert_eq!(
        cluster.ready("shop", "cache").await,
        ("True".into(), "Unsealed".into())
    );
    assert_eq!(
        cluster.secret_value("shop", "db", "password").await,
        "db-pw"
    );
    assert_eq!(
        cluster.secret_value("shop", "cache", "password").await,
        "cache-pw"
    );

    watch.abort();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    let left: Vec<_> = seen.iter().filter(|(_, status)| status != "True").collect();
    assert!(left.is_empty(), "left Ready: {left:?}");
}

/// The switch from Bitnami, as a Flux user makes it: a repository of `bitnami.com`
/// SealedSecrets (sealed by the real kubeseal) reconciled by Flux and unsealed by the
/// real Bitnami controller; then kseal in drop-in mode in its place, a changed Bitnami
/// value committed and unsealed by kseal, the hand-over commit, and the converted commit
/// (Flux applies the kseal SealedSecret and prunes the Bitnami one). The Kustomization is
/// Ready at every commit, and the Secret is the same object throughout, never deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_bitnami_repository_keeps_reconciling_through_the_switch_to_kseal() {
    use crate::bitnami::{backup_keys, kubeseal_run, record, secret, with_bitnami};
    use kube::ResourceExt as _;

    let mut gitops = GitOps::without_kseal().await;
    let (mut bitnami, cert) = with_bitnami(&gitops.cluster).await;
    let kubeseal = |gitops: &GitOps, password: &str| {
        let out = gitops.repo.path("shop/db.yaml");
        let input = secret(
            "shop",
            "db",
            "",
            &format!("stringData:\n  password: {password}\n"),
        );
        kubeseal_run(
            &gitops.cluster,
            &[
                "--cert",
                cert.to_str().unwrap(),
                "-w",
                out.to_str().unwrap(),
            ],
            &input,
        );
    };
    let value = |gitops: &GitOps, want: &'static str| {
        let secrets = gitops.cluster.secrets("shop");
        async move {
            wait_for(&format!("the Secret to hold {want}"), || async {
                let s = secrets.get_opt("db").await.ok().flatten()?;
                (s.data.as_ref()?.get("password")?.0 == want.as_bytes()).then_some(s)
            })
            .await
        }
    };

    // Bitnami, as the repository has run so far.
    kubeseal(&gitops, "one");
    gitops.list(&["db.yaml"]);
    let (revision, _) = gitops
        .push("the database password, sealed by kubeseal")
        .await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    let made = value(&gitops, "one").await;
    let seen = record(&gitops.cluster, "shop", "db").await;

    // The switch: kseal imports the Bitnami keys and unseals Bitnami's kind; Bitnami stops.
    gitops.cluster.start_controller_with(
        "a",
        &[
            "--bitnami-keys-namespace",
            "kube-system",
            "--bitnami-drop-in",
        ],
    );
    let recipients = gitops.cluster.recipients().await;
    bitnami.stop();

    // A value changed the old way still flows: kubeseal, commit, kseal unseals it.
    kubeseal(&gitops, "two");
    let (revision, _) = gitops
        .push("rotate the password, still with kubeseal")
        .await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    value(&gitops, "two").await;

    // The hand-over commit: kseal lets go of the owner reference in drop-in mode.
    gitops.kseal(&["migrate", "shop", "--hand-over"]);
    let (revision, _) = gitops.push("hand the Secrets over").await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    let secrets = gitops.cluster.secrets("shop");
    wait_for("the Secret without an owner", || async {
        let s = secrets.get_opt("db").await.ok().flatten()?;
        s.owner_references().is_empty().then_some(())
    })
    .await;

    // The converted commit: Flux applies kseal's SealedSecret and prunes Bitnami's.
    backup_keys(&gitops.cluster, "bitnami-keys.yaml").await;
    let keys = gitops.cluster.path("bitnami-keys.yaml");
    gitops.kseal(&[
        "migrate",
        "shop",
        "--bitnami-key",
        keys.to_str().unwrap(),
        "--cert",
        recipients.to_str().unwrap(),
    ]);
    let (revision, _) = gitops.push("convert to kseal").await;
    assert_eq!(gitops.kustomization_at(&revision).await.0, "True");
    let kss = gitops.cluster.sealed("shop").get("db").await.unwrap();
    let now = wait_for("the Secret owned by the kseal SealedSecret", || async {
        let s = secrets.get_opt("db").await.ok().flatten()?;
        let owners = s.owner_references();
        (owners.len() == 1 && owners[0].uid == kss.uid()?).then_some(s)
    })
    .await;
    assert_eq!(now.data.as_ref().unwrap()["password"].0, b"two");
    let bitnami_api: kube::Api<kseal_core::bitnami::SealedSecret> =
        kube::Api::namespaced(gitops.cluster.admin.clone(), "shop");
    wait_for("Flux to prune the Bitnami SealedSecret", || async {
        bitnami_api
            .get_opt("db")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        now.uid(),
        made.uid(),
        "the same Secret, taken over in place"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, uid)| uid == &made.uid()),
        "the Secret left or was replaced: {seen:?}"
    );
}
