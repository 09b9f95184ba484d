//! One module per subcommand. Each takes its parsed arguments and does its I/O through
//! `crate::io`, so tests drive them through the real binary.

pub mod atrest;
pub mod audit;
pub mod inspect;
pub mod keygen;
pub mod merge;
pub mod migrate;
pub mod plan;
pub mod recipients;
pub mod reseal;
pub mod scan;
pub mod seal;
pub mod status;
pub mod unseal;
pub mod validate;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::OutputFormat;

/// The output format: the flag, else what `-w`'s extension says, else YAML.
pub fn output_format(flag: Option<OutputFormat>, dest: Option<&Path>) -> OutputFormat {
    flag.unwrap_or_else(
        || match dest.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some("json") => OutputFormat::Json,
            _ => OutputFormat::Yaml,
        },
    )
}

/// How error messages name a document: the input's name, and "document N" when the
/// input held several.
pub fn doc_label(input: &str, index: usize, total: usize) -> String {
    if total > 1 {
        format!("{input}: document {}", index + 1)
    } else {
        input.to_owned()
    }
}

/// A document's 1-based number, for JSON reports: only when its input held several.
pub fn doc_number(index: usize, total: usize) -> Option<usize> {
    (total > 1).then_some(index + 1)
}

/// The `-o json` report of a command that checks objects one by one (validate, verify,
/// reseal): how many, how many failed, and each one.
pub fn print_report<T: serde::Serialize>(objects: &[T], failed: usize) -> Result<()> {
    crate::io::outln!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "checked": objects.len(),
            "failed": failed,
            "objects": objects,
        }))?
    )
}

/// "1 item", "2 items".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The files under `paths` ([`manifest_files`], hidden entries skipped), and whether each
/// was named on the command line (`-` is standard input, named).
pub fn named_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            out.push((path.clone(), true));
            continue;
        }
        let is_dir = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read", path.display()))?
            .is_dir();
        for file in manifest_files(std::slice::from_ref(path), Hidden::Skip)? {
            out.push((file, !is_dir));
        }
    }
    Ok(out)
}

/// What a document is, to the commands that work on kseal SealedSecrets.
pub enum DocumentKind {
    /// `kseal.dev/v1alpha1` `SealedSecret`.
    Kseal,
    /// `bitnami.com/v1alpha1` `SealedSecret`: for `kseal migrate`.
    Bitnami,
    /// Anything else (a ConfigMap, a kustomization, a Flux Kustomization): not ours.
    Other,
}

/// Which of [`DocumentKind`] `doc` is. A `SealedSecret` of another API version counts as
/// kseal's, so that its checks say what is wrong with it.
pub fn document_kind(doc: &serde_json::Value) -> DocumentKind {
    match (doc["kind"].as_str(), doc["apiVersion"].as_str()) {
        (Some("SealedSecret"), Some(v)) if v.starts_with("bitnami.com/") => DocumentKind::Bitnami,
        (Some("SealedSecret"), _) => DocumentKind::Kseal,
        _ => DocumentKind::Other,
    }
}

/// Whether `docs` hold a SealedSecret (kseal's or Bitnami's): a file named on the command
/// line with none is an error for the commands that check SealedSecrets.
pub fn holds_sealed_secrets(docs: &[serde_json::Value]) -> bool {
    docs.iter()
        .any(|d| !matches!(document_kind(d), DocumentKind::Other))
}

/// Whether the commands that check kseal SealedSecrets work on `doc` (the document
/// `label`): a Bitnami one is passed over with a notice to migrate it, anything else
/// silently.
pub fn is_kseal_sealed_secret(doc: &serde_json::Value, label: &str) -> bool {
    match document_kind(doc) {
        DocumentKind::Kseal => true,
        DocumentKind::Bitnami => {
            eprintln!("notice: {label}: {BITNAMI_NOTICE}");
            false
        }
        DocumentKind::Other => false,
    }
}

/// What the file commands say when they meet a Bitnami SealedSecret.
pub const BITNAMI_NOTICE: &str =
    "a Bitnami SealedSecret (bitnami.com/v1alpha1): convert it with `kseal migrate`";

/// Which entries whose names start with a dot a directory search enters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// None: the commands that work on SealedSecrets a user keeps.
    Skip,
    /// All but `.git`: the plaintext guard, since kubectl and kustomize deploy hidden
    /// files as readily as any.
    AllButGit,
}

/// The files under `paths`: files as given, directories searched (sorted) for
/// `.yaml`, `.yml` and `.json` files, entering hidden entries as `hidden` says.
pub fn manifest_files(paths: &[PathBuf], hidden: Hidden) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if meta.is_dir() {
            walk(path, hidden, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, hidden: Hidden, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("{}: cannot read", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && (hidden == Hidden::Skip || name == ".git") {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if kind.is_dir() {
            walk(&path, hidden, out)?;
        } else if kind.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}
