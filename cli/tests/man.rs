//! `kseal man DIR` writes a roff man page for the command and every subcommand.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kseal"))
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "kseal.1",
        "kseal-seal.1",
        "kseal-at-rest.1",
        "kseal-at-rest-scan-etcd.1",
        "kseal-status.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"),
            "{page} is roff"
        );
        assert!(text.contains(".SH"), "{page} has sections");
    }
    let seal = std::fs::read_to_string(dir.path().join("kseal-seal.1")).unwrap();
    assert!(seal.contains("recipients\\-file"), "options are documented");
}
