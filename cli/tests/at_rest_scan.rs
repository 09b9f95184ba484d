//! `kseal at-rest scan-etcd` against a real etcd (Debian's `etcd-server`, started here)
//! holding Secrets in every format kube-apiserver writes. Each value's classification,
//! the stale and plaintext lists, `--prefix`, `--config`, and that no value is printed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use kseal_tests::etcd::Etcd;
use kseal_tests::stored_values as v;

const MARKER: &[u8] = b"plaintext-marker-7f3a";

fn put_all(endpoint: &str, values: &[(String, Vec<u8>)]) {
    put_all_with(endpoint, None, values);
}

fn put_all_with(
    endpoint: &str,
    tls: Option<&kseal_tests::etcd::TlsFiles>,
    values: &[(String, Vec<u8>)],
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = kseal_etcd::ConnectOptions {
        tls: tls.map(|t| {
            let read = |p: &std::path::Path| std::fs::read(p).unwrap();
            kseal_etcd::Tls {
                ca: Some(read(&t.ca)),
                identity: Some((read(&t.client_cert), read(&t.client_key))),
            }
        }),
        ..Default::default()
    };
    runtime.block_on(async {
        let mut client = kseal_etcd::Client::connect(&[endpoint], options)
            .await
            .unwrap();
        for (k, val) in values {
            client
                .put(k.as_bytes().to_vec(), val.clone())
                .await
                .unwrap();
        }
    });
}

fn scan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kseal"))
        .args(["at-rest", "scan-etcd"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// (etcd key suffix under `<prefix>/secrets/`, value, expected label).
fn corpus(prefix: &str) -> Vec<(String, Vec<u8>, &'static str)> {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let data: &[(&str, &[u8])] = &[("password", MARKER)];
    let key = |ns: &str, name: &str| format!("{prefix}/secrets/{ns}/{name}");
    let mut out = Vec::new();
    let mut add = |ns: &str, name: &str, value: Vec<u8>, label: &'static str| {
        out.push((key(ns, name), value, label));
    };
    add(
        "default",
        "proto-a",
        v::secret_protobuf("default", "proto-a", data),
        "plaintext-protobuf",
    );
    add(
        "shop",
        "proto-b",
        v::secret_protobuf("shop", "proto-b", data),
        "plaintext-protobuf",
    );
    add(
        "shop",
        "json-a",
        v::secret_json("shop", "json-a", data),
        "plaintext-json",
    );
    let plain = v::secret_protobuf("x", "y", data);
    add(
        "shop",
        "cbc-1",
        v::aescbc("key1", &k1, &plain),
        "aescbc:key1",
    );
    add(
        "shop",
        "cbc-2",
        v::aescbc("key2", &k2, &plain),
        "aescbc:key2",
    );
    add(
        "shop",
        "gcm-1",
        v::aesgcm("gcmkey", &k1, &plain, &key("shop", "gcm-1")),
        "aesgcm:gcmkey",
    );
    add(
        "web",
        "box-1",
        v::secretbox("key2", &k2, &plain),
        "secretbox:key2",
    );
    add(
        "web",
        "box-2",
        v::secretbox("key2", &k2, &plain),
        "secretbox:key2",
    );
    add(
        "web",
        "box-3",
        v::secretbox("key1", &k1, &plain),
        "secretbox:key1",
    );
    add(
        "web",
        "box-4",
        v::secretbox("2026:q4", &k1, &plain),
        "secretbox:2026:q4",
    );
    add(
        "web",
        "kms1",
        v::kms_v1("legacy", &plain, &key("web", "kms1")),
        "kms-v1:legacy",
    );
    add(
        "web",
        "kms2-a",
        v::kms_v2("vault", "kek-2026-11", &plain, &key("web", "kms2-a")),
        "kms-v2:vault",
    );
    add(
        "web",
        "kms2-b",
        v::kms_v2("vault", "kek-2026-10", &plain, &key("web", "kms2-b")),
        "kms-v2:vault",
    );
    add(
        "web",
        "garbage",
        b"\x00\x01not a kubernetes value".to_vec(),
        "unknown",
    );
    let mut forged = b"k8s:enc:aescbc:v1:key1:".to_vec();
    forged.extend(b"short");
    add("web", "forged", forged, "aescbc:key1 (malformed)");
    out
}

#[test]
fn classifies_every_format_kube_apiserver_writes() {
    let etcd = Etcd::start().unwrap();
    let corpus = corpus("/registry");
    let mut values: Vec<(String, Vec<u8>)> = corpus
        .iter()
        .map(|(k, val, _)| (k.clone(), val.clone()))
        .collect();
    // Neighbours the scan must not read.
    values.push((
        "/registry/configmaps/default/cm".into(),
        v::secret_json("d", "cm", &[]),
    ));
    values.push(("/registry/secretsx/default/s".into(), b"k8s\x00".to_vec()));
    put_all(&etcd.endpoint, &values);

    let (code, stdout, stderr) =
        scan(&["--endpoints", &etcd.endpoint, "--json", "--page-size", "4"]);
    assert_eq!(code, 3, "plaintext found: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["total"], corpus.len());
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, label) in &corpus {
        *want.entry(label).or_default() += 1;
    }
    // Without a config, a key name ends at the first ':'.
    let key_with_colon = want.remove("secretbox:2026:q4").unwrap();
    *want.entry("secretbox:2026").or_default() += key_with_colon;
    let got: BTreeMap<&str, u64> = json["formats"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.as_str(), n.as_u64().unwrap()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        json["plaintext"],
        serde_json::json!(["default/proto-a", "shop/json-a", "shop/proto-b"])
    );
    assert_eq!(
        json["unreadable"],
        serde_json::json!(["web/forged", "web/garbage"])
    );
    let (_, human, _) = scan(&["--endpoints", &etcd.endpoint]);
    for out in [&stdout, &human] {
        assert!(
            !out.contains(std::str::from_utf8(MARKER).unwrap()),
            "a value was printed"
        );
    }
    assert!(human.contains("plaintext (3)"), "{human}");
}

#[test]
fn config_marks_stale_and_unreadable_values() {
    let etcd = Etcd::start().unwrap();
    let corpus = corpus("/kubernetes.io");
    put_all(
        &etcd.endpoint,
        &corpus
            .iter()
            .map(|(k, val, _)| (k.clone(), val.clone()))
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enc.yaml");
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys:
            - {{name: key2, secret: {key}}}
            - {{name: key1, secret: {key}}}
            - {{name: \"2026:q4\", secret: {key}}}
      - aescbc:
          keys:
            - {{name: key1, secret: {key}}}
      - kms: {{apiVersion: v2, name: vault, endpoint: \"unix:///kms.sock\"}}
      - identity: {{}}
"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = scan(&[
        "--endpoints",
        &etcd.endpoint,
        "--prefix",
        "/kubernetes.io",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 3, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["formats"]["secretbox:2026:q4"], 1,
        "known names split on the config's key names"
    );
    assert_eq!(
        json["standing"],
        serde_json::json!({"current": 2, "stale": 5, "plaintext": 3, "unreadable": 5})
    );
    assert_eq!(
        json["stale"],
        serde_json::json!([
            "shop/cbc-1",
            "web/box-3",
            "web/box-4",
            "web/kms2-a",
            "web/kms2-b"
        ])
    );
    // aescbc key2, aesgcm and kms v1 are not in the config: the apiserver cannot read them.
    assert_eq!(
        json["unreadable"],
        serde_json::json!([
            "shop/cbc-2",
            "shop/gcm-1",
            "web/forged",
            "web/garbage",
            "web/kms1"
        ])
    );
    assert!(!json.to_string().contains(key), "no key material");
}

#[test]
fn clean_store_passes_and_bad_input_fails_in_one_line() {
    let etcd = Etcd::start().unwrap();
    let value = v::kms_v2("vault", "kek", b"x", "/registry/secrets/a/b");
    put_all(&etcd.endpoint, &[("/registry/secrets/a/b".into(), value)]);
    let (code, stdout, _) = scan(&["--endpoints", &etcd.endpoint]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("kms-v2:vault"), "{stdout}");
    assert!(stdout.contains("result: pass"), "{stdout}");

    let (code, _, stderr) = scan(&["--endpoints", "127.0.0.1:1", "--timeout", "2"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --endpoints http://127.0.0.1:1"),
        "{stderr}"
    );

    let (code, _, stderr) = scan(&[
        "--endpoints",
        &etcd.endpoint,
        "--config",
        "/nonexistent.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent.yaml"), "{stderr}");
}

#[test]
fn scans_over_tls_with_client_certificates() {
    let etcd = Etcd::start_tls().unwrap();
    let tls = etcd.tls.clone().unwrap();
    let key = "/registry/secrets/kube-system/bootstrap";
    put_all_with(
        &etcd.endpoint,
        Some(&tls),
        &[(key.into(), v::kms_v2("vault", "kek-1", b"x", key))],
    );
    let (ca, cert, client_key) = (
        tls.ca.to_str().unwrap(),
        tls.client_cert.to_str().unwrap(),
        tls.client_key.to_str().unwrap(),
    );
    let (code, stdout, stderr) = scan(&[
        "--endpoints",
        &etcd.endpoint,
        "--cacert",
        ca,
        "--cert",
        cert,
        "--key",
        client_key,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("kms-v2:vault"), "{stdout}");
    // etcd requires a client certificate, as kubeadm's does.
    let (code, _, stderr) = scan(&[
        "--endpoints",
        &etcd.endpoint,
        "--cacert",
        ca,
        "--timeout",
        "3",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
