//! `kseal at-rest check`: the apiservers asked through the Kubernetes API (flags,
//! health, metrics, a canary write), and the verdict drawn from what they said.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kseal_atrest::evidence;
use kseal_atrest::probe::{self, ProbeOptions};
use kseal_atrest::verdict::{self, ClusterVerdict, Verdict};
use serde::Serialize;

use super::exit_code::{EXIT_FAILED, EXIT_UNKNOWN, exit};
use crate::cli::CheckArgs;
use crate::cluster::Cluster;
use crate::io::{out, outln};

pub(super) fn run(args: &CheckArgs) -> Result<ExitCode> {
    let cluster = Cluster::require(&args.cluster)?;
    let options = ProbeOptions {
        canary_namespace: (!args.no_canary).then(|| {
            args.namespace
                .clone()
                .unwrap_or_else(|| cluster.default_namespace.clone())
        }),
    };
    let gathered = cluster
        .runtime
        .block_on(probe::probe(&cluster.config, &options));
    let verdict = verdict::judge_cluster(&gathered);
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            verdict: &'a ClusterVerdict,
            evidence: &'a [evidence::ApiserverEvidence],
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                verdict: &verdict,
                evidence: &gathered
            })?
        )?;
    } else {
        out!("{}", render_check(&verdict))?;
    }
    Ok(exit(match verdict.verdict {
        Verdict::Encrypted(_) => 0,
        Verdict::Plaintext => EXIT_FAILED,
        Verdict::Unknown => EXIT_UNKNOWN,
    }))
}

fn render_check(v: &ClusterVerdict) -> String {
    let mut out = String::new();
    for a in &v.apiservers {
        // A name that is an address gets a noun; "the apiserver behind …" has one.
        let noun = if a.name.starts_with("the apiserver") {
            ""
        } else {
            "apiserver "
        };
        let _ = writeln!(out, "{noun}{}: {}", a.name, a.verdict);
        for e in &a.evidence {
            let _ = writeln!(out, "  evidence     {e}");
        }
        for w in &a.warnings {
            let _ = writeln!(out, "  warning      {w}");
        }
        for n in &a.not_checked {
            let _ = writeln!(out, "  not checked  {n}");
        }
    }
    for d in &v.disagreements {
        let _ = writeln!(out, "warning: {d}");
    }
    let _ = writeln!(out, "verdict: {}", v.verdict);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kseal_atrest::verdict::ApiserverVerdict;

    /// Issue 27: "apiserver the apiserver behind …" read twice.
    #[test]
    fn each_apiserver_is_named_once() {
        let named = |name: &str| ApiserverVerdict {
            name: name.into(),
            verdict: Verdict::Plaintext,
            evidence: Vec::new(),
            warnings: Vec::new(),
            not_checked: Vec::new(),
        };
        let v = ClusterVerdict {
            verdict: Verdict::Plaintext,
            apiservers: vec![
                named("10.0.0.1:6443"),
                named("the apiserver behind https://k8s.example:6443"),
            ],
            disagreements: Vec::new(),
        };
        let text = render_check(&v);
        assert!(text.contains("apiserver 10.0.0.1:6443: "), "{text}");
        assert!(
            text.contains("\nthe apiserver behind https://k8s.example:6443: "),
            "{text}"
        );
        assert!(!text.contains("apiserver the apiserver"), "{text}");
    }
}
