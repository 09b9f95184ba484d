//! Snapshot tests of the `kseal` binary: help texts, outputs and user-facing errors,
//! pinned in `tests/cmd/*.md`. Regenerate after an intended change with
//! `TRYCMD=overwrite cargo test -p kseal-cli --test snapshots` and review the diff.

#![allow(clippy::unwrap_used)]

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin("kseal", trycmd::cargo::cargo_bin!("kseal"))
        .case("tests/cmd/*.md");
}
