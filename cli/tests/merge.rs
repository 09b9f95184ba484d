//! `kseal merge` changes only the items it is asked to: every other item keeps its
//! exact bytes, in the parsed object and in the file's text.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;

use common::*;

fn items(path: &std::path::Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    serde_json::from_value(doc["spec"]["encryptedData"].clone()).unwrap()
}

fn lines_for(path: &std::path::Path, key: &str) -> String {
    let prefix = format!("    {key}: ");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {key}"))
        .to_owned()
}

fn unsealed(dir: &std::path::Path, file: &str) -> serde_json::Value {
    let out = run_in(
        dir,
        &["unseal", "-i", "cluster-key.txt", "-f", file, "-o", "json"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn untouched_items_keep_their_exact_bytes() {
    let dir = sandbox();
    let path = dir.path().join("sealed.yaml");
    let before = items(&path);
    let username_line = lines_for(&path, "username");

    let out = run_in(
        dir.path(),
        &[
            "merge",
            "sealed.yaml",
            "--from-literal",
            "api-token=t0k3n",
            "--from-literal",
            "password=new-pass",
            "-R",
            "cluster.recipients",
            "-R",
            "other.recipients",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = items(&path);
    assert_eq!(
        after["username"], before["username"],
        "untouched item changed"
    );
    assert_eq!(
        lines_for(&path, "username"),
        username_line,
        "untouched line changed"
    );
    assert_ne!(after["password"], before["password"]);
    assert!(after.contains_key("api-token"));

    let secret = unsealed(dir.path(), "sealed.yaml");
    assert_eq!(secret["data"]["api-token"], "dDBrM24=");
    assert_eq!(secret["data"]["password"], "bmV3LXBhc3M=");
    assert_eq!(secret["data"]["username"], "c2hvcF9hcHA=");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/name"],
        "postgres"
    );
}

#[test]
fn remove_drops_only_that_item() {
    let dir = sandbox();
    let path = dir.path().join("sealed.yaml");
    let before = items(&path);
    let out = run_in(
        dir.path(),
        &["merge", "sealed.yaml", "--remove", "password"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = items(&path);
    assert_eq!(after.len(), 1);
    assert_eq!(after["username"], before["username"]);
}

#[test]
fn a_secret_on_stdin_is_merged_with_its_labels() {
    let dir = sandbox();
    let path = dir.path().join("sealed.yaml");
    let before = items(&path);
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\n  labels:\n    tier: data\nstringData:\n  port: '5432'\n";
    let out = run_in(
        dir.path(),
        &[
            "merge",
            "sealed.yaml",
            "-R",
            "cluster.recipients",
            "-R",
            "other.recipients",
        ],
        secret.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = items(&path);
    assert_eq!(after["password"], before["password"]);
    assert_eq!(after["username"], before["username"]);
    let secret = unsealed(dir.path(), "sealed.yaml");
    assert_eq!(secret["data"]["port"], "NTQzMg==");
    assert_eq!(secret["metadata"]["labels"]["tier"], "data");
}

#[test]
fn json_files_stay_json_and_failed_merges_change_nothing() {
    let dir = sandbox();
    let path = dir.path().join("sealed.json");
    let original = std::fs::read(&path).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "merge",
            "sealed.json",
            "--from-literal",
            "a=b",
            "-R",
            "other.recipients",
        ],
        b"",
    );
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&path).unwrap(), original);
    let out = run_in(
        dir.path(),
        &[
            "merge",
            "sealed.json",
            "--from-literal",
            "a=b",
            "-R",
            "cluster.recipients",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(doc["spec"]["encryptedData"]["a"].is_string());
}
