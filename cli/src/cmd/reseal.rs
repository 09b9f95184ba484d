//! `kseal reseal PATH…`: every SealedSecret under the paths that is not sealed to exactly
//! its current recipients is re-encrypted, in place, and nothing else is touched.
//!
//! The current recipients of a file are its `.kseal.yaml` rule's (its named recipients
//! and its cluster's newest key), or the flags' when any are given, or else the
//! kubeconfig cluster's newest key beside whatever else the object is sealed to.
//!
//! Two ways to re-encrypt:
//! - through the cluster's controller (the default): it opens the items with the key it
//!   still holds and wraps them for its newest, keeping every other recipient's stanza.
//!   It never adds or drops anyone else's: re-encrypting to a recipient named in the
//!   request would hand the value to whoever can create a request.
//! - offline with `-i`, like `sops updatekeys`: the items are opened with the user's key
//!   and sealed again to exactly the rule's recipients, so recipients added to or removed
//!   from a rule are taken up too.
//!
//! What is up to date is read from each object's recorded recipients (no key needed), so
//! a run that is interrupted and started again skips what it finished: each file is
//! replaced atomically as soon as its objects are done, and an object is resealed only
//! while its recorded recipients differ. Objects that are up to date keep their bytes,
//! and so do files with nothing to do.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use kseal_core::keys::{Keyring, parse_identities};
use kseal_core::manifest::Format;
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::{RequestOperation, SealedSecret};
use kseal_core::scope::Binding;
use serde::Serialize;
use zeroize::Zeroizing;

use super::{doc_number, plural};
use crate::ask::{Answer, Asker};
use crate::cli::{InspectFormat, OutputFormat, ResealArgs};
use crate::cluster::Cluster;
use crate::io::{outln, read_file, render, replace_file};

use super::plan::{Action, FileJob, Object, Planner};

/// One object that was (or would be, or could not be) resealed, for the log and `-o json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    object: String,
    /// `resealed`, `wouldReseal` or `failed`.
    action: &'static str,
    /// `controller` (of the kubeconfig's current context), `controller of context X`,
    /// or `identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    from: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    label: String,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    files: usize,
    files_written: usize,
    objects: usize,
    resealed: usize,
    up_to_date: usize,
    failed: usize,
    /// Files in the directories that hold no kseal SealedSecret, or are no YAML/JSON
    /// manifest at all (Helm templates), left alone.
    skipped_files: usize,
    dry_run: bool,
    seconds: f64,
}

pub fn run(args: &ResealArgs) -> Result<()> {
    let started = Instant::now();
    let mut keyring = Keyring::default();
    if !args.identities.is_empty() {
        rlimit::setrlimit(rlimit::Resource::CORE, 0, 0)
            .context("disabling core dumps before reading keys")?;
        for path in &args.identities {
            let file = read_file(path).context("--identity")?;
            keyring.extend(
                parse_identities(&file.bytes)
                    .with_context(|| format!("--identity {}", file.name))?,
            );
        }
    }
    let mut plan = Planner::new(&args.recipients, !args.identities.is_empty(), true);
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let mut entries = Vec::new();
    let mut jobs = Vec::new();
    for (path, explicit) in super::named_files(&args.paths)? {
        match plan.file(&path, explicit)? {
            Some(job) => jobs.push(job),
            None if explicit => bail!("{}: holds no kseal SealedSecret", path.display()),
            None => summary.skipped_files += 1,
        }
    }
    summary.files = jobs.len();
    summary.objects = jobs.iter().map(|j| j.objects.len()).sum();
    summary.up_to_date = jobs
        .iter()
        .flat_map(|j| &j.objects)
        .filter(|o| matches!(o.action, Action::UpToDate))
        .count();
    let todo: Vec<FileJob> = jobs
        .into_iter()
        .filter(|j| {
            j.objects
                .iter()
                .any(|o| !matches!(o.action, Action::UpToDate))
        })
        .collect();

    let json = args.output == InspectFormat::Json;
    let bar = progress(todo.len() as u64, json);
    let log = |entry: &Entry| {
        if json {
            return;
        }
        let line = describe(entry);
        if entry.action == "failed" {
            bar.suspend(|| eprintln!("{line}"));
        } else {
            bar.println(&line);
            if bar.is_hidden() {
                eprintln!("{line}");
            }
        }
    };

    // Grouped by the controller they need: each cluster's requests run on its own
    // connection, several files at once.
    let mut by_controller: Vec<(Option<Option<String>>, Vec<FileJob>)> = Vec::new();
    for job in todo {
        let key = job
            .objects
            .iter()
            .any(|o| matches!(o.action, Action::Controller))
            .then(|| job.target.as_ref().and_then(|t| t.controller.clone()))
            .flatten();
        match by_controller.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(job),
            None => by_controller.push((key, vec![job])),
        }
    }
    for (controller, group) in by_controller {
        let outcomes = match controller {
            None => group
                .into_iter()
                .map(|job| {
                    let out = offline(job, &keyring, args, &log);
                    bar.inc(1);
                    out
                })
                .collect::<Vec<_>>(),
            Some(context) => {
                let resealer = Resealer::new(args, context)?;
                resealer.run(group, args, &bar, &log)
            }
        };
        for (written, mut done) in outcomes {
            summary.up_to_date += done.iter().filter(|e| e.action == "upToDate").count();
            done.retain(|e| e.action != "upToDate");
            summary.files_written += usize::from(written);
            summary.resealed += done.iter().filter(|e| e.action == "resealed").count();
            summary.failed += done.iter().filter(|e| e.action == "failed").count();
            entries.append(&mut done);
        }
    }
    bar.finish_and_clear();
    summary.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    entries.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    let would = entries.iter().filter(|e| e.action == "wouldReseal").count();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "summary": summary,
                "objects": entries,
            }))?
        )?;
    } else {
        let done = if args.dry_run {
            format!("would reseal {}", plural(would, "SealedSecret"))
        } else {
            format!(
                "resealed {} in {}",
                plural(summary.resealed, "SealedSecret"),
                plural(summary.files_written, "file")
            )
        };
        eprintln!(
            "{done}; {} up to date; {} failed ({} in {}{}, {:.1} s)",
            summary.up_to_date,
            summary.failed,
            plural(summary.objects, "SealedSecret"),
            plural(summary.files, "file"),
            match summary.skipped_files {
                0 => String::new(),
                n => format!("; {} without one left alone", plural(n, "file")),
            },
            summary.seconds
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} could not be resealed (their files are unchanged)",
            plural(summary.failed, "SealedSecret")
        );
    }
    Ok(())
}

fn progress(len: u64, json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} files resealed [{elapsed_precise}, {rate}, {eta} left]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} files/s", state.per_sec());
            },
        ),
    );
    bar
}

/// One log line: what happened to an object.
fn describe(e: &Entry) -> String {
    let via = match e.via.as_deref() {
        Some("identity") => " with -i".to_owned(),
        Some(v) => format!(" by the {v}"),
        None => String::new(),
    };
    match e.action {
        "upToDate" => format!(
            "{}: {}: already sealed to the newest key",
            e.label, e.object
        ),
        "resealed" => format!(
            "{}: {}: resealed{via}: [{}] -> [{}]",
            e.label,
            e.object,
            e.from.join(", "),
            e.to.join(", ")
        ),
        "wouldReseal" => format!(
            "{}: {}: would reseal{via}: sealed to [{}]",
            e.label,
            e.object,
            e.from.join(", ")
        ),
        _ => format!(
            "{}: {}: cannot reseal: {}",
            e.label,
            e.object,
            e.error.as_deref().unwrap_or_default()
        ),
    }
}

fn entry(job: &FileJob, object: &Object, action: &'static str) -> Entry {
    Entry {
        file: job.name.clone(),
        document: doc_number(object.doc, job.docs.len()),
        object: object
            .sealed
            .as_ref()
            .map_or_else(|| "(not a SealedSecret)".into(), SealedSecret::location),
        action,
        via: None,
        from: object
            .sealed
            .iter()
            .flat_map(|s| &s.spec.recipients)
            .map(|f| f.0.clone())
            .collect(),
        to: Vec::new(),
        error: None,
        label: object.label.clone(),
    }
}

/// Writes a file whose objects were all resealed or up to date; a file with a failure
/// stays as it was. Returns whether it was written.
fn finish(
    job: &mut FileJob,
    resealed: Vec<(usize, SealedSecret)>,
    entries: &mut [Entry],
    dry_run: bool,
) -> bool {
    if dry_run || resealed.is_empty() || entries.iter().any(|e| e.action == "failed") {
        return false;
    }
    let write = || -> Result<()> {
        for (doc, sealed) in resealed {
            job.docs[doc] = serde_json::to_value(&sealed)?;
        }
        let format = match job.format {
            Format::Yaml => OutputFormat::Yaml,
            Format::Json => OutputFormat::Json,
        };
        replace_file(&job.path, render(&job.docs, format)?.as_bytes())
    };
    match write() {
        Ok(()) => true,
        Err(e) => {
            for entry in entries.iter_mut() {
                entry.action = "failed";
                entry.error = Some(format!("{e:#}"));
            }
            false
        }
    }
}

/// Reseals a file's objects with the user's keys, to exactly the target recipients.
fn offline(
    mut job: FileJob,
    keyring: &Keyring,
    args: &ResealArgs,
    log: &impl Fn(&Entry),
) -> (bool, Vec<Entry>) {
    let mut entries = Vec::new();
    let mut resealed = Vec::new();
    for object in &job.objects {
        let (kind, result) = match &object.action {
            Action::UpToDate => continue,
            Action::Refuse(why) => ("failed", Err(anyhow!("{why}"))),
            Action::Controller => ("failed", Err(anyhow!("no controller to ask"))),
            Action::Identity(_) if args.dry_run => ("wouldReseal", Ok(None)),
            Action::Identity(set) => match &object.sealed {
                Some(sealed) => ("resealed", reseal_with(keyring, set, sealed).map(Some)),
                None => continue,
            },
        };
        let mut e = entry(&job, object, kind);
        e.via = Some("identity".into());
        match result {
            Ok(Some(out)) => {
                e.to = out.spec.recipients.iter().map(|f| f.0.clone()).collect();
                resealed.push((object.doc, out));
            }
            Ok(None) => {}
            Err(why) => {
                e.action = "failed";
                e.error = Some(format!("{why:#}"));
            }
        }
        entries.push(e);
    }
    let written = finish(&mut job, resealed, &mut entries, args.dry_run);
    entries.iter().for_each(log);
    (written, entries)
}

/// Every item opened with `keyring` (checked against where the object is) and sealed
/// again to `set`. The plaintext lives only in wiped buffers.
fn reseal_with(
    keyring: &Keyring,
    set: &RecipientSet,
    sealed: &SealedSecret,
) -> Result<SealedSecret> {
    let mut out = sealed.clone();
    for (key, value) in out.spec.encrypted_data.iter_mut() {
        let binding = Binding::new(
            sealed.spec.scope,
            sealed.metadata.namespace.as_deref(),
            sealed.metadata.name.as_deref(),
            key,
        )?;
        let plain: Zeroizing<Vec<u8>> =
            kseal_core::item::open(keyring, &sealed.spec.recipients, &binding, value)
                .map_err(|e| anyhow!("item {key:?}: {e} (with the keys of -i)"))?;
        *value = kseal_core::item::seal(set, &binding, &plain)?;
    }
    out.spec.recipients = set.fingerprints();
    Ok(out)
}

/// The controller of one cluster, asked for several files at once.
struct Resealer {
    asker: Asker,
    /// Who resealed, for the report.
    via: String,
}

impl Resealer {
    fn new(args: &ResealArgs, context: Option<String>) -> Result<Resealer> {
        let via = match &context {
            Some(c) => format!("controller of context {c}"),
            None => "controller".to_owned(),
        };
        if let Some(url) = &args.ask.controller_url {
            return Ok(Resealer {
                asker: Asker::Http(url.clone()),
                via,
            });
        }
        let mut cluster_args = args.recipients.cluster.clone();
        cluster_args.context = context;
        let cluster = Cluster::require(&cluster_args)?;
        let timeout = Duration::from_secs(args.ask.timeout);
        Ok(Resealer {
            asker: Asker::api(cluster, args.ask.namespace.clone(), timeout),
            via,
        })
    }

    fn run(
        &self,
        group: Vec<FileJob>,
        args: &ResealArgs,
        bar: &indicatif::ProgressBar,
        log: &impl Fn(&Entry),
    ) -> Vec<(bool, Vec<Entry>)> {
        let work = futures::stream::iter(group)
            .map(|job| async move {
                let out = self.file(job, args).await;
                out.1.iter().for_each(log);
                bar.inc(1);
                out
            })
            .buffer_unordered(match self.asker {
                Asker::Http(_) => 1,
                Asker::Api { .. } => usize::from(args.concurrency),
            })
            .collect::<Vec<_>>();
        match &self.asker {
            Asker::Api { cluster, .. } => cluster.runtime.block_on(work),
            Asker::Http(_) => match tokio::runtime::Builder::new_current_thread().build() {
                Ok(runtime) => runtime.block_on(work),
                Err(e) => panic!("cannot start a runtime: {e}"),
            },
        }
    }

    async fn file(&self, mut job: FileJob, args: &ResealArgs) -> (bool, Vec<Entry>) {
        let mut entries = Vec::new();
        let mut resealed = Vec::new();
        for object in &job.objects {
            let mut e = match &object.action {
                Action::UpToDate => continue,
                Action::Refuse(why) => {
                    let mut e = entry(&job, object, "failed");
                    e.error = Some(why.clone());
                    entries.push(e);
                    continue;
                }
                Action::Identity(_) => continue,
                Action::Controller if args.dry_run => entry(&job, object, "wouldReseal"),
                Action::Controller => entry(&job, object, "resealed"),
            };
            e.via = Some(self.via.clone());
            if let (false, Some(sealed)) = (args.dry_run, &object.sealed) {
                match self.ask(sealed).await {
                    // Its newest key alone already held every item.
                    Ok(out) if out.spec.encrypted_data == sealed.spec.encrypted_data => {
                        e.action = "upToDate";
                    }
                    Ok(out) => {
                        e.to = out.spec.recipients.iter().map(|f| f.0.clone()).collect();
                        resealed.push((object.doc, out));
                    }
                    Err(why) => {
                        e.action = "failed";
                        e.error = Some(format!("{why:#}"));
                    }
                }
            }
            entries.push(e);
        }
        let written = finish(&mut job, resealed, &mut entries, args.dry_run);
        (written, entries)
    }

    async fn ask(&self, before: &SealedSecret) -> Result<SealedSecret> {
        match self.asker.ask(RequestOperation::Reseal, before).await? {
            Ok(Answer::Resealed(out)) => Ok(*out),
            Ok(Answer::Verified { .. }) => {
                bail!("the controller answered a reseal with a verification")
            }
            Err(refusal) => bail!("{refusal}"),
        }
    }
}
