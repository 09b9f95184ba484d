//! `kseal audit [PATH…]`: which files are sealed to which keys, read from the recipients
//! each SealedSecret records (no private key needed). Each key is named by what it is to
//! the file's rule: its cluster's newest key, an older one the cluster still holds (with
//! the key's creation time when the cluster is reachable), a recipient the rule names, or
//! unknown. Each object gets what `kseal reseal` would do with it, and each cluster what
//! a rotation of its key would need resealed.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use kseal_core::checks::{RecipientsCheck, check_recipients};
use kseal_core::recipients::Recipient;
use serde::Serialize;

use super::doc_number;
use super::plan::{Action, Planner, Target, decide};
use super::plural;
use crate::cli::{AuditArgs, InspectFormat, RecipientArgs};
use crate::cluster::Cluster;
use crate::io::outln;

/// An object a reseal through the controller moves to the newest key, as `detail` says.
const REPLACED: &str = "on a key its cluster has replaced";

/// One recipient of one object, and what it is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyUse {
    fingerprint: String,
    /// `newest`, `older`, `named` or `unknown`.
    role: &'static str,
    /// The cluster it belongs to (`context prod`, `cert certs/prod.json`), for cluster keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Audited {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    recipients: Vec<KeyUse>,
    /// `current`, `reseal` (kseal reseal moves it: through the controller, or with `-i`
    /// as `detail` says), `attention` (a reseal cannot fix it: see `detail`), `review`
    /// (its rule adds a recipient or widens the scope: see `detail`; the audit fails) or
    /// `unchecked` (no cluster read).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// One key over the whole audit: what it is, and how many objects and files use it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyReport {
    #[serde(flatten)]
    key: KeyUse,
    objects: usize,
    files: usize,
}

/// What rotating one cluster's key would touch: every object on its newest key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rotation {
    cluster: String,
    objects: usize,
    files: usize,
}

pub fn run(args: &AuditArgs) -> Result<()> {
    let paths = if args.paths.is_empty() {
        vec![".".into()]
    } else {
        args.paths.clone()
    };
    let live = !args.offline && Cluster::connect(&args.cluster)?.is_some();
    let flags = RecipientArgs {
        cluster: args.cluster.clone(),
        ..RecipientArgs::default()
    };
    let mut planner = Planner::new(&flags, false, live);
    let mut audited = Vec::new();
    // Bitnami SealedSecrets are not audited (no kseal key opens them), but counted: a
    // repository not yet migrated must not read as empty.
    let (mut bitnami, mut bitnami_files) = (0, 0);
    for path in super::manifest_files(&paths, super::Hidden::Skip)? {
        let in_file = crate::io::read_file(&path)
            .ok()
            .and_then(|input| kseal_core::manifest::parse_documents(&input.bytes).ok())
            .map_or(0, |(_, docs)| {
                docs.iter()
                    .filter(|d| matches!(super::document_kind(d), super::DocumentKind::Bitnami))
                    .count()
            });
        bitnami += in_file;
        bitnami_files += usize::from(in_file > 0);
        let Some(job) = planner.file(&path, false)? else {
            continue;
        };
        for object in &job.objects {
            audited.push(audit(&job, object, live));
        }
    }
    let keys = key_report(&audited);
    let rotations = rotations(&audited);
    let count = |status: &str| audited.iter().filter(|a| a.status == status).count();
    let files: BTreeSet<&str> = audited.iter().map(|a| a.file.as_str()).collect();
    if args.output == InspectFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "summary": {
                    "files": files.len(),
                    "objects": audited.len(),
                    "current": count("current"),
                    "reseal": count("reseal"),
                    "attention": count("attention"),
                    "review": count("review"),
                    "unchecked": count("unchecked"),
                    "bitnami": bitnami,
                    "clustersRead": live,
                },
                "keys": keys,
                "rotation": rotations,
                "objects": audited,
            }))?
        )?;
        return reviewed(count("review"));
    }
    outln!("keys:")?;
    for k in &keys {
        let mut what = match (k.key.role, &k.key.cluster) {
            ("newest", Some(c)) => format!("{c}, its newest key"),
            ("older", Some(c)) => format!("{c}, an older key it still holds"),
            ("named", _) => "named by a rule".to_owned(),
            _ => "unknown: no rule or cluster names it".to_owned(),
        };
        if let Some(created) = &k.key.created {
            what.push_str(&format!(", created {created}"));
        }
        outln!(
            "  {}  {what}: {} in {}",
            k.key.fingerprint,
            plural(k.objects, "object"),
            plural(k.files, "file")
        )?;
    }
    let needing: Vec<&Audited> = audited
        .iter()
        .filter(|a| matches!(a.status, "review" | "reseal" | "attention"))
        .collect();
    // Those the controller reseals are one command over what was audited, not a line
    // each (after a rotation, that is every file).
    let (replaced, needing): (Vec<&Audited>, Vec<&Audited>) = needing.into_iter().partition(|a| {
        a.status == "reseal" && a.detail.as_deref().is_some_and(|d| d.starts_with(REPLACED))
    });
    if !needing.is_empty() || !replaced.is_empty() {
        outln!("to do:")?;
        if replaced.len() > 1 {
            let in_files: BTreeSet<&str> = replaced.iter().map(|a| a.file.as_str()).collect();
            let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            outln!(
                "  {} in {} {}: kseal reseal {}",
                plural(replaced.len(), "SealedSecret"),
                plural(in_files.len(), "file"),
                "are on keys their cluster has replaced",
                paths.join(" ")
            )?;
        }
        let single = (replaced.len() == 1).then(|| replaced[0]);
        for a in needing.into_iter().chain(single) {
            let label = match a.document {
                Some(n) => format!("{}: document {n}", a.file),
                None => a.file.clone(),
            };
            let what = a.detail.clone().unwrap_or_default();
            let review = if a.status == "review" {
                "REVIEW THE RULE: "
            } else {
                ""
            };
            outln!("  {label}: {}: {review}{what}", a.object)?;
        }
    }
    outln!("rules:")?;
    let mut by_rule: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in &audited {
        by_rule
            .entry(a.rule.as_deref().unwrap_or("no rule"))
            .or_default()
            .insert(&a.file);
    }
    for (rule, files) in by_rule {
        outln!("  {rule}: {}", plural(files.len(), "file"))?;
    }
    for r in &rotations {
        outln!(
            "a rotation of {}'s key would touch {} in {}",
            r.cluster,
            plural(r.objects, "object"),
            plural(r.files, "file")
        )?;
    }
    if bitnami > 0 {
        outln!(
            "{} in {}: Bitnami's (bitnami.com/v1alpha1), not audited: convert them with `kseal migrate`",
            plural(bitnami, "Bitnami SealedSecret"),
            plural(bitnami_files, "file")
        )?;
    }
    outln!(
        "{} in {}: {} current, {} to reseal, {} needing attention{}{}",
        plural(audited.len(), "SealedSecret"),
        plural(files.len(), "file"),
        count("current"),
        count("reseal"),
        count("attention"),
        match count("review") {
            0 => String::new(),
            n => format!(", {n} under a rule to review"),
        },
        match count("unchecked") {
            0 => String::new(),
            n => format!(", {n} unchecked (no cluster read: --offline, or no kubeconfig)"),
        }
    )?;
    reviewed(count("review"))
}

/// Objects under a rule that was changed to add a recipient or widen the scope fail the
/// audit: resealing them is the change's effect, and someone must decide it was meant.
fn reviewed(n: usize) -> Result<()> {
    if n > 0 {
        anyhow::bail!(
            "{} under a .kseal.yaml rule that adds a recipient or widens the scope: review the rule before resealing",
            plural(n, "SealedSecret")
        );
    }
    Ok(())
}

fn audit(job: &super::plan::FileJob, object: &super::plan::Object, live: bool) -> Audited {
    let target = job.target.as_ref();
    let recorded = object
        .sealed
        .as_ref()
        .map(|s| s.spec.recipients.clone())
        .unwrap_or_default();
    let recipients = recorded
        .iter()
        .map(|fp| role(fp, target))
        .collect::<Vec<_>>();
    let cluster_unread = target.is_some_and(|t| {
        t.cluster.as_ref().is_some_and(|c| c.keys.is_empty())
            || (t.cluster.is_none() && !live && job.rule.is_none())
    });
    if let (Some(rule), Some(sealed), Some(t)) = (&job.rule, &object.sealed, target)
        && let Some(why) = rule_changed(rule, sealed, t)
    {
        return Audited {
            file: job.name.clone(),
            document: doc_number(object.doc, job.docs.len()),
            object: sealed.location(),
            rule: job.rule.clone(),
            recipients,
            status: "review",
            detail: Some(why),
        };
    }
    // What only a reseal with the user's key (-i) can do is still a reseal.
    let with_key = match (&object.action, &object.sealed, target) {
        (Action::Refuse(why), Some(sealed), Some(t)) => {
            matches!(decide(sealed, t, true), Action::Identity(_)).then(|| why.clone())
        }
        _ => None,
    };
    let (status, detail) = match (&object.action, &object.sealed, target) {
        (Action::Refuse(_), _, _) if with_key.is_some() => (
            "reseal",
            Some(format!(
                "kseal reseal -i KEY {}: {}",
                job.name,
                with_key.unwrap_or_default()
            )),
        ),
        (Action::Refuse(why), _, _) => ("attention", Some(why.clone())),
        (_, Some(sealed), Some(t)) if cluster_unread => {
            if job.rule.is_none() {
                ("unchecked", None)
            } else {
                let wanted = crate::rules::Wanted {
                    named: t.named.clone(),
                    named_from: Default::default(),
                    cluster: t.cluster.clone(),
                };
                match check_recipients(&sealed.spec.recipients, &wanted.expected()) {
                    RecipientsCheck::Fail(why) => ("attention", Some(why)),
                    _ => ("current", None),
                }
            }
        }
        (Action::UpToDate, _, _) => ("current", None),
        (Action::Controller, _, _) | (Action::Identity(_), _, _) => (
            "reseal",
            Some(format!("{REPLACED}: kseal reseal {}", job.name)),
        ),
    };
    Audited {
        file: job.name.clone(),
        document: doc_number(object.doc, job.docs.len()),
        object: object
            .sealed
            .as_ref()
            .map_or_else(|| "(not a SealedSecret)".into(), |s| s.location()),
        rule: job.rule.clone(),
        recipients,
        status,
        detail,
    }
}

/// What a rule asks that an object sealed under it does not have, when only a change to the
/// rule explains it: a recipient beside the cluster (whoever holds it would open every
/// value resealed under the rule), or the cluster-wide scope (values sealed under it open
/// in any namespace). A rotation never causes either.
fn rule_changed(
    rule: &str,
    sealed: &kseal_core::resource::SealedSecret,
    target: &Target,
) -> Option<String> {
    let added: Vec<String> = target
        .named
        .iter()
        .map(Recipient::fingerprint)
        .filter(|fp| !sealed.spec.recipients.contains(fp))
        .map(|fp| fp.0)
        .collect();
    if !added.is_empty() {
        return Some(format!(
            "{rule} names {} this object is not sealed to ({}): not a rotation; whoever holds {} would open every value resealed under the rule. Check who added it (git log -p -- .kseal.yaml) before kseal reseal -i",
            if added.len() == 1 {
                "a recipient"
            } else {
                "recipients"
            },
            added.join(", "),
            if added.len() == 1 { "it" } else { "them" },
        ));
    }
    let cluster_wide = kseal_core::scope::Scope::ClusterWide;
    if target.scope == Some(cluster_wide) && sealed.spec.scope != cluster_wide {
        return Some(format!(
            "{rule} sets scope cluster-wide, and this object is {}: not a rotation; values sealed under the rule open in any namespace. Check who changed it (git log -p -- .kseal.yaml)",
            sealed.spec.scope
        ));
    }
    None
}

fn role(fp: &kseal_core::recipients::Fingerprint, target: Option<&Target>) -> KeyUse {
    let mut out = KeyUse {
        fingerprint: fp.0.clone(),
        role: "unknown",
        cluster: None,
        created: None,
    };
    let Some(target) = target else {
        return out;
    };
    if let Some(c) = &target.cluster
        && let Some(i) = c.keys.iter().position(|k| k.fingerprint() == *fp)
    {
        out.role = if i == 0 { "newest" } else { "older" };
        out.cluster = Some(c.source.clone());
        out.created = c.created.get(fp).cloned();
    } else if target
        .named
        .iter()
        .map(Recipient::fingerprint)
        .any(|n| n == *fp)
    {
        out.role = "named";
    }
    out
}

/// A key as the audit names it: fingerprint, role, cluster.
type KeyId = (String, &'static str, Option<String>);

fn key_report(audited: &[Audited]) -> Vec<KeyReport> {
    // Per key: its creation time, the objects on it, and their files.
    let mut keys: BTreeMap<KeyId, (Option<String>, usize, BTreeSet<&str>)> = BTreeMap::new();
    for a in audited {
        for k in &a.recipients {
            let slot = keys
                .entry((k.fingerprint.clone(), k.role, k.cluster.clone()))
                .or_insert_with(|| (k.created.clone(), 0, BTreeSet::new()));
            slot.1 += 1;
            slot.2.insert(&a.file);
        }
    }
    keys.into_iter()
        .map(
            |((fingerprint, role, cluster), (created, objects, files))| KeyReport {
                key: KeyUse {
                    fingerprint,
                    role,
                    cluster,
                    created,
                },
                objects,
                files: files.len(),
            },
        )
        .collect()
}

fn rotations(audited: &[Audited]) -> Vec<Rotation> {
    let mut by_cluster: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for a in audited {
        for k in a.recipients.iter().filter(|k| k.role == "newest") {
            if let Some(c) = &k.cluster {
                let slot = by_cluster.entry(c).or_default();
                slot.0 += 1;
                slot.1.insert(&a.file);
            }
        }
    }
    by_cluster
        .into_iter()
        .map(|(cluster, (objects, files))| Rotation {
            cluster: cluster.to_owned(),
            objects,
            files: files.len(),
        })
        .collect()
}
