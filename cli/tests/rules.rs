//! `.kseal.yaml` rules whose cluster is a recipients document (`cert`): everything offline.
//! After the cluster's key rotates (a new document is committed), `kseal reseal` without a
//! key refuses (no controller to ask) and writes nothing; with `-i` it moves the files to
//! the new key, leaves the others' bytes alone, and the new key alone opens them.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::{keygen, run_in, stderr};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A recipients document (newest first), with fingerprints from `kseal recipients`.
fn document(dir: &Path, recipients: &[&str]) -> String {
    let mut entries = Vec::new();
    for r in recipients {
        let line = ok(run_in(dir, &["recipients", "-r", r, "-o", "text"], b""));
        let fingerprint = line.split_whitespace().next().unwrap().to_owned();
        entries.push(serde_json::json!({"recipient": r, "fingerprint": fingerprint}));
    }
    serde_json::json!({"format": "kseal.dev/recipients/v1", "recipients": entries}).to_string()
}

#[test]
fn a_cert_rule_reseals_offline_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A repository: the search for .kseal.yaml stops at its root.
    std::fs::create_dir_all(root.join(".git")).unwrap();
    let (old_key, old) = keygen(root, "old.key");
    let (new_key, new) = keygen(root, "new.key");
    for d in ["staging/apps", "other"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("staging.json"), document(root, &[&old])).unwrap();
    std::fs::write(
        root.join(".kseal.yaml"),
        "rules:\n  - path: staging/**\n    cert: staging.json\n    namespace: staging\n",
    )
    .unwrap();
    let secret = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  password: pw-{name}\n"
        )
    };
    for name in ["a", "b"] {
        let file = format!("staging/apps/{name}.yaml");
        ok(run_in(
            root,
            &["seal", "-w", &file],
            secret(name).as_bytes(),
        ));
    }
    // Another file, sealed by hand to a key no rule covers: the run must not touch it.
    ok(run_in(
        root,
        &["seal", "-r", &new, "-n", "x", "-w", "other/c.yaml"],
        secret("c").as_bytes(),
    ));

    // The rotation: the cluster publishes its new key first.
    std::fs::write(root.join("staging.json"), document(root, &[&new, &old])).unwrap();
    let before: Vec<Vec<u8>> = ["staging/apps/a.yaml", "staging/apps/b.yaml", "other/c.yaml"]
        .iter()
        .map(|f| std::fs::read(root.join(f)).unwrap())
        .collect();
    // Validate passes (an older key the cluster still holds), with a notice to reseal.
    let out = run_in(root, &["validate", "staging/apps/a.yaml"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kseal reseal staging/apps/a.yaml"),
        "{}",
        stderr(&out)
    );

    // audit names both staging files as to reseal with a key, and the other as unchecked.
    let report: serde_json::Value = serde_json::from_str(&ok(run_in(
        root,
        &["audit", "--offline", "-o", "json"],
        b"",
    )))
    .unwrap();
    let objects = report["objects"].as_array().unwrap();
    let status = |file: &str| {
        objects
            .iter()
            .find(|o| o["file"].as_str().unwrap().ends_with(file))
            .map(|o| {
                (
                    o["status"].as_str().unwrap().to_owned(),
                    o["detail"].clone(),
                )
            })
            .unwrap()
    };
    let (a, detail) = status("staging/apps/a.yaml");
    assert_eq!(a, "reseal");
    assert!(
        detail.as_str().unwrap().starts_with("kseal reseal -i KEY"),
        "{detail}"
    );
    assert_eq!(status("staging/apps/b.yaml").0, "reseal");
    assert_eq!(status("other/c.yaml").0, "unchecked");
    let old_fp = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "older")
        .unwrap();
    assert_eq!(old_fp["files"], 2);
    assert_eq!(old_fp["cluster"], "cert staging.json");

    // Without a key: refused, nothing written, exit 1.
    let out = run_in(root, &["reseal", "staging"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("its cluster is a cert, with no controller to ask"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(root.join("staging/apps/a.yaml")).unwrap(),
        before[0]
    );

    // With the old key: both staging files move to the new key, and only they.
    let out = run_in(
        root,
        &[
            "reseal",
            "staging",
            "-i",
            old_key.to_str().unwrap(),
            "-o",
            "json",
        ],
        b"",
    );
    let report: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(report["summary"]["resealed"], 2, "{report}");
    assert_eq!(report["summary"]["filesWritten"], 2);
    assert_eq!(std::fs::read(root.join("other/c.yaml")).unwrap(), before[2]);
    let out = ok(run_in(
        root,
        &["validate", "staging/apps/a.yaml", "staging/apps/b.yaml"],
        b"",
    ));
    assert!(
        out.contains("as .kseal.yaml rule 1 (staging/**) asks"),
        "{out}"
    );
    for name in ["a", "b"] {
        let file = format!("staging/apps/{name}.yaml");
        let opened = ok(run_in(
            root,
            &["unseal", "-i", new_key.to_str().unwrap(), "-f", &file],
            b"",
        ));
        assert!(opened.contains("namespace: staging"), "{opened}");
        let refused = run_in(
            root,
            &["unseal", "-i", old_key.to_str().unwrap(), "-f", &file],
            b"",
        );
        assert!(!refused.status.success(), "the old key still opens {file}");
    }
    // A file named on the command line that does not parse is one line naming it and
    // the problem, and nothing is written anywhere.
    let whole = std::fs::read(root.join("staging/apps/a.yaml")).unwrap();
    std::fs::write(
        root.join("staging/cut.yaml"),
        "apiVersion: kseal.dev/v1alpha1\nkind: SealedSecret\nspec: {encryptedData: [\n",
    )
    .unwrap();
    let out = run_in(
        root,
        &[
            "reseal",
            "staging/apps/a.yaml",
            "staging/cut.yaml",
            "-i",
            old_key.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: staging/cut.yaml: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read(root.join("staging/apps/a.yaml")).unwrap(),
        whole
    );
    std::fs::remove_file(root.join("staging/cut.yaml")).unwrap();

    // Run again: nothing to do, nothing written.
    let after: Vec<u8> = std::fs::read(root.join("staging/apps/a.yaml")).unwrap();
    let out = run_in(
        root,
        &["reseal", "staging", "-i", old_key.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("resealed 0 SealedSecrets in 0 files; 2 up to date"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(root.join("staging/apps/a.yaml")).unwrap(),
        after
    );
}

/// Issue 27: `kseal validate` on a GitOps directory. A SealedSecret beside what `kseal
/// migrate` leaves (a ConfigMap), a kustomization and a Bitnami SealedSecret: the
/// SealedSecret is checked, the others passed over (the Bitnami one with a notice to
/// migrate it), and the summary counts SealedSecrets; a file named on the command line
/// that holds none fails.
#[test]
fn validate_takes_a_directory_and_checks_sealedsecrets_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd/errors.in");
    let bitnami = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/bitnami");
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for (from, to) in [
        (fixtures.join("sealed.yaml"), "db.yaml"),
        (fixtures.join("configmap.yaml"), "config.yaml"),
        (bitnami.join("shared.yaml"), "legacy.yaml"),
    ] {
        std::fs::copy(from, repo.join(to)).unwrap();
    }
    std::fs::write(
        repo.join("kustomization.yaml"),
        "resources: [db.yaml, config.yaml]\n",
    )
    .unwrap();
    let out = run_in(root, &["validate", "repo"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("repo/db.yaml: shop/db-credentials: ok"),
        "{stdout}"
    );
    assert!(
        stderr_of(&out.stderr).contains("repo/legacy.yaml: a Bitnami SealedSecret (bitnami.com/v1alpha1): convert it with `kseal migrate`"),
        "{}",
        stderr_of(&out.stderr)
    );
    // The other commands that read a repository say so too (issue 27, item 3: audit
    // reported "0 SealedSecrets in 0 files" on a repository not yet migrated).
    let notice = "a Bitnami SealedSecret (bitnami.com/v1alpha1): convert it with `kseal migrate`";
    let out = run_in(root, &["scan", "repo"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("repo/legacy.yaml: {notice}")),
        "{}",
        stderr(&out)
    );
    let out = run_in(root, &["inspect", "repo/legacy.yaml"], b"");
    assert!(
        stderr(&out).contains(&format!("repo/legacy.yaml: {notice}")),
        "{}",
        stderr(&out)
    );
    let out = run_in(root, &["audit", "--offline", "repo"], b"");
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("1 Bitnami SealedSecret in 1 file: Bitnami's (bitnami.com/v1alpha1), not audited: convert them with `kseal migrate`"),
        "{said}"
    );
    let out = run_in(root, &["validate", "repo/config.yaml", "repo"], b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("repo/config.yaml: holds no kseal SealedSecret"),
        "{err}"
    );
    assert!(
        err.contains("0 of 1 SealedSecret failed validation; 1 file not read or holding none"),
        "{err}"
    );
}

fn stderr_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kseal inspect` says where the file's rule gets each recipient it is sealed to: the
/// cluster's document (which key), or the recipients file (issue 27).
#[test]
fn inspect_names_where_each_recipient_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::create_dir_all(root.join("prod")).unwrap();
    let (_, cluster) = keygen(root, "cluster.key");
    let (_, escrow) = keygen(root, "escrow.key");
    std::fs::write(root.join("keys/escrow.txt"), format!("{escrow}\n")).unwrap();
    std::fs::write(root.join("prod.json"), document(root, &[&cluster])).unwrap();
    std::fs::write(
        root.join(".kseal.yaml"),
        "rules:\n  - path: prod/**\n    cert: prod.json\n    recipientsFiles: [keys/escrow.txt]\n    namespace: prod\n",
    )
    .unwrap();
    ok(run_in(
        root,
        &["seal", "-w", "prod/db.yaml"],
        b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: pw\n",
    ));
    let fingerprint = |r: &str| {
        ok(run_in(root, &["recipients", "-r", r, "-o", "text"], b""))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let out = ok(run_in(root, &["inspect", "prod/db.yaml"], b""));
    for expected in [
        format!("{} (cert prod.json, newest key)", fingerprint(&cluster)),
        format!("{} (keys/escrow.txt)", fingerprint(&escrow)),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in:\n{out}");
    }
}
