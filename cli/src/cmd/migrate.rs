//! `kseal migrate`: Bitnami sealed-secrets files → kseal SealedSecrets, in place.
//!
//! Every Bitnami `SealedSecret` document (`bitnami.com/v1alpha1`) in the given files and
//! directories is opened with the Bitnami private keys (`--bitnami-key`), or by the
//! cluster's kseal controller that imported them (`--via-controller`), and sealed again to
//! the recipients named (or the cluster's newest key): same name, namespace, scope, item
//! keys and template. Other documents are kept. All files are converted in memory first;
//! unless `--keep-going`, one failure anywhere writes nothing. Each file is then replaced
//! atomically. Plaintext exists only in wiped buffers, one SealedSecret at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::bitnami::{self, BitnamiKeys};
use kseal_core::manifest::{Format, parse_documents};
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::{
    RequestOperation, RequestTarget, SealedSecret, SealedSecretRequestSpec,
};

use super::{doc_label, plural};
use crate::cli::{InspectFormat, MigrateArgs, OutputFormat};
use crate::cluster::Cluster;
use crate::io::{outln, read_file, render, replace_file};

/// Who opens the Bitnami values.
enum Opener {
    Keys(BitnamiKeys, RecipientSet),
    Controller {
        cluster: Box<Cluster>,
        namespace: String,
        timeout: Duration,
    },
}

/// One file, converted in memory.
struct Converted {
    path: PathBuf,
    text: Vec<u8>,
    migrated: usize,
}

pub fn run(args: &MigrateArgs) -> Result<()> {
    let opener = opener(args)?;
    let files = super::manifest_files(&args.paths, super::Hidden::Skip)?;
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} migrating {pos}/{len} files [{elapsed_precise}]",
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
                "written": write,
                "migrated": migrated,
                "files": files,
                "failures": failures,
            }))?
        )?;
    } else {
        let verb = if write { "migrated" } else { "would migrate" };
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
                    "; {} could not be migrated",
                    plural(failures.len(), "SealedSecret")
                )
            }
        );
    }
    if !failures.is_empty() {
        if !write && !args.dry_run {
            bail!("nothing was written (pass --keep-going to write the files that converted)");
        }
        bail!(
            "{} could not be migrated",
            plural(failures.len(), "SealedSecret")
        );
    }
    Ok(())
}

fn opener(args: &MigrateArgs) -> Result<Opener> {
    if args.via_controller {
        let cluster = Cluster::connect(&args.recipients.cluster)?.ok_or_else(|| {
            anyhow!("--via-controller needs a kubeconfig (--kubeconfig, $KUBECONFIG)")
        })?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace.clone());
        return Ok(Opener::Controller {
            cluster: Box::new(cluster),
            namespace,
            timeout: Duration::from_secs(args.timeout),
        });
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
        match migrate_one(doc, opener) {
            Ok(sealed) => {
                migrated += 1;
                out.push(serde_json::to_value(&sealed).map_err(|e| one(e.into()))?);
            }
            Err(e) => errors.push(format!("{label}: {}: {e:#}", who(doc))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
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

fn migrate_one(doc: &serde_json::Value, opener: &Opener) -> Result<SealedSecret> {
    let ss: bitnami::SealedSecret = serde_path_to_error::deserialize(doc)
        .map_err(|e| anyhow!("{}: {}", e.path(), e.inner()))?;
    match opener {
        Opener::Keys(keys, recipients) => Ok(bitnami::migrate(&ss, keys, recipients)?),
        Opener::Controller {
            cluster,
            namespace,
            timeout,
        } => {
            if ss.spec.data.is_some() {
                bail!("the deprecated v1 format (spec.data) is only migrated with --bitnami-key");
            }
            bitnami::label_of(&ss)?;
            let (template, skip_owner) = bitnami::template_of(&ss)?;
            let mut shell = bitnami::shell(&ss, template, skip_owner)?;
            shell.spec.encrypted_data = ss.spec.encrypted_data.clone();
            let target = RequestTarget {
                namespace: ss
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone()),
                name: ss.metadata.name.clone().unwrap_or_default(),
            };
            // The controller answers a migration only in the target's own namespace: who
            // may create requests there may move its values.
            let asked_in = target.namespace.clone();
            let spec = SealedSecretRequestSpec {
                operation: RequestOperation::Migrate,
                target,
                sealed_secret: shell.spec.clone(),
            };
            let status = cluster.ask(&asked_in, spec, *timeout)?;
            match (status.phase.as_deref(), status.resealed) {
                (Some("Succeeded"), Some(spec)) => {
                    shell.spec = spec;
                    Ok(shell)
                }
                _ => bail!(
                    "the controller refused: {} ({})",
                    status.reason.as_deref().unwrap_or("refused"),
                    status.message.as_deref().unwrap_or_default()
                ),
            }
        }
    }
}
