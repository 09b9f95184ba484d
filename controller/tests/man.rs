//! `kseal-controller man DIR` writes the controller's man pages; each subcommand's help
//! lists the flags it reads.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.path().join("kseal-controller.1")).unwrap();
    assert!(
        main.contains("require\\-encryption\\-at\\-rest"),
        "flags are documented"
    );
    // rotate-key documents the flags it reads, not every flag of the controller.
    let rotate = std::fs::read_to_string(dir.path().join("kseal-controller-rotate-key.1")).unwrap();
    assert!(rotate.contains("\\-\\-namespace"), "{rotate}");
    assert!(rotate.contains("\\-\\-kubeconfig"), "{rotate}");
    assert!(!rotate.contains("concurrency"), "{rotate}");
}

#[test]
fn rotate_key_takes_only_its_own_flags() {
    let help = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args(["rotate-key", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--namespace") && help.contains("--kubeconfig"),
        "{help}"
    );
    for run_only in [
        "--concurrency",
        "--listen-addr",
        "--key-rotation-period",
        "--http-services",
    ] {
        assert!(!help.contains(run_only), "{run_only} in {help}");
    }
    // A run flag given to rotate-key is refused, not silently ignored.
    let out = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args(["rotate-key", "--concurrency", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Without a subcommand, the run flags still work (the Deployment sets them as flags
    // or environment variables).
    let out = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
        .args([
            "--concurrency",
            "4",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubeconfig /nonexistent/kubeconfig: No such file or directory"),
        "{stderr}"
    );
}
