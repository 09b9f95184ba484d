//! `kseal scan [PATHS…] [--staged]`: the plaintext guard. Finds Kubernetes Secrets with
//! `data` or `stringData` in YAML and JSON files (several documents, `List`s, rendered Helm
//! output, a Helm chart's template source), kustomize `secretGenerator` entries (literals,
//! files, env files: plaintext kept beside the kustomization; in a `Kustomization`, a
//! `Component` or a `SecretGenerator` generator file), Secrets with values in a
//! kustomization's inline patches, kseal SealedSecrets that `kseal validate` would refuse,
//! and kseal SealedSecrets not sealed to what their file's `.kseal.yaml` rule asks for.
//!
//! It reads what kubectl and kustomize deploy, as they read it
//! ([`kseal_core::manifest::read_deployable`]), enters hidden files and directories (but
//! `.git`), and follows a kustomization to every local file and directory it names
//! (`resources`, `components`, `generators`, `transformers`, patches), whatever their
//! names end in. It fails closed: a file or document it cannot read is named, and the exit
//! is 1, as for a finding. It never uses the network (a remote resource is not followed).
//! Only names and item keys are printed, never a value. Made for CI and for pre-commit
//! (`.pre-commit-hooks.yaml`).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use kseal_core::manifest::{TEMPLATE_ACTION, read_deployable, read_values, sealed_from_value};
use kseal_core::resource::printable;
use serde::Serialize;
use serde_json::Value;

use super::{doc_label, plural};
use crate::cli::{InspectFormat, RecipientArgs, ScanArgs};
use crate::io::{outln, read_file};
use crate::rules::{Matched, Rules};
use kseal_core::checks::{RecipientsCheck, check_recipients};

/// One thing found.
#[derive(Serialize)]
struct Finding {
    file: String,
    /// 1-based, when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    /// `Secret`, `secretGenerator`, `patch` or `SealedSecret`.
    kind: &'static str,
    /// `namespace/name`, or the generator's name.
    object: String,
    problem: String,
    #[serde(skip)]
    label: String,
}

/// A file, or a document of one, that could not be read: the guard cannot vouch for it.
#[derive(Serialize)]
struct Unreadable {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    problem: String,
}

/// Where the files come from: the working tree, or what git has staged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    WorkingTree,
    Staged,
}

fn git(args: &[&str]) -> Result<Vec<u8>> {
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
}

/// The files to scan first: the staged manifests (`--staged`), or the files under the
/// paths (directories searched for `.yaml`, `.yml` and `.json`, hidden ones too).
fn inputs(args: &ScanArgs) -> Result<Vec<PathBuf>> {
    if !args.staged {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        return super::manifest_files(&paths, super::Hidden::AllButGit);
    }
    let names = git(&[
        "diff",
        "--cached",
        "--name-only",
        "--diff-filter=ACMR",
        "-z",
    ])?;
    Ok(names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| PathBuf::from(String::from_utf8_lossy(n).into_owned()))
        .filter(|n| {
            n.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect())
}

/// A file's content: what will be committed (`--staged`: the index), or the working
/// tree's. `None` for a file a kustomization names that git does not have.
fn content(source: Source, path: &Path) -> Result<Option<Vec<u8>>> {
    match source {
        Source::WorkingTree => Ok(Some(read_file(path)?.bytes.to_vec())),
        Source::Staged => {
            let name = path.to_string_lossy();
            let out = Command::new("git")
                .args(["show", &format!(":{name}")])
                .output()
                .context("--staged: running git")?;
            Ok(out.status.success().then_some(out.stdout))
        }
    }
}

/// `path` without `.` and `..` components where they can be resolved by the text alone
/// (`git show` takes no `..`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The kustomization files kustomize looks for in a directory.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Whether `doc`, read from `file`, is a kustomization (or a component).
fn is_kustomization(doc: &Value, file: &Path) -> bool {
    match doc["kind"].as_str() {
        Some("Kustomization" | "Component") => doc["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("kustomize.config.k8s.io/")),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| KUSTOMIZATION_FILES.contains(&n)),
        Some(_) => false,
    }
}

/// The local paths a kustomization names, relative to its directory: what kustomize reads
/// to build it. Remote ones (URLs, `github.com/…`) are left: the guard uses no network.
fn references(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for field in [
        "resources",
        "components",
        "generators",
        "transformers",
        "validators",
        "crds",
        "bases",
    ] {
        for entry in doc[field].as_array().into_iter().flatten() {
            if let Some(path) = entry.as_str() {
                out.push(path.to_owned());
            }
        }
    }
    for patch in doc["patches"].as_array().into_iter().flatten() {
        if let Some(path) = patch["path"].as_str() {
            out.push(path.to_owned());
        }
    }
    for patch in doc["patchesJson6902"].as_array().into_iter().flatten() {
        if let Some(path) = patch["path"].as_str() {
            out.push(path.to_owned());
        }
    }
    for patch in doc["patchesStrategicMerge"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(path) = patch.as_str().filter(|p| !p.contains('\n')) {
            out.push(path.to_owned());
        }
    }
    out.retain(|p| !p.contains("://") && !p.starts_with("github.com/") && !p.starts_with("git@"));
    out
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
                    // A value a Helm template fills from the chart's values is not
                    // kept in this file.
                    let literal = |(_, v): &(&String, &Value)| {
                        v.as_str().is_none_or(|v| !v.contains(TEMPLATE_ACTION))
                    };
                    keys.extend(
                        map.iter()
                            .filter(literal)
                            .map(|(k, _)| format!("{field}.{}", printable(k))),
                    );
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
        Some("Kustomization" | "Component") | None
            if doc.get("secretGenerator").is_some()
                || doc.get("patches").is_some()
                || doc.get("patchesStrategicMerge").is_some()
                || doc.get("patchesJson6902").is_some() =>
        {
            inline_patches(doc, found);
            for generator in doc["secretGenerator"].as_array().into_iter().flatten() {
                let generator_name = generator["name"].as_str().unwrap_or("(no name)");
                generated(generator, printable(generator_name).into_owned(), found);
            }
        }
        // A generator file (`generators:`), kustomize's builtin SecretGenerator.
        Some("SecretGenerator") => generated(doc, name(doc), found),
        Some("SealedSecret") if doc["apiVersion"].as_str() == Some("kseal.dev/v1alpha1") => {
            match sealed_from_value(doc) {
                Ok(sealed) => {
                    // kube-system is the operator's choice (--allow-kube-system), not a
                    // leak: `kseal validate` is where it is flagged.
                    let allowed = kseal_core::checks::Allowed {
                        kube_system: true,
                        ..Default::default()
                    };
                    for problem in kseal_core::checks::problems(&sealed, allowed) {
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

/// A secretGenerator entry (or a SecretGenerator generator file) with literals, files or
/// env files: plaintext kept in the repository.
fn generated(generator: &Value, name: String, found: &mut Vec<(&'static str, String, String)>) {
    let sources: Vec<String> = ["literals", "files", "envs"]
        .iter()
        .filter_map(|f| {
            let n = generator[*f].as_array().map_or(0, Vec::len);
            (n > 0).then(|| plural(n, &f[..f.len() - 1]))
        })
        .collect();
    if !sources.is_empty() {
        found.push((
            "secretGenerator",
            name,
            format!(
                "kustomize generates a Secret from plaintext in the repository ({})",
                sources.join(", ")
            ),
        ));
    }
}

/// Secrets given values in a kustomization's inline patches: a JSON 6902 patch (a list of
/// operations) aimed at a Secret counts when it adds or replaces something under `data` or
/// `stringData`; a strategic-merge patch (in `patches` or `patchesStrategicMerge`) is read
/// as documents and scanned as any.
fn inline_patches(doc: &Value, found: &mut Vec<(&'static str, String, String)>) {
    let mut inline: Vec<(&str, &Value)> = Vec::new();
    for field in ["patches", "patchesJson6902"] {
        for patch in doc[field].as_array().into_iter().flatten() {
            if let Some(text) = patch["patch"].as_str() {
                inline.push((text, &patch["target"]));
            }
        }
    }
    for patch in doc["patchesStrategicMerge"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(text) = patch.as_str().filter(|p| p.contains('\n')) {
            inline.push((text, &Value::Null));
        }
    }
    let unreadable = || {
        (
            "patch",
            "(inline)".to_owned(),
            "an inline patch that cannot be read".to_owned(),
        )
    };
    for (text, target) in inline {
        if let Ok(values) = read_values(text)
            && let [Value::Array(ops)] = &values[..]
        {
            let secret = target["kind"].as_str().is_none_or(|k| k == "Secret");
            let paths: Vec<String> = ops
                .iter()
                .filter(|op| matches!(op["op"].as_str(), Some("add" | "replace")))
                .filter_map(|op| op["path"].as_str())
                .filter(|path| path.starts_with("/data") || path.starts_with("/stringData"))
                .map(|path| printable(path).into_owned())
                .collect();
            if secret && !paths.is_empty() {
                found.push((
                    "patch",
                    target["name"].as_str().unwrap_or("(any Secret)").to_owned(),
                    format!(
                        "an inline JSON patch writes plaintext into a Secret ({})",
                        paths.join(", ")
                    ),
                ));
            }
            continue;
        }
        let Ok(read) = read_deployable(text.as_bytes()) else {
            found.push(unreadable());
            continue;
        };
        if !read.unreadable.is_empty() {
            found.push(unreadable());
        }
        for patch in &read.docs {
            let mut inner = Vec::new();
            scan_document(patch, &mut inner);
            for (kind, object, problem) in inner {
                found.push((kind, object, format!("in an inline patch: {problem}")));
            }
        }
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
    let source = if args.staged {
        Source::Staged
    } else {
        Source::WorkingTree
    };
    let mut queue: VecDeque<PathBuf> = inputs(args)?.into();
    let mut seen: BTreeSet<PathBuf> = queue.iter().map(|p| normalize(p)).collect();
    let mut rules = Rules::offline();
    let mut findings = Vec::new();
    let mut unreadable = Vec::new();
    let mut scanned = 0;
    while let Some(path) = queue.pop_front() {
        let file = path.display().to_string();
        let bytes = match content(source, &path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                unreadable.push(Unreadable {
                    file,
                    document: None,
                    problem: format!("{e:#}"),
                });
                continue;
            }
        };
        scanned += 1;
        let read = match read_deployable(&bytes) {
            Ok(read) => read,
            Err(e) => {
                unreadable.push(Unreadable {
                    file,
                    document: None,
                    problem: e.to_string(),
                });
                continue;
            }
        };
        for (document, e) in read.unreadable {
            unreadable.push(Unreadable {
                file: file.clone(),
                document: Some(document),
                problem: e.to_string(),
            });
        }
        let docs = read.docs;
        let rule = rules.for_file(&path)?;
        for (i, doc) in docs.iter().enumerate() {
            if let super::DocumentKind::Bitnami = super::document_kind(doc) {
                // Not plaintext: said, not a finding.
                let label = doc_label(&file, i, docs.len());
                eprintln!("notice: {label}: {}", super::BITNAMI_NOTICE);
            }
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
                    label: doc_label(&file, i, docs.len()),
                });
            }
            if is_kustomization(doc, &path) {
                let dir = path.parent().unwrap_or(Path::new(""));
                for reference in references(doc) {
                    let named = normalize(&dir.join(&reference));
                    for next in follow(source, &named) {
                        if seen.insert(normalize(&next)) {
                            queue.push_back(next);
                        }
                    }
                }
            }
        }
    }
    match args.output {
        InspectFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "scanned": scanned,
                "unreadable": unreadable,
                "findings": findings,
            }))?
        )?,
        InspectFormat::Text => {
            for f in &findings {
                eprintln!("{}: {} {}: {}", f.label, f.kind, f.object, f.problem);
            }
            for u in &unreadable {
                let document = u
                    .document
                    .map(|d| format!(": document {d}"))
                    .unwrap_or_default();
                eprintln!(
                    "{}{document}: cannot read, so cannot vouch for it: {}",
                    u.file, u.problem
                );
            }
            if findings.is_empty() && unreadable.is_empty() {
                outln!("scanned {}: no plaintext Secret", plural(scanned, "file"))?;
            }
        }
    }
    if !findings.is_empty() || !unreadable.is_empty() {
        let mut what = Vec::new();
        if !findings.is_empty() {
            what.push(plural(findings.len(), "finding"));
        }
        if !unreadable.is_empty() {
            what.push(format!(
                "{} not read",
                plural(unreadable.len(), "file or document")
            ));
        }
        bail!(
            "{} in {} scanned",
            what.join(" and "),
            plural(scanned, "file")
        );
    }
    Ok(())
}

/// What a kustomization's reference leads to: a file, whatever its name ends in; a
/// directory's kustomization file; nothing for what does not exist (kustomize would fail
/// on it, deploying nothing).
fn follow(source: Source, named: &Path) -> Vec<PathBuf> {
    let exists = |p: &Path| match source {
        Source::WorkingTree => p.is_file(),
        Source::Staged => content(source, p).ok().flatten().is_some(),
    };
    let is_dir = match source {
        Source::WorkingTree => named.is_dir(),
        Source::Staged => !exists(named),
    };
    if !is_dir {
        return if exists(named) {
            vec![named.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| named.join(f))
        .filter(|p| exists(p))
        .take(1)
        .collect()
}
