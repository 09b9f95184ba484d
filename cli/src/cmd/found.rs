//! Finding SealedSecrets in files: the files under the paths a command names, what each
//! document is, and each kseal SealedSecret with its place (for messages and reports)
//! and the object, or why it does not parse. `verify`, `validate` and the planner of
//! `reseal` and `audit` read their objects through [`sealed_secrets`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kseal_core::manifest::{InputError, sealed_from_value};
use kseal_core::resource::SealedSecret;
use serde_json::Value;

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

/// A kseal SealedSecret found among an input's documents.
pub struct Found {
    /// Its index among the documents.
    pub index: usize,
    /// How messages name it: the input, and "document N" when it held several.
    pub label: String,
    /// Its 1-based number for JSON reports: only when the input held several.
    pub document: Option<usize>,
    /// The object, or why it is not a valid kseal SealedSecret.
    pub sealed: Result<SealedSecret, InputError>,
}

/// The kseal SealedSecrets (by [`document_kind`]) among `docs`, read from the input
/// `name`, in order. With `notice`, each Bitnami one is passed over with a notice to
/// migrate it, printed as the iteration reaches it; other documents silently.
pub fn sealed_secrets<'a>(
    name: &'a str,
    docs: &'a [Value],
    notice: bool,
) -> impl Iterator<Item = Found> + 'a {
    docs.iter().enumerate().filter_map(move |(index, doc)| {
        let label = doc_label(name, index, docs.len());
        let kseal = if notice {
            is_kseal_sealed_secret(doc, &label)
        } else {
            matches!(document_kind(doc), DocumentKind::Kseal)
        };
        kseal.then(|| Found {
            index,
            document: doc_number(index, docs.len()),
            sealed: sealed_from_value(doc),
            label,
        })
    })
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
