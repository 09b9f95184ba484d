//! `kseal-controller man DIR` writes the controller's man pages.
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
    assert!(dir.path().join("kseal-controller-rotate-key.1").exists());
}
