//! What the CLI benchmarks share.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A whole `kseal seal -R recipients` process with `secret` on its stdin; its output,
/// checked for success.
pub fn seal_process(recipients: &Path, secret: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kseal"))
        .args(["seal", "-R"])
        .arg(recipients)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kseal starts");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(secret.as_bytes())
        .expect("kseal reads its stdin");
    let out = child.wait_with_output().expect("kseal runs");
    assert!(out.status.success(), "kseal seal failed");
    out
}
