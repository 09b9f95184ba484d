//! `kseal at-rest lint` on every fixture in `tests/at-rest/lint/`: the exact set of
//! finding codes and severities, the exit code, and that no key material is printed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// (file, exit code, findings as "severity code").
const CASES: &[(&str, i32, &[&str])] = &[
    // Good and acceptable configs, with their ratings.
    ("kms-v2.yaml", 0, &["info provider-rating"]),
    ("wildcard-core-group.yaml", 0, &["info provider-rating"]),
    ("opt-out-then-wildcard.yaml", 0, &["info provider-rating"]),
    (
        "legacy-kind.yaml",
        0,
        &["note legacy-kind", "info provider-rating"],
    ),
    ("secretbox-rotated.yaml", 0, &["warn provider-rating"]),
    ("aesgcm.yaml", 0, &["warn provider-rating"]),
    (
        "aescbc-identity-fallback.yaml",
        0,
        &["warn provider-weak", "note identity-fallback"],
    ),
    (
        "k3s-generated.json",
        0,
        &["warn provider-weak", "note identity-fallback"],
    ),
    (
        "aescbc-key-16-bytes.yaml",
        0,
        &["warn provider-weak", "warn key-size"],
    ),
    ("kms-v1.yaml", 0, &["warn provider-deprecated"]),
    (
        "kms-no-apiversion.yaml",
        0,
        &["warn kms-no-apiversion", "warn provider-deprecated"],
    ),
    (
        "kms-v1-duplicate-names.yaml",
        0,
        &["warn kms-name-unique", "warn provider-deprecated"],
    ),
    (
        "key-name-colon.yaml",
        0,
        &["warn key-name-colon", "warn provider-rating"],
    ),
    (
        "key-name-duplicate.yaml",
        0,
        &["warn key-name-duplicate", "warn provider-rating"],
    ),
    (
        "secrets-in-two-entries.yaml",
        0,
        &[
            "info provider-rating",
            "note identity-fallback",
            "note secrets-several-entries",
        ],
    ),
    // kube-bench's blind spots: it reads only the line after the last `providers:`.
    ("kube-bench-false-fail.yaml", 0, &["warn provider-rating"]),
    ("kube-bench-false-pass.yaml", 3, &["fail identity-first"]),
    // Secrets in plaintext.
    ("identity-first.yaml", 3, &["fail identity-first"]),
    ("secrets-not-covered.yaml", 3, &["fail secrets-not-covered"]),
    // Files kube-apiserver refuses.
    (
        "masked-by-wildcard.yaml",
        3,
        &["error masked", "fail identity-first"],
    ),
    ("unknown-field.yaml", 3, &["error strict-decoding"]),
    ("secret-wrong-type.yaml", 3, &["error strict-decoding"]),
    ("not-yaml.yaml", 3, &["error parse"]),
    (
        "wrong-kind.yaml",
        3,
        &["error kind", "info provider-rating"],
    ),
    (
        "no-resources.yaml",
        3,
        &["error required", "fail secrets-not-covered"],
    ),
    ("two-providers-one-element.yaml", 3, &["error provider"]),
    ("empty-provider-element.yaml", 3, &["error provider"]),
    ("key-not-base64.yaml", 3, &["error key-base64"]),
    ("secretbox-key-16-bytes.yaml", 3, &["error key-size"]),
    ("aesgcm-key-20-bytes.yaml", 3, &["error key-size"]),
    ("missing-key-fields.yaml", 3, &["error required"]),
    ("kms-tcp-endpoint.yaml", 3, &["error kms-endpoint"]),
    ("kms-v2-cachesize.yaml", 3, &["error kms-cachesize"]),
    ("kms-v1-cachesize-zero.yaml", 3, &["error kms-cachesize"]),
    ("kms-v2-name-colon.yaml", 3, &["error kms-name"]),
    (
        "kms-v2-duplicate-names.yaml",
        3,
        &["error kms-name-unique", "info provider-rating"],
    ),
    ("kms-missing-name-and-endpoint.yaml", 3, &["error required"]),
    (
        "kms-unsupported-apiversion.yaml",
        3,
        &["error kms-apiversion"],
    ),
    ("kms-timeout-zero.yaml", 3, &["error kms-timeout"]),
    (
        "invalid-resource-names.yaml",
        3,
        &["error resource", "fail secrets-not-covered"],
    ),
    (
        "overlap-in-one-entry.yaml",
        3,
        &["error resource", "info provider-rating"],
    ),
    (
        "duplicate-in-one-entry.yaml",
        3,
        &["error resource", "info provider-rating"],
    ),
];

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/at-rest/lint"))
}

fn lint(file: &str, json: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kseal"));
    cmd.args(["at-rest", "lint"]).arg(fixtures().join(file));
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8(out.stdout).unwrap();
    text.push_str(&String::from_utf8(out.stderr).unwrap());
    (out.status.code().unwrap(), text)
}

/// The `secret:` values of a fixture, so the test can prove none is printed.
fn key_material(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            l.strip_prefix("secret:")
                .or_else(|| l.strip_prefix("\"secret\":"))
                .or_else(|| l.strip_prefix("keys:"))
        })
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| v.len() >= 8)
        .collect()
}

#[test]
fn every_fixture_is_covered() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let tested: BTreeSet<String> = CASES.iter().map(|c| c.0.to_owned()).collect();
    assert_eq!(
        on_disk, tested,
        "every fixture has a case and every case a fixture"
    );
    assert!(CASES.len() >= 25);
}

#[test]
fn findings_and_exit_codes() {
    let mut failures = Vec::new();
    for (file, code, expected) in CASES {
        let (status, out) = lint(file, true);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let found: BTreeSet<String> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["severity"].as_str().unwrap(),
                    f["code"].as_str().unwrap()
                )
            })
            .collect();
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        if found != expected || status != *code {
            failures.push(format!(
                "{file}: exit {status} (want {code}), findings {found:?} (want {expected:?})"
            ));
        }
        assert_eq!(
            json["sha256"].as_str().unwrap().len(),
            "sha256:".len() + 64,
            "{file}: the file hash"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn key_material_is_never_printed() {
    let mut checked = 0;
    for (file, _, _) in CASES {
        let secrets = key_material(file);
        for json in [false, true] {
            let (_, out) = lint(file, json);
            for s in &secrets {
                assert!(!out.contains(s.as_str()), "{file}: printed key material");
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "the fixtures hold key material to look for");
}

#[test]
fn secrets_resolution_follows_the_apiserver_order() {
    // The kube-bench blind spots, resolved the way kube-apiserver resolves them.
    let (_, out) = lint("kube-bench-false-pass.yaml", true);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["secrets"]["matched_by"], "secrets");
    assert_eq!(json["secrets"]["providers"][0]["type"], "identity");
    let (_, out) = lint("kube-bench-false-fail.yaml", true);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["secrets"]["providers"][0]["type"], "secretbox");
    let (_, out) = lint("wildcard-core-group.yaml", true);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["secrets"]["matched_by"], "*.");
    let (_, out) = lint("opt-out-then-wildcard.yaml", true);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["secrets"]["matched_by"], "*.*");
    assert_eq!(json["secrets"]["providers"][0]["type"], "kms");
}
