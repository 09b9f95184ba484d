//! Bad input never panics, never leaves a partial `-w` file, never changes an existing
//! one, and never echoes a secret value.

#![allow(clippy::unwrap_used)]

use crate::common;

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

/// The security review's item 8: an identity file given where recipients belong printed
/// the whole private key (`cluster-key.txt` and `cluster.recipients` are the README's own
/// names, easy to swap). Every flag that takes recipients now says it is a private key,
/// in one line, without repeating it.
#[test]
fn an_identity_given_as_recipients_is_never_printed() {
    let dir = sandbox();
    let (identity, _) = keygen(dir.path(), "my-key.txt");
    let text = std::fs::read_to_string(&identity).unwrap();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_owned();
    let key_line = secret.as_str();
    let secret_part = &secret["AGE-SECRET-KEY-1".len()..];
    let identity = identity.to_str().unwrap();
    let input = std::fs::read(dir.path().join("secret.yaml")).unwrap();
    for args in [
        vec!["seal", "-r", key_line],
        vec!["seal", "-R", key_line],
        vec!["seal", "--recipients-file", identity],
        vec!["seal", "--cert", identity],
        vec!["validate", "--recipients-file", identity, "secret.yaml"],
    ] {
        let out = run_in(dir.path(), &args, &input);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !err.contains(&secret_part[..12]),
            "{args:?} printed the key: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret_part[..12]));
        assert!(err.contains("private key"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

/// The security review's item 16: a recipients document over plain HTTP could be swapped
/// by anyone on the path (its fingerprints are computed from what it carries). Only this
/// machine (a port-forward) may be asked over HTTP; `round_trip.rs` fetches from there.
#[test]
fn a_cert_over_plain_http_is_refused() {
    let dir = sandbox();
    let out = run_in(
        dir.path(),
        &[
            "seal",
            "-f",
            "secret.yaml",
            "--cert",
            "http://kseal.example.invalid/v1/recipients",
        ],
        b"",
    );
    assert_clean_failure(&out, "--cert http://");
    assert!(
        stderr(&out).contains("plain HTTP is refused"),
        "{}",
        stderr(&out)
    );
}

/// Serves `answers` in turn on a loopback port, one connection each: (status line,
/// extra headers, body). Returns the port.
fn serve(answers: Vec<(&'static str, String, String)>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (status, headers, body) in answers {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The third review's N7: `--cert` followed redirects, so an https URL redirecting to
/// plain http undid the plain-HTTP refusal. A redirect is followed only to the same
/// scheme, host and port.
#[test]
fn a_cert_redirect_to_another_origin_is_not_followed() {
    let dir = sandbox();
    let (_, recipient) = keygen(dir.path(), "k.txt");
    let document = run_in(
        dir.path(),
        &["recipients", "-r", &recipient, "-o", "json"],
        b"",
    );
    let document = String::from_utf8(document.stdout).unwrap();
    // Another port is another origin, as another host or scheme is.
    let elsewhere = serve(vec![("200 OK", String::new(), document.clone())]);
    let port = serve(vec![(
        "302 Found",
        format!("location: http://127.0.0.1:{elsewhere}/v1/recipients\r\n"),
        String::new(),
    )]);
    let url = format!("http://127.0.0.1:{port}/v1/recipients");
    let out = run_in(
        dir.path(),
        &["seal", "-f", "secret.yaml", "--cert", &url],
        b"",
    );
    assert_clean_failure(&out, "--cert http://127.0.0.1");
    assert!(stderr(&out).contains("not followed"), "{}", stderr(&out));
    // Within the origin, it is followed.
    let port = serve(vec![
        (
            "301 Moved Permanently",
            "location: /moved\r\n".into(),
            String::new(),
        ),
        ("200 OK", String::new(), document),
    ]);
    let url = format!("http://127.0.0.1:{port}/v1/recipients");
    let out = run_in(
        dir.path(),
        &["seal", "-f", "secret.yaml", "--cert", &url],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The security review's item 10: a file under review could carry terminal escapes in
/// its name and item keys, and `inspect` or `validate` printed them raw, so a reviewer's
/// terminal showed whatever the file wanted. They are printed escaped now.
#[test]
fn hostile_names_cannot_rewrite_the_terminal() {
    let dir = sandbox();
    let (_, recipient) = keygen(dir.path(), "k.txt");
    let sealed = run_in(
        dir.path(),
        &["seal", "-f", "secret.yaml", "-r", &recipient, "-o", "json"],
        b"",
    );
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let mut doc: serde_json::Value = serde_json::from_slice(&sealed.stdout).unwrap();
    let fake = "x\u{1b}[2K\rpassword  age, 1 X25519 recipient, 338 bytes";
    let value = doc["spec"]["encryptedData"]["password"].clone();
    doc["spec"]["encryptedData"][fake] = value;
    doc["metadata"]["name"] = serde_json::json!("db\u{1b}[31mFAKE\u{202e}");
    std::fs::write(dir.path().join("hostile.json"), doc.to_string()).unwrap();
    for args in [
        vec!["inspect", "hostile.json"],
        vec!["validate", "hostile.json"],
    ] {
        let out = run_in(dir.path(), &args, b"");
        let all = [out.stdout.clone(), out.stderr.clone()].concat();
        assert!(!all.contains(&0x1b), "{args:?} printed an escape");
        assert!(!all.contains(&b'\r'), "{args:?} printed a carriage return");
        let text = String::from_utf8_lossy(&all);
        assert!(!text.contains('\u{202e}'), "{args:?}: {text}");
        assert!(
            text.contains("\\u{1b}"),
            "{args:?} shows it escaped: {text}"
        );
    }
}

/// The security review's item 11: `kseal unseal` holds private keys and plaintext, and a
/// crash could write them to a core file. It turns core dumps off (soft and hard limit)
/// before it reads anything.
#[test]
fn unseal_allows_no_core_dump() {
    let dir = sandbox();
    let (identity, _) = keygen(dir.path(), "k.txt");
    let mut child = kseal()
        .args(["unseal", "-i", identity.to_str().unwrap()])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It waits on stdin now, with the key read: look at its limits.
    let limits = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let text = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).ok()?;
            let line = text.lines().find(|l| l.starts_with("Max core file size"))?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[4] == "0").then(|| fields[4..6].join(" "))
        })
        .unwrap_or_default();
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(limits, "0 0", "soft and hard core limits");
}

/// `kseal … | head`: when the reader goes away, a command stops quietly (status 141, what
/// a shell reports for a process ended by SIGPIPE, as for kubectl and age): no panic, no
/// error line. For each kind of command that writes to stdout.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = sandbox();
    let commands: &[&[&str]] = &[
        &["completion", "bash"],
        &["seal", "-f", "secret.yaml", "-R", "cluster.recipients"],
        &["inspect", "sealed.yaml"],
        &["validate", "sealed.yaml"],
        &["unseal", "-f", "sealed.yaml", "-i", "cluster-key.txt"],
        &["at-rest", "lint", "--help"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = kseal()
            .args(*args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if !args.contains(&"--help") {
            assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
            assert_eq!(err, "", "{args:?}");
        }
    }
}
