//! `kseal scan [PATHS…] [--staged]`: the plaintext guard. Finds Kubernetes Secrets with
//! `data` or `stringData` in YAML and JSON files (several documents, `List`s, rendered Helm
//! output), kustomize `secretGenerator` entries (literals, files, env files: plaintext kept
//! beside the kustomization), kseal SealedSecrets that `kseal validate` would refuse, and
//! kseal SealedSecrets not sealed to what their file's `.kseal.yaml` rule asks for.
//! Only names and item keys are printed, never a value. Made for CI and for pre-commit
//! (`.pre-commit-hooks.yaml`): exit 1 when anything is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::resource::printable;
use serde::Serialize;
use serde_json::Value;

use super::{doc_label, plural};
use crate::cli::{InspectFormat, RecipientArgs, ScanArgs};
use crate::io::{outln, read_file};
use crate::rules::{Matched, Rules};
use kseal_core::audit::{RecipientsCheck, check_recipients};

/// One thing found.
#[derive(Serialize)]
struct Finding {
    file: String,
    /// 1-based, when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    /// `Secret`, `secretGenerator` or `SealedSecret`.
    kind: &'static str,
    /// `namespace/name`, or the generator's name.
    object: String,
    problem: String,
    #[serde(skip)]
    label: String,
}

/// The files to scan and their contents: the staged versions (`--staged`), or the files
/// under the paths (directories searched for `.yaml`, `.yml` and `.json`).
fn inputs(args: &ScanArgs) -> Result<Vec<(String, Vec<u8>)>> {
    if !args.staged {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        return super::manifest_files(&paths)?
            .iter()
            .map(|p| Ok((p.display().to_string(), read_file(p)?.bytes.to_vec())))
            .collect();
    }
    let git = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new("git")
            .args(args)
            .output()
            .context("--staged: running git")?;
        if !out.status.success() {
            bail!(
                "--staged: git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    };
    let names = git(&[
        "diff",
        "--cached",
        "--name-only",
        "--diff-filter=ACMR",
        "-z",
    ])?;
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let manifest = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
        if manifest {
            // What will be committed, not what the working tree holds.
            out.push((name.clone(), git(&["show", &format!(":{name}")])?));
        }
    }
    Ok(out)
}

/// Every finding in one document (a `List`'s items each count).
fn scan_document(doc: &Value, found: &mut Vec<(&'static str, String, String)>) {
    let name = |v: &Value| {
        let meta = &v["metadata"];
        match (meta["namespace"].as_str(), meta["name"].as_str()) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.to_owned(),
            _ => "(no name)".to_owned(),
        }
    };
    match doc["kind"].as_str() {
        Some("List") => {
            for item in doc["items"].as_array().into_iter().flatten() {
                scan_document(item, found);
            }
        }
        Some("Secret") => {
            let mut keys: Vec<String> = Vec::new();
            for field in ["data", "stringData"] {
                if let Some(map) = doc[field].as_object() {
                    keys.extend(map.keys().map(|k| format!("{field}.{}", printable(k))));
                }
            }
            if !keys.is_empty() {
                found.push((
                    "Secret",
                    name(doc),
                    format!(
                        "a plaintext Secret ({}: {}); seal it with kseal seal and commit the SealedSecret instead",
                        plural(keys.len(), "item"),
                        keys.join(", ")
                    ),
                ));
            }
        }
        Some("Kustomization") | None if doc.get("secretGenerator").is_some() => {
            for generator in doc["secretGenerator"].as_array().into_iter().flatten() {
                let sources: Vec<String> = ["literals", "files", "envs"]
                    .iter()
                    .filter_map(|f| {
                        let n = generator[*f].as_array().map_or(0, Vec::len);
                        (n > 0).then(|| format!("{n} {f}"))
                    })
                    .collect();
                if !sources.is_empty() {
                    let generator_name = generator["name"].as_str().unwrap_or("(no name)");
                    found.push((
                        "secretGenerator",
                        printable(generator_name).into_owned(),
                        format!(
                            "kustomize generates a Secret from plaintext in the repository ({})",
                            sources.join(", ")
                        ),
                    ));
                }
            }
        }
        Some("SealedSecret") if doc["apiVersion"].as_str() == Some("kseal.dev/v1alpha1") => {
            match sealed_from_value(doc) {
                Ok(sealed) => {
                    for problem in kseal_core::audit::problems(&sealed, false) {
                        found.push((
                            "SealedSecret",
                            sealed.location(),
                            printable(&problem).into_owned(),
                        ));
                    }
                }
                Err(e) => found.push(("SealedSecret", name(doc), e.to_string())),
            }
        }
        _ => {}
    }
}

/// A kseal SealedSecret whose recorded recipients are not what its file's `.kseal.yaml`
/// rule asks for (read offline: a rule's context counts as one recipient, unchecked).
fn check_rule(
    rules: &mut Rules,
    rule: &Matched,
    doc: &Value,
    found: &mut Vec<(&'static str, String, String)>,
) {
    if doc["apiVersion"].as_str() != Some("kseal.dev/v1alpha1")
        || doc["kind"].as_str() != Some("SealedSecret")
    {
        return;
    }
    let Ok(sealed) = sealed_from_value(doc) else {
        return;
    };
    let problem = match rules.wanted(rule, &RecipientArgs::default(), false) {
        Ok(wanted) => match check_recipients(&sealed.spec.recipients, &wanted.expected()) {
            RecipientsCheck::Fail(why) => format!("does not match {rule}: {why}"),
            _ => return,
        },
        Err(e) => format!("{e:#}"),
    };
    found.push((
        "SealedSecret",
        sealed.location(),
        printable(&problem).into_owned(),
    ));
}

pub fn run(args: &ScanArgs) -> Result<()> {
    let inputs = inputs(args)?;
    let mut rules = Rules::default();
    let mut findings = Vec::new();
    let mut unreadable = 0;
    for (file, bytes) in &inputs {
        let docs = match parse_documents(bytes) {
            Ok((_, docs)) => docs,
            Err(e) => {
                // Not every YAML file is a manifest (Helm templates, CI configs): said, not
                // failed. The message names a position, never the content.
                eprintln!("note: {file}: not scanned: {e}");
                unreadable += 1;
                continue;
            }
        };
        let rule = rules.for_file(Path::new(file))?;
        for (i, doc) in docs.iter().enumerate() {
            let mut found = Vec::new();
            scan_document(doc, &mut found);
            if let (Some(rule), true) = (&rule, found.is_empty()) {
                check_rule(&mut rules, rule, doc, &mut found);
            }
            for (kind, object, problem) in found {
                findings.push(Finding {
                    file: file.clone(),
                    document: super::doc_number(i, docs.len()),
                    kind,
                    object,
                    problem,
                    label: doc_label(file, i, docs.len()),
                });
            }
        }
    }
    match args.output {
        InspectFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "scanned": inputs.len() - unreadable,
                "notScanned": unreadable,
                "findings": findings,
            }))?
        )?,
        InspectFormat::Text => {
            for f in &findings {
                eprintln!("{}: {} {}: {}", f.label, f.kind, f.object, f.problem);
            }
            if findings.is_empty() {
                outln!(
                    "scanned {}: no plaintext Secret",
                    plural(inputs.len() - unreadable, "file")
                )?;
            }
        }
    }
    if !findings.is_empty() {
        bail!(
            "{} in {} scanned",
            plural(findings.len(), "finding"),
            plural(inputs.len() - unreadable, "file")
        );
    }
    Ok(())
}
