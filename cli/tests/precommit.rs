//! The repository's pre-commit hook (`.pre-commit-hooks.yaml`), run by the real
//! `pre-commit` from PyPI (`.ci/run` installs it into `target/ci-venv`, or
//! `KSEAL_PRE_COMMIT` names one): it blocks a plain Secret in YAML, one in a
//! multi-document file and a kustomize secretGenerator, without printing any value, and
//! passes a repository of SealedSecrets.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn pre_commit() -> PathBuf {
    let bin = std::env::var_os("KSEAL_PRE_COMMIT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-venv/bin/pre-commit"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{}: pre-commit is missing; bash .ci/run installs it (or pip install pre-commit==4.7.0 and set KSEAL_PRE_COMMIT)",
        bin.display()
    );
    bin
}

/// A git repository holding `files`, all staged.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["init", "-q"]);
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&["add", "-A"]);
    dir
}

/// `pre-commit try-repo` with this repository's hook (its working tree, committed or
/// not) over every file: (success, everything it printed).
fn run_hook(dir: &Path) -> (bool, String) {
    let kseal_dir = Path::new(env!("CARGO_BIN_EXE_kseal")).parent().unwrap();
    let out = Command::new(pre_commit())
        .args([
            "try-repo",
            concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
            "kseal-scan",
            "--all-files",
        ])
        .current_dir(dir)
        .env(
            "PATH",
            format!("{}:{}", kseal_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env("PRE_COMMIT_HOME", dir.join(".pre-commit-home"))
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&stderr(&out));
    (out.status.success(), text)
}

const PLAIN: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\nstringData:\n  password: hunter2-plain\n";

#[test]
fn the_hook_blocks_plaintext_and_passes_sealed_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = keygen(dir.path(), "k.txt");
    let sealed = run_in(dir.path(), &["seal", "-r", &recipient], PLAIN.as_bytes());
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let sealed = String::from_utf8(sealed.stdout).unwrap();
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mode: fast\n";
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nsecretGenerator:\n- name: api\n  literals:\n  - token=hunter2-literal\n";

    for (case, files) in [
        ("a plain Secret", vec![("secret.yaml", PLAIN.to_owned())]),
        (
            "a Secret in a multi-document file",
            vec![("app.yaml", format!("{config}---\n{PLAIN}"))],
        ),
        (
            "a kustomize secretGenerator",
            vec![("overlay/kustomization.yaml", kustomization.to_owned())],
        ),
    ] {
        let mut files: Vec<(&str, String)> = files;
        files.push(("sealed.yaml", sealed.clone()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let repo = repo(&refs);
        let (ok, text) = run_hook(repo.path());
        assert!(!ok, "{case}: the hook passed:\n{text}");
        assert!(text.contains("kseal scan"), "{case}: {text}");
        assert!(
            text.contains("a plaintext Secret") || text.contains("secretGenerator api"),
            "{case}: {text}"
        );
        assert!(
            !text.contains("hunter2"),
            "{case}: a value in the output:\n{text}"
        );
    }

    let repo = repo(&[("sealed.yaml", &sealed), ("config.yaml", config)]);
    let (ok, text) = run_hook(repo.path());
    assert!(ok, "sealed files are refused:\n{text}");
    assert!(text.contains("Passed"), "{text}");
}
