//! Bad input never panics, never leaves a partial `-w` file, never changes an existing
//! one, and never echoes a secret value.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// Every seal error fixture of tests/cmd/errors.md (the value inside them is "hunter2").
const BAD_SECRETS: &[&str] = &[
    "malformed.yaml",
    "malformed.json",
    "not-a-mapping.yaml",
    "latin1.yaml",
    "configmap.yaml",
    "wrong-apiversion.yaml",
    "no-name.yaml",
    "no-namespace.yaml",
    "bad-name.yaml",
    "empty.yaml",
    "duplicate-key.yaml",
    "bad-base64.yaml",
    "number-value.yaml",
    "bad-key.yaml",
    "bad-scope-annotation.yaml",
    "multi.yaml",
    "missing.yaml",
];

fn assert_clean_failure(out: &std::process::Output, what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: should fail");
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert!(!err.contains("hunter2"), "{what}: leaked the value: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line expected: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kseal"))
        .collect()
}

#[test]
fn bad_secrets_leave_no_output_file() {
    let dir = sandbox();
    for input in BAD_SECRETS {
        let out = run_in(
            dir.path(),
            &[
                "seal",
                "-f",
                input,
                "-R",
                "cluster.recipients",
                "-w",
                "out.yaml",
            ],
            b"",
        );
        assert_clean_failure(&out, input);
        assert!(
            !dir.path().join("out.yaml").exists(),
            "{input}: wrote a partial file"
        );
    }
    assert!(
        leftovers(dir.path()).is_empty(),
        "temporary files left behind"
    );
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched() {
    let dir = sandbox();
    let before = std::fs::read(dir.path().join("sealed.yaml")).unwrap();
    for input in ["duplicate-key.yaml", "multi.yaml"] {
        let out = run_in(
            dir.path(),
            &[
                "seal",
                "-f",
                input,
                "-R",
                "cluster.recipients",
                "-w",
                "sealed.yaml",
            ],
            b"",
        );
        assert_clean_failure(&out, input);
        assert_eq!(
            std::fs::read(dir.path().join("sealed.yaml")).unwrap(),
            before
        );
    }
    // a bad recipient is found before anything is written, too
    let out = run_in(
        dir.path(),
        &[
            "seal",
            "-f",
            "secret.yaml",
            "-r",
            "age1nope",
            "-w",
            "sealed.yaml",
        ],
        b"",
    );
    assert_clean_failure(&out, "bad recipient");
    assert_eq!(
        std::fs::read(dir.path().join("sealed.yaml")).unwrap(),
        before
    );
}

#[test]
fn a_ten_mib_value_is_refused_cleanly() {
    let dir = sandbox();
    let big = "A".repeat(10 * 1024 * 1024);
    let doc = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: big\n  namespace: shop\nstringData:\n  blob: {big}\n"
    );
    let out = run_in(
        dir.path(),
        &["seal", "-R", "cluster.recipients", "-w", "out.yaml"],
        doc.as_bytes(),
    );
    assert_clean_failure(&out, "10 MiB value");
    assert_eq!(
        stderr(&out).trim(),
        "error: stdin: item \"blob\" is 10485760 bytes; a Secret holds at most 1 MiB"
    );
    assert!(!dir.path().join("out.yaml").exists());
    // and the same through --raw
    let out = run_in(
        dir.path(),
        &[
            "seal",
            "--raw",
            "--key",
            "blob",
            "-n",
            "shop",
            "--name",
            "big",
            "-R",
            "cluster.recipients",
        ],
        big.as_bytes(),
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "error: stdin: 10485760 bytes; a Secret holds at most 1 MiB"
    );
}

#[test]
fn items_adding_up_past_one_mib_are_refused() {
    let dir = sandbox();
    let half = "B".repeat(600 * 1024);
    let doc = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: big\n  namespace: shop\nstringData:\n  a: {half}\n  b: {half}\n"
    );
    let out = run_in(
        dir.path(),
        &["seal", "-R", "cluster.recipients"],
        doc.as_bytes(),
    );
    assert_clean_failure(&out, "1.2 MiB total");
    assert!(stderr(&out).contains("the items add up to 1228800 bytes"));
}

#[test]
fn keygen_writes_a_private_file_and_prints_its_recipient() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (path, recipient) = keygen(dir.path(), "k.txt");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")));
    assert!(recipient.starts_with("age1"));
    let out = run_in(dir.path(), &["keygen", "-o", "k.txt"], b"");
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "never overwritten"
    );
}
