//! `kseal migrate`: Bitnami sealed-secrets files → kseal SealedSecrets, in place.
//!
//! Every Bitnami `SealedSecret` document (`bitnami.com/v1alpha1`) in the given files and
//! directories is opened with the Bitnami private keys (`--bitnami-key`), or by the
//! cluster's kseal controller that imported them (`--via-controller`), and sealed again to
//! the recipients named (or the cluster's newest key): same name, namespace, scope, item
//! keys and template. Other documents are kept. All files are converted in memory first;
//! unless `--keep-going`, one failure anywhere writes nothing. Each file is then replaced
//! atomically. Plaintext exists only in wiped buffers, one SealedSecret at a time.
//!
//! `--hand-over` converts nothing: it adds [`bitnami::HAND_OVER`] to each Bitnami
//! SealedSecret's template (and names what it added in [`bitnami::HAND_OVER_ANNOTATION`]),
//! so that once applied the Bitnami controller leaves each Secret ownerless and marked
//! for take-over; the conversion later removes exactly those again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::bitnami::{self, BitnamiKeys};
use kseal_core::manifest::{Format, parse_documents};
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::{RequestOperation, SealedSecret};

use super::{doc_label, plural};
use crate::ask::{Answer, Asker};
use crate::cli::{InspectFormat, MigrateArgs, OutputFormat};
use crate::cluster::Cluster;
use crate::io::{outln, read_file, render, replace_file};

/// Who opens the Bitnami values (none for a hand-over).
enum Opener {
    HandOver,
    Keys(BitnamiKeys, RecipientSet),
    /// `--via-controller`: SealedSecretRequests, answered with the Bitnami keys the
    /// controller imported.
    Controller(Asker),
}

/// One file, converted in memory.
struct Converted {
    path: PathBuf,
    text: Vec<u8>,
    migrated: usize,
}

pub fn run(args: &MigrateArgs) -> Result<()> {
    let opener = opener(args)?;
    let hand_over = matches!(opener, Opener::HandOver);
    let done = if hand_over { "handed over" } else { "migrated" };
    let files = super::manifest_files(&args.paths, super::Hidden::Skip)?;
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} reading {pos}/{len} files [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut converted = Vec::new();
    let mut failures = Vec::new();
    for path in &files {
        match convert(path, &opener) {
            Ok(Some(c)) => converted.push(c),
            Ok(None) => {}
            Err(errors) => failures.extend(errors),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let migrated: usize = converted.iter().map(|c| c.migrated).sum();
    let json = args.output == InspectFormat::Json;
    if !json {
        for failure in &failures {
            eprintln!("error: {failure}");
        }
    }
    let write = !args.dry_run && (failures.is_empty() || args.keep_going);
    if write {
        for c in &converted {
            replace_file(&c.path, &c.text)?;
        }
    }
    if json {
        let files: Vec<serde_json::Value> = converted
            .iter()
            .map(|c| serde_json::json!({"file": c.path.display().to_string(), "migrated": c.migrated}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "mode": if hand_over { "hand-over" } else { "migrate" },
                "written": write,
                "migrated": migrated,
                "files": files,
                "failures": failures,
            }))?
        )?;
    } else {
        let verb = match (hand_over, write) {
            (false, true) => "migrated",
            (false, false) => "would migrate",
            (true, true) => "handed over",
            (true, false) => "would hand over",
        };
        // Each file, so that what to commit (or what a dry run would change) is in view.
        for c in &converted {
            eprintln!(
                "{verb} {}: {}",
                c.path.display(),
                plural(c.migrated, "SealedSecret")
            );
        }
        eprintln!(
            "{verb} {} in {}{}",
            plural(migrated, "SealedSecret"),
            plural(converted.len(), "file"),
            if failures.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} could not be {done}",
                    plural(failures.len(), "SealedSecret")
                )
            }
        );
        if hand_over && write && migrated > 0 {
            eprintln!(
                "next: commit, let the Bitnami controller apply it (each Secret loses its owner reference), then convert with `kseal migrate` and commit"
            );
        }
    }
    if !failures.is_empty() {
        if !write && !args.dry_run {
            bail!("nothing was written (pass --keep-going to write the files that converted)");
        }
        bail!(
            "{} could not be {done}",
            plural(failures.len(), "SealedSecret")
        );
    }
    Ok(())
}

fn opener(args: &MigrateArgs) -> Result<Opener> {
    if args.hand_over {
        return Ok(Opener::HandOver);
    }
    if args.via_controller {
        let cluster = Cluster::connect(&args.recipients.cluster)?.ok_or_else(|| {
            anyhow!("--via-controller needs a kubeconfig (--kubeconfig, $KUBECONFIG)")
        })?;
        let timeout = Duration::from_secs(args.timeout);
        return Ok(Opener::Controller(Asker::api(
            cluster,
            args.namespace.clone(),
            timeout,
        )));
    }
    if args.bitnami_keys.is_empty() {
        bail!(
            "no Bitnami keys: pass --bitnami-key FILE (PEM, or `kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`), or --via-controller"
        );
    }
    let mut keys = BitnamiKeys::default();
    for path in &args.bitnami_keys {
        let input = read_file(path)?;
        keys.add(&input.bytes)
            .with_context(|| format!("--bitnami-key {}", input.name))?;
    }
    let recipients = args.recipients.resolve()?.set;
    Ok(Opener::Keys(keys, recipients))
}

fn is_bitnami(doc: &serde_json::Value) -> bool {
    doc["apiVersion"].as_str() == Some(bitnami::API_VERSION)
        && doc["kind"].as_str() == Some("SealedSecret")
}

/// Converts one file in memory: `Ok(None)` when it holds no Bitnami SealedSecret,
/// `Err` with one line per document that could not be converted.
fn convert(path: &Path, opener: &Opener) -> std::result::Result<Option<Converted>, Vec<String>> {
    let one = |e: anyhow::Error| vec![format!("{e:#}")];
    let input = read_file(path).map_err(one)?;
    let (format, docs) = parse_documents(&input.bytes)
        .with_context(|| input.name.clone())
        .map_err(one)?;
    if !docs.iter().any(is_bitnami) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(docs.len());
    let mut errors = Vec::new();
    let mut migrated = 0;
    for (i, doc) in docs.iter().enumerate() {
        if !is_bitnami(doc) {
            out.push(doc.clone());
            continue;
        }
        let label = doc_label(&input.name, i, docs.len());
        let converted = match opener {
            Opener::HandOver => hand_over(doc),
            _ => {
                migrate_one(doc, opener).and_then(|sealed| Ok(Some(serde_json::to_value(&sealed)?)))
            }
        };
        match converted {
            Ok(Some(changed)) => {
                migrated += 1;
                out.push(changed);
            }
            Ok(None) => out.push(doc.clone()),
            Err(e) => errors.push(format!("{label}: {}: {e:#}", who(doc))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if migrated == 0 {
        // Every one handed over already: the file stays as it is.
        return Ok(None);
    }
    let format = match format {
        Format::Yaml => OutputFormat::Yaml,
        Format::Json => OutputFormat::Json,
    };
    let text = render(&out, format).map_err(one)?;
    Ok(Some(Converted {
        path: path.to_owned(),
        text: text.as_bytes().to_vec(),
        migrated,
    }))
}

fn who(doc: &serde_json::Value) -> String {
    let name = doc["metadata"]["name"].as_str().unwrap_or("(no name)");
    let location = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    };
    kseal_core::resource::printable(&location).into_owned()
}

/// `doc` with [`bitnami::HAND_OVER`] set to `"true"` in its template and the ones that
/// were not named on the SealedSecret ([`bitnami::HAND_OVER_ANNOTATION`]); `None` when
/// it has them all already. Every other field stays as written.
fn hand_over(doc: &serde_json::Value) -> Result<Option<serde_json::Value>> {
    let mut doc = doc.clone();
    let annotations = object_at(&mut doc, &["spec", "template", "metadata", "annotations"])?;
    let added: Vec<&str> = bitnami::HAND_OVER
        .iter()
        .copied()
        .filter(|k| annotations.get(*k).and_then(|v| v.as_str()) != Some("true"))
        .collect();
    if added.is_empty() {
        return Ok(None);
    }
    for key in &added {
        annotations.insert((*key).into(), "true".into());
    }
    let outer = object_at(&mut doc, &["metadata", "annotations"])?;
    let mut named: Vec<String> = outer
        .get(bitnami::HAND_OVER_ANNOTATION)
        .and_then(|v| v.as_str())
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    named.extend(added.iter().map(|k| (*k).to_owned()));
    named.sort();
    named.dedup();
    outer.insert(bitnami::HAND_OVER_ANNOTATION.into(), named.join(",").into());
    Ok(Some(doc))
}

/// The object at `path` in `doc`, created (with the objects above it) when absent.
fn object_at<'a>(
    doc: &'a mut serde_json::Value,
    path: &[&str],
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>> {
    let mut at = doc;
    for (depth, key) in path.iter().enumerate() {
        let here = at
            .as_object_mut()
            .ok_or_else(|| anyhow!("{} is not an object", path[..depth].join(".")))?;
        at = here
            .entry(*key)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if at.is_null() {
            *at = serde_json::Value::Object(Default::default());
        }
    }
    at.as_object_mut()
        .ok_or_else(|| anyhow!("{} is not an object", path.join(".")))
}

fn migrate_one(doc: &serde_json::Value, opener: &Opener) -> Result<SealedSecret> {
    let ss: bitnami::SealedSecret = serde_path_to_error::deserialize(doc)
        .map_err(|e| anyhow!("{}: {}", e.path(), e.inner()))?;
    match opener {
        Opener::HandOver => bail!("a hand-over converts nothing"),
        Opener::Keys(keys, recipients) => Ok(bitnami::migrate(&ss, keys, recipients)?),
        Opener::Controller(asker) => {
            if ss.spec.data.is_some() {
                bail!("the deprecated v1 format (spec.data) is only migrated with --bitnami-key");
            }
            bitnami::label_of(&ss)?;
            let (template, skip_owner) = bitnami::template_of(&ss)?;
            let mut shell = bitnami::shell(&ss, template, skip_owner)?;
            shell.spec.encrypted_data = ss.spec.encrypted_data.clone();
            match asker.ask_blocking(RequestOperation::Migrate, &shell)? {
                Ok(Answer::Resealed(migrated)) => Ok(*migrated),
                Ok(Answer::Verified { .. }) => {
                    bail!("the controller answered a migration with a verification")
                }
                Err(refusal) => bail!(
                    "the controller refused: {} ({})",
                    refusal.reason.as_deref().unwrap_or("refused"),
                    refusal.message
                ),
            }
        }
    }
}
