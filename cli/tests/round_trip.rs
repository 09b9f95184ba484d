//! Round trips through the real binary and the real `age` tool: a Secret sealed to three
//! recipients opens with each identity alone, with `kseal unseal` and with the command
//! documented in docs/recovery.md.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

/// A value that would break any text handling: newlines, NUL, invalid UTF-8, no final newline.
const BINARY: &[u8] = b"line one\nline two\n\x00\xff\xfe tail";

fn secret_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: prod\ntype: Opaque\ndata:\n  blob: {}\nstringData:\n  password: hunter2\n  config.json: '{{\"a\": 1}}'\n",
        STANDARD.encode(BINARY)
    )
}

fn expected() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("blob", BINARY.to_vec()),
        ("config.json", br#"{"a": 1}"#.to_vec()),
        ("password", b"hunter2".to_vec()),
    ]
}

#[test]
fn three_recipients_each_open_alone_with_kseal_and_with_stock_age() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = ["a.key", "b.key", "c.key"]
        .iter()
        .map(|n| keygen(dir.path(), n))
        .collect();
    let mut args = vec!["seal", "-w", "sealed.yaml"];
    for (_, recipient) in &keys {
        args.extend(["-r", recipient.as_str()]);
    }
    let out = run_in(dir.path(), &args, secret_yaml().as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed = std::fs::read_to_string(dir.path().join("sealed.yaml")).unwrap();
    assert!(!sealed.contains("hunter2"));

    let command = recovery_command();
    for (identity, _) in &keys {
        // kseal unseal with this identity alone
        let out = run_in(
            dir.path(),
            &[
                "unseal",
                "-i",
                identity.to_str().unwrap(),
                "-f",
                "sealed.yaml",
                "-o",
                "json",
            ],
            b"",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (item, value) in expected() {
            let got = STANDARD
                .decode(secret["data"][item].as_str().unwrap())
                .unwrap();
            assert_eq!(got, value, "kseal unseal, item {item}");
        }
        // the documented command with Debian's age
        for (item, value) in expected() {
            let out = Command::new("bash")
                .args(["-c", &command])
                .current_dir(dir.path())
                .env("ITEM", item)
                .env("FILE", "sealed.yaml")
                .env("KEY", identity)
                .output()
                .expect("bash");
            assert!(out.status.success(), "recovery of {item}: {}", stderr(&out));
            assert_eq!(out.stdout, value, "stock age recovery of {item}");
        }
    }
    // With a key that opens nothing, the documented command fails loudly (issue 27: it
    // exited 0, as `tail` did, with age's error the only sign).
    let (stranger, _) = keygen(dir.path(), "stranger.key");
    let out = Command::new("bash")
        .args(["-c", &command])
        .current_dir(dir.path())
        .env("ITEM", "password")
        .env("FILE", "sealed.yaml")
        .env("KEY", &stranger)
        .output()
        .expect("bash");
    assert!(
        !out.status.success(),
        "the recovery with a wrong key exited 0"
    );
    assert!(out.stdout.is_empty());
}

/// The documented stock-age command on what `kseal seal` writes for several Secrets: a
/// multi-document YAML file and a JSON `List` (and the JSON re-indented by 4, as kubectl
/// prints it). `NAME` picks the object; without it, an item several objects have is
/// refused in one line, before age sees anything.
#[test]
fn stock_age_opens_items_of_multi_document_yaml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(dir.path(), "k.txt");
    let two = format!(
        "{}---\n{}",
        secret_yaml(),
        secret_yaml()
            .replace("name: app", "name: web")
            .replace("hunter2", "hunter3")
    );
    for file in ["two.yaml", "two.json"] {
        let out = run_in(
            dir.path(),
            &["seal", "-r", &recipient, "-w", file],
            two.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("two.json")).unwrap()).unwrap();
    assert_eq!(json["kind"], "List");
    let mut four = Vec::new();
    let indent = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    serde::Serialize::serialize(
        &json,
        &mut serde_json::Serializer::with_formatter(&mut four, indent),
    )
    .unwrap();
    std::fs::write(dir.path().join("two-kubectl.json"), four).unwrap();

    let recover = |file: &str, item: &str, name: Option<&str>| {
        let mut command = Command::new("bash");
        command
            .args(["-c", &recovery_command()])
            .current_dir(dir.path())
            .env("ITEM", item)
            .env("FILE", file)
            .env("KEY", &identity);
        if let Some(name) = name {
            command.env("NAME", name);
        }
        command.output().unwrap()
    };
    for file in ["two.yaml", "two.json", "two-kubectl.json"] {
        for (name, password) in [("app", "hunter2"), ("web", "hunter3")] {
            let out = recover(file, "password", Some(name));
            assert!(out.status.success(), "{file} {name}: {}", stderr(&out));
            assert_eq!(out.stdout, password.as_bytes(), "{file} {name}");
            let out = recover(file, "blob", Some(name));
            assert_eq!(out.stdout, BINARY, "{file} {name}: {}", stderr(&out));
        }
        let out = recover(file, "password", None);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert_eq!(
            stderr(&out),
            "2 SealedSecrets have an item password: set NAME to the one to open\n",
            "{file}"
        );
        let out = recover(file, "password", Some("db"));
        assert_eq!(
            stderr(&out),
            "no item password in SealedSecret db\n",
            "{file}"
        );
    }
}

#[test]
fn raw_values_open_with_stock_age_and_carry_their_binding() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(dir.path(), "k.key");
    let out = run_in(
        dir.path(),
        &[
            "seal",
            "--raw",
            "--key",
            "token",
            "-n",
            "prod",
            "--scope",
            "namespace-wide",
            "-r",
            &recipient,
        ],
        b"s3cr3t",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed = String::from_utf8(out.stdout).unwrap();
    assert!(!sealed.ends_with('\n'), "no newline when piped");
    let out = Command::new("bash")
        .args([
            "-c",
            r#"printf %s "$SEALED_VALUE" | base64 -d | age -d -i "$KEY""#,
        ])
        .env("SEALED_VALUE", &sealed)
        .env("KEY", &identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"kseal/v1 namespace-wide prod token\ns3cr3t");
}

#[test]
fn stdin_json_list_in_json_list_out() {
    let dir = sandbox();
    let list = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"x"},"stringData":{"k":"v"}},
        {"apiVersion":"v1","kind":"Secret","metadata":{"name":"b","namespace":"x"},"stringData":{"k":"w"}}]}"#;
    let out = run_in(
        dir.path(),
        &["seal", "-R", "cluster.recipients", "-o", "json"],
        list.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["items"][1]["metadata"]["name"], "b");
    assert_eq!(doc["items"][1]["kind"], "SealedSecret");
}

#[test]
fn works_as_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-kseal");
    std::fs::copy(env!("CARGO_BIN_EXE_kseal"), &plugin).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .args(["kseal", "seal", "--help"])
        .env("PATH", path)
        .output()
        .expect("kubectl is installed on these machines");
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Usage: kubectl kseal seal"), "{help}");
}

#[test]
fn completion_scripts_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kseal().args(["completion", shell]).output().unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("unseal") && script.contains("recipients-file"),
            "{shell}"
        );
    }
}

#[test]
fn cert_from_a_url() {
    use std::io::{Read, Write};
    let dir = sandbox();
    let document = std::fs::read(dir.path().join("recipients.json")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let n = conn.read(&mut request).unwrap();
        let head = String::from_utf8_lossy(&request[..n]).into_owned();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            document.len()
        )
        .unwrap();
        conn.write_all(&document).unwrap();
        head
    });
    let url = format!("http://127.0.0.1:{port}/v1/recipients");
    let out = run_in(
        dir.path(),
        &["seal", "-f", "secret.yaml", "--cert", &url, "-o", "json"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.join().unwrap().starts_with("GET /v1/recipients "));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["spec"]["recipients"][0], "8b9831ba600b0c0e");
    std::fs::write(dir.path().join("s.json"), &out.stdout).unwrap();
    let out = run_in(
        dir.path(),
        &["unseal", "-i", "cluster-key.txt", "-f", "s.json"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn keys_made_by_age_keygen_work_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("age-keygen")
        .args(["-o", "k.txt"])
        .current_dir(dir.path())
        .output()
        .expect("age-keygen comes with Debian's age package");
    assert!(out.status.success(), "{}", stderr(&out));
    // age-keygen prints "Public key: age1…" on stderr
    let recipient = stderr(&out)
        .trim()
        .trim_start_matches("Public key: ")
        .to_owned();
    let out = run_in(
        dir.path(),
        &["seal", "-r", &recipient, "-w", "s.yaml"],
        secret_yaml().as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(
        dir.path(),
        &["unseal", "-i", "k.txt", "-f", "s.yaml", "-o", "json"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let out = Command::new("bash")
        .args(["-c", &recovery_command()])
        .current_dir(dir.path())
        .env("ITEM", "password")
        .env("FILE", "s.yaml")
        .env("KEY", "k.txt")
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hunter2", "{}", stderr(&out));
}

/// Post-quantum values and Go age v1.3 (the reference implementation), both ways: what
/// kseal seals to a Go `age-keygen -pq` recipient opens with `kseal unseal` and with the
/// documented stock recovery command run by Go age; what Go age encrypts to a
/// `kseal keygen --pq` recipient opens with kseal's identity; Go age reads kseal's
/// identity file.
#[test]
fn post_quantum_values_interoperate_with_go_age() {
    let go = kseal_tests::cluster::go_age_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |program: &std::path::Path, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program:?} {args:?}: {}",
            stderr(&out)
        );
        out.stdout
    };
    // Go's key, kseal's seal.
    run(&go.join("age-keygen"), &["-pq", "-o", "go.key"]);
    let go_recipient = String::from_utf8(run(&go.join("age-keygen"), &["-y", "go.key"])).unwrap();
    let go_recipient = go_recipient.trim();
    assert!(go_recipient.starts_with("age1pq1"), "{go_recipient}");
    let out = run_in(
        dir.path(),
        &["seal", "-r", go_recipient, "-w", "sealed.yaml"],
        secret_yaml().as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(dir.path(), &["inspect", "sealed.yaml"], b"");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("1 ML-KEM-768+X25519 recipient (post-quantum)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run_in(
        dir.path(),
        &["unseal", "-i", "go.key", "-f", "sealed.yaml", "-o", "json"],
        b"",
    );
    assert!(
        out.status.success(),
        "kseal reads Go's PQ identity: {}",
        stderr(&out)
    );
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    // The documented recovery, with Go age first on PATH (Debian's age has no PQ).
    let path = format!(
        "{}:{}",
        go.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (item, value) in expected() {
        let out = Command::new("bash")
            .args(["-c", &recovery_command()])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("ITEM", item)
            .env("FILE", "sealed.yaml")
            .env("KEY", "go.key")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Go age recovery of {item}: {}",
            stderr(&out)
        );
        assert_eq!(out.stdout, value, "Go age recovery of {item}");
    }

    // kseal's key, Go's encryption.
    let out = run_in(dir.path(), &["keygen", "--pq", "-o", "kseal.key"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.path().join("kseal.recipients"), &out.stdout).unwrap();
    std::fs::write(dir.path().join("plain.txt"), b"sealed by Go age").unwrap();
    run(
        &go.join("age"),
        &["-R", "kseal.recipients", "-o", "plain.age", "plain.txt"],
    );
    let identity_file = std::fs::read_to_string(dir.path().join("kseal.key")).unwrap();
    let identity: kseal_core::pq::PqIdentity = identity_file
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-PQ-1"))
        .unwrap()
        .parse()
        .unwrap();
    let encrypted = std::fs::read(dir.path().join("plain.age")).unwrap();
    let decryptor = age::Decryptor::new_buffered(&encrypted[..]).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut plain).unwrap();
    assert_eq!(plain, b"sealed by Go age");
    // And Go age reads kseal's identity file.
    let decrypted = run(&go.join("age"), &["-d", "-i", "kseal.key", "plain.age"]);
    assert_eq!(decrypted, b"sealed by Go age");
}

/// A post-quantum recipient nothing could open: an ML-KEM coefficient at or above q = 3329
/// (FIPS 203's encapsulation-key check) or a small-order X25519 half. Go age refuses each
/// as a recipient; so must `kseal seal`, before it writes anything, and the valid edge
/// (coefficient 3328) is taken by both.
#[test]
fn post_quantum_recipients_go_age_refuses_are_refused() {
    use kseal_tests::crafted::{pq_recipient, set_first_coefficient};
    let go = kseal_tests::cluster::go_age_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["keygen", "--pq", "-o", "owner.key"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let good = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    std::fs::write(dir.path().join("plain.txt"), b"x").unwrap();
    let go_accepts = |recipient: &str| {
        Command::new(go.join("age"))
            .args(["-r", recipient, "-o", "out.age", "plain.txt"])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    };
    let kseal_seal = |recipient: &str| {
        run_in(
            dir.path(),
            &["seal", "-r", recipient],
            secret_yaml().as_bytes(),
        )
    };

    let cases = [
        (
            "coefficient 4095",
            pq_recipient(&good, |k| set_first_coefficient(k, 4095)),
            false,
        ),
        (
            "coefficient 3329 (q)",
            pq_recipient(&good, |k| set_first_coefficient(k, 3329)),
            false,
        ),
        (
            "X25519 u = 0",
            pq_recipient(&good, |k| k[1184..].fill(0)),
            false,
        ),
        (
            "coefficient 3328",
            pq_recipient(&good, |k| set_first_coefficient(k, 3328)),
            true,
        ),
    ];
    for (what, recipient, valid) in cases {
        assert_eq!(go_accepts(&recipient), valid, "Go age's verdict on {what}");
        let out = kseal_seal(&recipient);
        assert_eq!(
            out.status.success(),
            valid,
            "kseal seal on {what}: {}",
            stderr(&out)
        );
        if !valid {
            assert!(out.stdout.is_empty(), "{what}: nothing sealed");
            let err = stderr(&out);
            assert!(err.contains("not a valid age recipient"), "{what}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        }
    }
}
