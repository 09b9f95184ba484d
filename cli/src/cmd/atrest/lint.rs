//! `kseal at-rest lint FILE`: an `EncryptionConfiguration` checked as kube-apiserver
//! would load it, and what it does to Secrets.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kseal_atrest::config::{self, Lint, SecretsCoverage, Severity};
use serde::Serialize;

use super::exit_code::{EXIT_FAILED, exit};
use crate::cli::LintArgs;
use crate::io::{out, outln};

pub(super) fn run(args: &LintArgs) -> Result<ExitCode> {
    let input = crate::io::read_file(&args.file)?;
    let result = config::lint(&input.bytes);
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            file: &'a str,
            #[serde(flatten)]
            lint: &'a Lint,
            result: &'static str,
        }
        let out = Out {
            file: &input.name,
            lint: &result,
            result: if result.failed() { "fail" } else { "pass" },
        };
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        out!("{}", render_lint(&input.name, &result))?;
    }
    Ok(exit(if result.failed() { EXIT_FAILED } else { 0 }))
}

fn render_lint(name: &str, lint: &Lint) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{name}: {}", lint.sha256);
    if let Some(coverage) = &lint.secrets {
        let _ = writeln!(out, "secrets: {}", describe_coverage(coverage));
    }
    for f in &lint.findings {
        let at = if f.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", f.path)
        };
        let _ = writeln!(out, "{:<5} {at}{} [{}]", f.severity, f.message, f.code);
    }
    let count = |s: Severity| lint.findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "result: {} ({} errors, {} failures, {} warnings)",
        if lint.failed() { "fail" } else { "pass" },
        count(Severity::Error),
        count(Severity::Fail),
        count(Severity::Warn)
    );
    out
}

fn describe_coverage(c: &SecretsCoverage) -> String {
    let Some(pattern) = &c.matched_by else {
        return "not covered by any entry: stored in plaintext".into();
    };
    let entries: Vec<String> = c
        .entries
        .iter()
        .map(|i| format!("resources[{i}]"))
        .collect();
    if c.providers.is_empty() {
        return format!(
            "{} (\"{pattern}\"), whose providers are invalid",
            entries.join(" + ")
        );
    }
    let providers: Vec<String> = c.providers.iter().map(ToString::to_string).collect();
    format!(
        "{} (\"{pattern}\"): writes with {}, reads with {}",
        entries.join(" + "),
        providers[0],
        providers.join(", ")
    )
}
