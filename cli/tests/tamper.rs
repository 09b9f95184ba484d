//! Ciphertexts moved across namespaces, names, item keys and scopes are refused, each
//! with an error that says which part of the binding did not match.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use serde_json::Value;

fn seal_json(dir: &std::path::Path, scope: &str) -> Value {
    let out = run_in(
        dir,
        &[
            "seal",
            "-f",
            "secret.yaml",
            "-R",
            "cluster.recipients",
            "--scope",
            scope,
            "-o",
            "json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Unseals `doc` with the cluster key; returns stderr of the failure.
fn refused(dir: &std::path::Path, doc: &Value) -> String {
    std::fs::write(dir.join("t.json"), doc.to_string()).unwrap();
    let out = run_in(
        dir,
        &["unseal", "-i", "cluster-key.txt", "-f", "t.json"],
        b"",
    );
    assert!(!out.status.success(), "tampered object was unsealed");
    assert!(out.stdout.is_empty(), "printed something on failure");
    let err = stderr(&out);
    assert!(!err.contains("correct-horse"), "{err}");
    err.trim().to_owned()
}

#[test]
fn untouched_objects_unseal() {
    let dir = sandbox();
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        let doc = seal_json(dir.path(), scope);
        std::fs::write(dir.path().join("t.json"), doc.to_string()).unwrap();
        let out = run_in(
            dir.path(),
            &["unseal", "-i", "cluster-key.txt", "-f", "t.json"],
            b"",
        );
        assert!(out.status.success(), "{scope}: {}", stderr(&out));
    }
}

#[test]
fn moved_to_another_namespace() {
    let dir = sandbox();
    for scope in ["strict", "namespace-wide"] {
        let mut doc = seal_json(dir.path(), scope);
        doc["metadata"]["namespace"] = "staging".into();
        assert_eq!(
            refused(dir.path(), &doc),
            "error: t.json: item \"password\": sealed for namespace \"shop\", but found at namespace \"staging\""
        );
    }
    // cluster-wide values may move: that is what the scope means
    let mut doc = seal_json(dir.path(), "cluster-wide");
    doc["metadata"]["namespace"] = "staging".into();
    std::fs::write(dir.path().join("t.json"), doc.to_string()).unwrap();
    assert!(
        run_in(
            dir.path(),
            &["unseal", "-i", "cluster-key.txt", "-f", "t.json"],
            b""
        )
        .status
        .success()
    );
}

#[test]
fn moved_to_another_name() {
    let dir = sandbox();
    let mut doc = seal_json(dir.path(), "strict");
    doc["metadata"]["name"] = "other".into();
    assert_eq!(
        refused(dir.path(), &doc),
        "error: t.json: item \"password\": sealed for name \"db-credentials\", but found at name \"other\""
    );
}

#[test]
fn moved_to_another_item_key() {
    let dir = sandbox();
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        let mut doc = seal_json(dir.path(), scope);
        let data = doc["spec"]["encryptedData"].as_object_mut().unwrap();
        let password = data.remove("password").unwrap();
        data.insert("username".into(), password);
        assert_eq!(
            refused(dir.path(), &doc),
            "error: t.json: item \"username\": sealed for item key \"password\", but found at item key \"username\""
        );
    }
}

#[test]
fn relabelled_to_another_scope() {
    let dir = sandbox();
    let mut doc = seal_json(dir.path(), "strict");
    doc["spec"]["scope"] = "cluster-wide".into();
    assert_eq!(
        refused(dir.path(), &doc),
        "error: t.json: item \"password\": sealed for scope strict, but found at scope cluster-wide"
    );
    let mut doc = seal_json(dir.path(), "cluster-wide");
    doc["spec"]["scope"] = "strict".into();
    assert_eq!(
        refused(dir.path(), &doc),
        "error: t.json: item \"password\": sealed for scope cluster-wide, but found at scope strict"
    );
}

#[test]
fn copied_between_objects() {
    let dir = sandbox();
    let wide = seal_json(dir.path(), "namespace-wide");
    let mut strict = seal_json(dir.path(), "strict");
    strict["spec"]["encryptedData"]["password"] = wide["spec"]["encryptedData"]["password"].clone();
    assert_eq!(
        refused(dir.path(), &strict),
        "error: t.json: item \"password\": sealed for scope namespace-wide, but found at scope strict"
    );
}

#[test]
fn damaged_values() {
    let dir = sandbox();
    let doc = seal_json(dir.path(), "strict");
    let original = doc["spec"]["encryptedData"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            original[..original.len() - 8].to_owned() + "AAAAAAA=",
            "decryption failed: the value was modified or damaged",
        ),
        (
            original[..60].to_owned(),
            "truncated: the age file ends early",
        ),
        ("not base64!".to_owned(), "not valid base64"),
        ("aGVsbG8gd29ybGQ=".to_owned(), "not an age file"),
    ];
    for (value, message) in cases {
        let mut bad = doc.clone();
        bad["spec"]["encryptedData"]["password"] = value.into();
        assert_eq!(
            refused(dir.path(), &bad),
            format!("error: t.json: item \"password\": {message}")
        );
    }
}
