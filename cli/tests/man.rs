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
    // Every page (one per command) ends with examples and exit statuses.
    let help = Command::new(env!("CARGO_BIN_EXE_kseal"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 10, "{help}");
    for command in &commands {
        let page = dir.path().join(format!("kseal-{command}.1"));
        assert!(page.exists(), "no page for kseal {command}");
    }
    let pages: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    for page in pages {
        let path = page.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for section in [
            ".SH EXAMPLES\n.PP\n",
            ".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR\n",
        ] {
            assert!(text.contains(section), "{}: {section:?}", path.display());
        }
    }
    let seal = std::fs::read_to_string(dir.path().join("kseal-seal.1")).unwrap();
    assert!(seal.contains("recipients\\-file"), "options are documented");
}
