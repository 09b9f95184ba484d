//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cmd/errors.in");

pub fn kseal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kseal"))
}

/// Runs kseal in `dir` with `args`, feeding `stdin`.
pub fn run_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = kseal()
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kseal");
    // A command that refuses before reading its input closes the pipe: its exit
    // status and stderr say why, not this write.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().expect("wait for kseal")
}

/// A temporary directory holding a copy of the fixtures.
pub fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Generates a key with `kseal keygen -o`, returning (identity path, recipient).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = run_in(dir, &["keygen", "-o", name], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join(name),
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The recovery command from docs/recovery.md, verbatim.
pub fn recovery_command() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/recovery.md"))
        .unwrap();
    let start = doc
        .find("<!-- recovery-command: begin")
        .expect("begin marker");
    let end = doc.find("<!-- recovery-command: end").expect("end marker");
    let block = &doc[start..end];
    let code_start = block.find("```sh\n").expect("sh fence") + 6;
    let code_end = block[code_start..].find("```").expect("closing fence") + code_start;
    block[code_start..code_end].trim().to_owned()
}
