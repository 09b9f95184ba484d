//! The repository as the unit (issue 16), on a real kube-apiserver with the controller
//! running: `.kseal.yaml` rules picking recipients, scope and namespace per environment
//! with no flags; `kseal reseal` over a thousand files after a key rotation, killed
//! halfway and run again; `kseal audit` before and after. Every claim ends in a value
//! opened: by the controller into a Secret, or with a key.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::keys::{Key, parse_identities};
use kseal_core::recipients::{Recipient, RecipientSet, RecipientsDocument};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// kseal in `dir`, with the cluster's admin kubeconfig as `$KUBECONFIG` (as a user's
/// shell has it): no flag names a cluster or a recipient.
fn kseal_at(cluster: &Cluster, dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    cluster.kseal_in(dir, &[("KUBECONFIG", &cluster.path("admin"))], args, stdin)
}

/// The files a `kseal reseal -o json` report lists objects of.
fn report_files(report: &Value) -> BTreeSet<String> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["file"]
                .as_str()
                .unwrap()
                .trim_start_matches("./")
                .to_owned()
        })
        .collect()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh age key written as an identity file; its recipient written as a recipients file.
fn key_files(dir: &Path, name: &str) -> Key {
    let key = Key::generate();
    std::fs::write(
        dir.join(format!("{name}.key")),
        key.to_identity_file("2026-12-03T00:00:00Z").as_bytes(),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.txt")),
        format!("{}\n", key.recipient()),
    )
    .unwrap();
    key
}

/// The recipients document of a cluster with these keys (newest first), as `kseal
/// recipients` prints it.
fn document_of(keys: &[&Key]) -> String {
    let recipients: Vec<Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "recipient": k.recipient().to_string(),
                "fingerprint": k.fingerprint().0,
                "created": "2026-12-01T00:00:00Z",
            })
        })
        .collect();
    serde_json::json!({"format": "kseal.dev/recipients/v1", "recipients": recipients}).to_string()
}

fn inspect(cluster: &Cluster, dir: &Path, file: &str) -> Value {
    let out = kseal_at(cluster, dir, &["inspect", file, "-o", "json"], b"");
    serde_json::from_str(&ok(out, file)).unwrap()
}

fn fingerprints(report: &Value) -> BTreeSet<String> {
    report["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The value of `password` in a SealedSecret file, opened with the identity file `key`.
fn unseal_with(cluster: &Cluster, dir: &Path, key: &Path, file: &Path) -> String {
    let out = kseal_at(
        cluster,
        dir,
        &[
            "unseal",
            "-i",
            key.to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
            "-o",
            "json",
        ],
        b"",
    );
    let secret: Value = serde_json::from_str(&ok(out, "unseal")).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

const RULES: &str = "\
# Three environments: prod on the test cluster (by kubeconfig context) plus an escrow key,
# staging on another cluster known by its recipients document, dev on the team's key.
rules:
  - path: prod/**
    context: kseal-test
    recipientsFiles: [keys/escrow.txt]
    namespace: prod
  - path: staging/**
    cert: keys/staging.json
    scope: namespace-wide
    namespace: staging
  - pathRegex: ^dev/[^/]+\\.yaml$
    recipientsFiles: [keys/dev.txt]
    scope: cluster-wide
    namespace: dev
";

/// Must-show 1: a fixture repository with three environments; sealing a file in each
/// directory picks its recipients, scope and namespace with no flags, and each value opens
/// with exactly the keys its rule names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_pick_recipients_scope_and_namespace_per_environment() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let document = cluster.document().await;
    let cluster_fp = document.recipients[0].fingerprint.0.clone();

    let repo = cluster.dir.path().join("repo");
    // A repository: the search for .kseal.yaml stops at its root.
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let keys = repo.join("keys");
    for d in ["prod", "staging", "dev", "tools", "keys"] {
        std::fs::create_dir_all(repo.join(d)).unwrap();
    }
    std::fs::write(repo.join(".kseal.yaml"), RULES).unwrap();
    let escrow = key_files(&keys, "escrow");
    let dev = key_files(&keys, "dev");
    let (staging_old, staging) = (Key::generate(), Key::generate());
    std::fs::write(
        keys.join("staging.key"),
        staging.to_identity_file("2026-12-01T00:00:00Z").as_bytes(),
    )
    .unwrap();
    std::fs::write(
        keys.join("staging.json"),
        document_of(&[&staging, &staging_old]),
    )
    .unwrap();

    // The same Secret, no namespace, no flags, in each environment (and a deeper
    // directory, which the dev regex does not match, and one outside every rule).
    let secret = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {value}\n"
        )
    };
    for (file, value) in [
        ("prod/db.yaml", "pw-prod-1"),
        ("staging/db.yaml", "pw-staging-2"),
        ("dev/db.yaml", "pw-dev-3"),
    ] {
        let out = kseal_at(
            &cluster,
            &repo,
            &["seal", "-w", file],
            secret(value).as_bytes(),
        );
        ok(out, file);
    }
    // Sealing from elsewhere: the rule follows the file written, not the working directory.
    ok(
        kseal_at(
            &cluster,
            &repo.join("tools"),
            &["seal", "-w", "../dev/other.yaml"],
            secret("pw-dev-4").as_bytes(),
        ),
        "dev/other.yaml from tools/",
    );

    let prod = inspect(&cluster, &repo, "prod/db.yaml");
    assert_eq!(
        fingerprints(&prod),
        set(&[&cluster_fp, &escrow.fingerprint().0])
    );
    assert_eq!(prod["scope"], "strict");
    assert_eq!(prod["namespace"], "prod");
    assert_eq!(prod["rule"], ".kseal.yaml rule 1 (prod/**)");
    assert_eq!(prod["ruleCheck"], "recipients as it asks");

    let staging_report = inspect(&cluster, &repo, "staging/db.yaml");
    assert_eq!(
        fingerprints(&staging_report),
        set(&[&staging.fingerprint().0]),
        "the newest key of the cert, and only it"
    );
    assert_eq!(staging_report["scope"], "namespace-wide");
    assert_eq!(staging_report["namespace"], "staging");

    for file in ["dev/db.yaml", "dev/other.yaml"] {
        let dev_report = inspect(&cluster, &repo, file);
        assert_eq!(fingerprints(&dev_report), set(&[&dev.fingerprint().0]));
        assert_eq!(dev_report["scope"], "cluster-wide");
        assert_eq!(dev_report["namespace"], "dev");
    }

    // Each value opens with the keys its rule names, and not with another environment's.
    assert_eq!(
        unseal_with(
            &cluster,
            &repo,
            &keys.join("escrow.key"),
            Path::new("prod/db.yaml")
        ),
        "pw-prod-1"
    );
    assert_eq!(
        unseal_with(
            &cluster,
            &repo,
            &keys.join("staging.key"),
            Path::new("staging/db.yaml")
        ),
        "pw-staging-2"
    );
    assert_eq!(
        unseal_with(
            &cluster,
            &repo,
            &keys.join("dev.key"),
            Path::new("dev/other.yaml")
        ),
        "pw-dev-4"
    );
    let wrong = kseal_at(
        &cluster,
        &repo,
        &["unseal", "-i", "keys/dev.key", "-f", "prod/db.yaml"],
        b"",
    );
    assert!(!wrong.status.success());
    // And the cluster unseals prod's into prod, where the rule put it.
    cluster.apply(&["repo/prod/db.yaml"]).await;
    assert_eq!(
        cluster.secret_value("prod", "db", "password").await,
        "pw-prod-1"
    );

    // merge follows the rule too: the new item is sealed to the same recipients.
    ok(
        kseal_at(
            &cluster,
            &repo,
            &["merge", "prod/db.yaml", "--from-literal", "token=tk-prod-7"],
            b"",
        ),
        "merge",
    );
    cluster.apply(&["repo/prod/db.yaml"]).await;
    assert_eq!(
        cluster.secret_value("prod", "db", "token").await,
        "tk-prod-7"
    );

    // validate follows each file's rule, offline and with --cluster.
    let files = [
        "prod/db.yaml",
        "staging/db.yaml",
        "dev/db.yaml",
        "dev/other.yaml",
    ];
    let mut args = vec!["validate"];
    args.extend(files);
    let out = ok(kseal_at(&cluster, &repo, &args, b""), "validate");
    assert!(out.contains("as .kseal.yaml rule 3"), "{out}");
    args.push("--cluster");
    ok(kseal_at(&cluster, &repo, &args, b""), "validate --cluster");

    // Flags win over the rule; a file no rule matches behaves as without rules.
    let other = Key::generate();
    ok(
        kseal_at(
            &cluster,
            &repo,
            &[
                "seal",
                "-r",
                &other.recipient().to_string(),
                "-w",
                "prod/flagged.yaml",
            ],
            secret("pw-flag-5").as_bytes(),
        ),
        "flags",
    );
    assert_eq!(
        fingerprints(&inspect(&cluster, &repo, "prod/flagged.yaml")),
        set(&[&other.fingerprint().0])
    );
    ok(
        kseal_at(
            &cluster,
            &repo,
            &["seal", "-n", "shop", "-w", "tools/db.yaml"],
            secret("pw-none-6").as_bytes(),
        ),
        "no rule",
    );
    let unruled = inspect(&cluster, &repo, "tools/db.yaml");
    assert_eq!(fingerprints(&unruled), set(&[&cluster_fp]));
    assert!(unruled.get("rule").is_none());

    // A prod object copied into dev/ is not what dev's rule asks: validate and scan say so,
    // naming the rule, and exit 1.
    std::fs::copy(repo.join("prod/db.yaml"), repo.join("dev/copied.yaml")).unwrap();
    let out = kseal_at(&cluster, &repo, &["validate", "dev/copied.yaml"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sealed to recipients"), "{err}");
    let out = kseal_at(&cluster, &repo, &["scan", "dev/"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dev/copied.yaml: SealedSecret prod/db: does not match .kseal.yaml rule 3"),
        "{err}"
    );
    assert!(!err.contains("pw-"), "{err}");
    // The flagged prod file too.
    let out = kseal_at(&cluster, &repo, &["scan", "prod/"], b"");
    assert_eq!(out.status.code(), Some(1));

    // A broken rule file is one line naming the file and the rule.
    std::fs::write(
        repo.join("tools/.kseal.yaml"),
        "rules:\n  - path: '*'\n    recipient: [age1x]\n",
    )
    .unwrap();
    let out = kseal_at(
        &cluster,
        &repo,
        &["seal", "-w", "tools/x.yaml"],
        secret("x").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tools/.kseal.yaml: rule 1: recipient: unknown field `recipient`"),
        "{err}"
    );
    assert!(!repo.join("tools/x.yaml").exists());
}

/// A SealedSecret file for `name` with `value`, sealed in-process (as `kseal seal` would)
/// to `recipients` for namespace `prod`.
/// `n` files `<dir>/<prefix>-NNNN.yaml`, each one SealedSecret `prod/<prefix>-NNNN` whose
/// `password` is `pw-<prefix>-N`, sealed in-process (as `kseal seal` would) to `recipients`.
fn write_sealed(dir: &Path, prefix: &str, n: usize, recipients: &RecipientSet) {
    for i in 0..n {
        let name = format!("{prefix}-{i:04}");
        let value = format!("pw-{prefix}-{i}");
        let sealed =
            kseal_tests::sealing::sealed("prod", &name, &[("password", &value)], recipients);
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            serde_saphyr::to_string(&sealed).unwrap(),
        )
        .unwrap();
    }
}

/// The controller's key with this fingerprint, as an identity file in `dir`.
async fn cluster_key(cluster: &Cluster, fingerprint: &str, dir: &Path) -> PathBuf {
    let api: Api<Secret> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    let list = api
        .list(&ListParams::default().labels("kseal.dev/key"))
        .await
        .unwrap();
    for secret in list.items {
        let json = serde_json::to_vec(&secret).unwrap();
        let key = parse_identities(&json).unwrap().remove(0);
        if key.fingerprint().0 == fingerprint {
            let path = dir.join(format!("cluster-{fingerprint}.key"));
            std::fs::write(&path, &json).unwrap();
            return path;
        }
    }
    panic!("no key {fingerprint}");
}

fn file_bytes(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.insert(
                    path.strip_prefix(repo).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

/// The files `kseal audit -o json` gives each status.
fn audit(cluster: &Cluster, repo: &Path) -> (Value, BTreeMap<String, BTreeSet<String>>) {
    let out = ok(
        kseal_at(cluster, repo, &["audit", "-o", "json"], b""),
        "audit",
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut by_status: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for object in report["objects"].as_array().unwrap() {
        by_status
            .entry(object["status"].as_str().unwrap().to_owned())
            .or_default()
            .insert(
                object["file"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("./")
                    .to_owned(),
            );
    }
    (report, by_status)
}

/// Must-shows 2 and 3: after a rotation, `kseal reseal` over 1,000 files reseals exactly
/// those on the old key and leaves every other file byte-identical; killed halfway and
/// run again, it finishes without redoing finished files. `kseal audit` names the right
/// files before and after. The resealed values open with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_reseal_after_a_rotation_resumably() {
    const OLD: usize = 550;
    const NEW: usize = 400;
    const DEV: usize = 50;
    let mut cluster = Cluster::new().await;
    // Raised so the test is not the rate limit's (the bench measures the default too).
    cluster.start_controller_with(
        "replica-a",
        &["--rate-limit", "200", "--rate-limit-burst", "400"],
    );
    cluster.recipients().await;
    let before_rotation: RecipientsDocument = cluster.document().await;
    let old_key: Recipient = before_rotation.keys().unwrap().remove(0);

    let repo = cluster.dir.path().join("repo");
    // A repository: the search for .kseal.yaml stops at its root.
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    for d in ["prod/before", "prod/after", "dev", "keys"] {
        std::fs::create_dir_all(repo.join(d)).unwrap();
    }
    std::fs::write(
        repo.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    context: kseal-test\n    recipientsFiles: [keys/escrow.txt]\n  - path: dev/**\n    recipientsFiles: [keys/dev.txt]\n",
    )
    .unwrap();
    let escrow = key_files(&repo.join("keys"), "escrow");
    let dev = key_files(&repo.join("keys"), "dev");
    // README and other files the repository holds: left alone.
    std::fs::write(repo.join("prod/kustomization.yaml"), "resources: []\n").unwrap();
    std::fs::write(repo.join("prod/chart-template.yaml"), "{{ .Values.x }}\n").unwrap();

    let to_old = RecipientSet::new([old_key.clone(), escrow.recipient().clone()]).unwrap();
    write_sealed(&repo.join("prod/before"), "old", OLD, &to_old);
    let to_dev = RecipientSet::new([dev.recipient().clone()]).unwrap();
    write_sealed(&repo.join("dev"), "dev", DEV, &to_dev);

    let rotated = cluster.rotate_key(None);
    assert!(rotated.status.success());
    wait_for("the new key", || async {
        (cluster.document().await.recipients.len() == 2).then_some(())
    })
    .await;
    let new_key: Recipient = cluster.document().await.keys().unwrap().remove(0);
    assert_ne!(new_key.fingerprint(), old_key.fingerprint());
    let to_new = RecipientSet::new([new_key.clone(), escrow.recipient().clone()]).unwrap();
    write_sealed(&repo.join("prod/after"), "new", NEW, &to_new);
    let original = file_bytes(&repo);
    let on_old: BTreeSet<String> = (0..OLD)
        .map(|i| format!("prod/before/old-{i:04}.yaml"))
        .collect();

    // Audit before: exactly the old files are to reseal, naming the old key; a rotation of
    // the new key would touch the 400 on it.
    let (report, by_status) = audit(&cluster, &repo);
    assert_eq!(by_status["reseal"], on_old);
    assert_eq!(by_status["current"].len(), NEW + DEV);
    let keys = report["keys"].as_array().unwrap();
    let old_fp = old_key.fingerprint().0;
    let old_entry = keys
        .iter()
        .find(|k| k["fingerprint"] == old_fp.as_str())
        .unwrap();
    assert_eq!(old_entry["role"], "older");
    assert_eq!(old_entry["files"], OLD);
    assert!(old_entry["created"].is_string(), "{old_entry}");
    assert_eq!(report["rotation"][0]["files"], NEW);
    // As text: one command for the 550, not a line each (issue 27), and the rotation
    // of the context rule's cluster.
    let text = ok(kseal_at(&cluster, &repo, &["audit"], b""), "audit");
    assert!(
        text.contains(&format!(
            "  {OLD} SealedSecrets in {OLD} files are on keys their cluster has replaced: kseal reseal .\n"
        )),
        "{text}"
    );
    assert!(!text.contains("old-0001.yaml"), "{text}");
    assert!(
        text.contains(&format!(
            "a rotation of context kseal-test's key would touch {NEW} objects in {NEW} files"
        )),
        "{text}"
    );

    // A dry run writes nothing and names the same files.
    let out = kseal_at(
        &cluster,
        &repo,
        &["reseal", ".", "--dry-run", "-o", "json"],
        b"",
    );
    let dry: Value = serde_json::from_str(&ok(out, "dry run")).unwrap();
    let would = report_files(&dry);
    assert_eq!(would, on_old);
    assert_eq!(file_bytes(&repo), original);

    // Killed (SIGKILL) once 200 objects were resealed: its plain log (stderr is no terminal)
    // says each as it is written.
    let mut child = Command::new(kseal_bin())
        .args(["reseal", ".", "--concurrency", "8"])
        .current_dir(&repo)
        .env("KUBECONFIG", cluster.path("admin"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut logged = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        assert!(!line.contains("pw-"), "{line}");
        if line.contains(": resealed by the controller of context kseal-test: [") {
            logged += 1;
        }
        if logged == 200 {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(logged, 200, "the run was killed halfway");

    // Nothing half-written: every file is whole, and each old one is either as it was or
    // resealed whole. Only old files changed.
    let halfway = file_bytes(&repo);
    let changed: BTreeSet<String> = halfway
        .iter()
        .filter(|(p, b)| original[*p] != **b)
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(changed.is_subset(&on_old));
    assert!(
        changed.len() >= 200 && changed.len() < OLD,
        "{}",
        changed.len()
    );
    // Every old file checked offline against its rule.
    let mut validate = vec!["validate".to_owned()];
    validate.extend(on_old.iter().cloned());
    let args: Vec<&str> = validate.iter().map(String::as_str).collect();
    ok(kseal_at(&cluster, &repo, &args, b""), "validate halfway");

    // Run again: it reseals the rest only.
    let out = kseal_at(&cluster, &repo, &["reseal", ".", "-o", "json"], b"");
    let rerun: Value = serde_json::from_str(&ok(out, "rerun")).unwrap();
    let summary = &rerun["summary"];
    assert_eq!(summary["resealed"], OLD - changed.len(), "{summary}");
    assert_eq!(summary["upToDate"], NEW + DEV + changed.len(), "{summary}");
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["files"], OLD + NEW + DEV);
    let redone = report_files(&rerun);
    assert!(
        redone.is_disjoint(&changed),
        "finished files were not redone"
    );

    // After: every old file changed, every other file byte-identical.
    let after = file_bytes(&repo);
    for (path, bytes) in &after {
        let name = path.display().to_string();
        if on_old.contains(&name) {
            assert_ne!(original[path], *bytes, "{name} resealed");
        } else {
            assert_eq!(original[path], *bytes, "{name} untouched");
        }
    }

    // Audit after: nothing to reseal; the new key now has everything prod holds.
    let (report, by_status) = audit(&cluster, &repo);
    assert!(!by_status.contains_key("reseal"), "{by_status:?}");
    assert_eq!(by_status["current"].len(), OLD + NEW + DEV);
    assert_eq!(report["rotation"][0]["files"], OLD + NEW);

    // The values: the new key alone opens resealed files, the old key alone no longer
    // does, the escrow key still does, and the cluster unseals them.
    let new_identity = cluster_key(&cluster, &new_key.fingerprint().0, &repo).await;
    let old_identity = cluster_key(&cluster, &old_fp, &repo).await;
    for i in (0..OLD).step_by(50) {
        let file = PathBuf::from(format!("prod/before/old-{i:04}.yaml"));
        let want = format!("pw-old-{i}");
        assert_eq!(unseal_with(&cluster, &repo, &new_identity, &file), want);
        assert_eq!(
            unseal_with(&cluster, &repo, &repo.join("keys/escrow.key"), &file),
            want
        );
        let out = kseal_at(
            &cluster,
            &repo,
            &[
                "unseal",
                "-i",
                old_identity.to_str().unwrap(),
                "-f",
                file.to_str().unwrap(),
            ],
            b"",
        );
        assert!(!out.status.success(), "the old key still opens {file:?}");
    }
    cluster
        .apply(&[
            "repo/prod/before/old-0007.yaml",
            "repo/prod/before/old-0549.yaml",
        ])
        .await;
    assert_eq!(
        cluster.secret_value("prod", "old-0007", "password").await,
        "pw-old-7"
    );
    assert_eq!(
        cluster.secret_value("prod", "old-0549", "password").await,
        "pw-old-549"
    );
}

/// What the controller cannot do, it does not: a recipient added to a rule needs -i (the
/// controller never re-encrypts to a recipient a request names), and -i takes it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_added_to_a_rule_needs_an_identity() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    cluster.recipients().await;
    let document = cluster.document().await;
    let repo = cluster.dir.path().join("repo");
    // A repository: the search for .kseal.yaml stops at its root.
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("prod")).unwrap();
    std::fs::create_dir_all(repo.join("keys")).unwrap();
    let escrow = key_files(&repo.join("keys"), "escrow");
    let auditor = key_files(&repo.join("keys"), "auditor");
    std::fs::write(
        repo.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    context: kseal-test\n    recipientsFiles: [keys/escrow.txt]\n",
    )
    .unwrap();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\nstringData:\n  password: pw-added-1\n";
    ok(
        kseal_at(
            &cluster,
            &repo,
            &["seal", "-w", "prod/db.yaml"],
            secret.as_bytes(),
        ),
        "seal",
    );
    std::fs::write(
        repo.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    context: kseal-test\n    recipientsFiles: [keys/escrow.txt, keys/auditor.txt]\n",
    )
    .unwrap();
    let before = std::fs::read(repo.join("prod/db.yaml")).unwrap();
    let out = kseal_at(&cluster, &repo, &["reseal", "prod"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("adds [{}]", auditor.fingerprint().0)) && err.contains("-i IDENTITY"),
        "{err}"
    );
    assert_eq!(std::fs::read(repo.join("prod/db.yaml")).unwrap(), before);
    // The third review's N5: audit called this "a rotation" and exited 0. A recipient
    // added to a rule is a rule to review: named, and the audit fails.
    let out = kseal_at(&cluster, &repo, &["audit", "-o", "json"], b"");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = &report["objects"][0];
    assert_eq!(object["status"], "review", "{report}");
    let detail = object["detail"].as_str().unwrap();
    assert!(
        detail.contains(&auditor.fingerprint().0) && detail.contains("not a rotation"),
        "{detail}"
    );
    // kseal seal says which rule applied and what it chose.
    let out = kseal_at(
        &cluster,
        &repo,
        &["seal", "-w", "prod/other.yaml"],
        secret.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains(".kseal.yaml rule 1 (prod/**) applies: sealed to 3 recipients")
            && err.contains(&auditor.fingerprint().0)
            && err.contains("(the cluster's)"),
        "{err}"
    );
    std::fs::remove_file(repo.join("prod/other.yaml")).unwrap();

    // The escrow holder takes it up offline; the auditor and the cluster now open it.
    ok(
        kseal_at(
            &cluster,
            &repo,
            &["reseal", "prod", "-i", "keys/escrow.key"],
            b"",
        ),
        "reseal -i",
    );
    let report = inspect(&cluster, &repo, "prod/db.yaml");
    assert_eq!(
        fingerprints(&report),
        set(&[
            &document.recipients[0].fingerprint.0,
            &escrow.fingerprint().0,
            &auditor.fingerprint().0
        ])
    );
    assert_eq!(
        unseal_with(
            &cluster,
            &repo,
            &repo.join("keys/auditor.key"),
            Path::new("prod/db.yaml")
        ),
        "pw-added-1"
    );
    cluster.apply(&["repo/prod/db.yaml"]).await;
    assert_eq!(
        cluster.secret_value("prod", "db", "password").await,
        "pw-added-1"
    );

    // A key that opens nothing here fails the object, and writes nothing.
    std::fs::write(
        repo.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    context: kseal-test\n    recipientsFiles: [keys/escrow.txt]\n",
    )
    .unwrap();
    let stranger = key_files(&repo.join("keys"), "stranger");
    drop(stranger);
    let before = std::fs::read(repo.join("prod/db.yaml")).unwrap();
    let out = kseal_at(
        &cluster,
        &repo,
        &["reseal", "prod", "-i", "keys/stranger.key"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("with the keys of -i"), "{err}");
    assert!(!err.contains("pw-added"), "{err}");
    assert_eq!(std::fs::read(repo.join("prod/db.yaml")).unwrap(), before);
}
