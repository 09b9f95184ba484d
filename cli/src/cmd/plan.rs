//! What `kseal reseal` and `kseal audit` both need: for each SealedSecret of the files
//! given, the recipients it must be sealed to (its `.kseal.yaml` rule's, the flags', or
//! the kubeconfig cluster's newest key beside what it already has), and what to do about
//! it, read from its recorded recipients alone (no key needed).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use kseal_core::manifest::{Format, parse_documents};
use kseal_core::recipients::{Fingerprint, Recipient, RecipientSet};
use kseal_core::resource::SealedSecret;
use serde_json::Value;

use crate::cli::RecipientArgs;
use crate::cluster::Cluster;
use crate::io::read_file;
use crate::rules::{ClusterKeys, Matched, Rules};

/// What one file's objects must be sealed to.
#[derive(Clone)]
pub(crate) struct Target {
    /// Where it comes from, for messages: a rule, the flags, or the kubeconfig's cluster.
    pub from: String,
    pub named: Vec<Recipient>,
    /// The cluster, with its keys when they were read.
    pub cluster: Option<ClusterKeys>,
    /// No rule and no flags: the recipients beside the cluster's key stay as they are.
    pub keep_others: bool,
    /// The kubeconfig context whose controller re-encrypts (`None`: the current one);
    /// absent when the cluster is only known from a cert.
    pub controller: Option<Option<String>>,
    /// The scope the file's rule sets, if it does.
    pub scope: Option<kseal_core::scope::Scope>,
}

/// What to do with one object.
pub(crate) enum Action {
    UpToDate,
    Controller,
    Identity(RecipientSet),
    Refuse(String),
}

pub(crate) struct Object {
    pub doc: usize,
    pub label: String,
    /// `None` when the document is not a readable SealedSecret (then the action says why).
    pub sealed: Option<SealedSecret>,
    pub action: Action,
}

pub(crate) struct FileJob {
    pub path: PathBuf,
    pub name: String,
    pub format: Format,
    pub docs: Vec<Value>,
    pub objects: Vec<Object>,
    pub target: Option<Target>,
    pub rule: Option<String>,
}

/// Reads files and decides, for each object, what to do.
pub(crate) struct Planner<'a> {
    flags: &'a RecipientArgs,
    rules: Rules,
    targets: HashMap<String, Target>,
    /// Resealing with the user's keys (-i), not through a controller.
    offline: bool,
    /// Read the clusters (rules' contexts, the kubeconfig's) for their keys.
    live: bool,
}

impl<'a> Planner<'a> {
    pub fn new(flags: &'a RecipientArgs, offline: bool, live: bool) -> Planner<'a> {
        Planner {
            flags,
            rules: Rules::default(),
            targets: HashMap::new(),
            offline,
            live,
        }
    }

    /// The file's objects and what each needs; `None` when it holds no kseal
    /// SealedSecret, or no manifest at all and was not named (`explicit`) on the command
    /// line: a named one that does not parse is an error naming it.
    pub fn file(&mut self, path: &Path, explicit: bool) -> Result<Option<FileJob>> {
        let input = read_file(path)?;
        let (format, docs) = match parse_documents(&input.bytes) {
            Ok(parsed) => parsed,
            Err(e) if explicit => return Err(anyhow!("{}: {e}", input.name)),
            Err(_) => return Ok(None),
        };
        // Only this exact version: a SealedSecret of another one is not planned for.
        let kseal: Vec<super::Found> = super::sealed_secrets(&input.name, &docs, false)
            .filter(|found| docs[found.index]["apiVersion"].as_str() == Some("kseal.dev/v1alpha1"))
            .collect();
        if kseal.is_empty() {
            return Ok(None);
        }
        // Flags win over the file's rule.
        let flags = self.flags;
        let rule = if flags.is_empty() && !flags.with_cluster {
            self.rules.for_file(path)?
        } else {
            None
        };
        let target = self.target(rule.as_ref());
        let mut objects = Vec::with_capacity(kseal.len());
        for found in kseal {
            let label = found.label;
            let (sealed, action) = match found.sealed {
                Ok(sealed) => {
                    let action = match &target {
                        Ok(t) => decide(&sealed, t, self.offline),
                        Err(e) => Action::Refuse(format!("{e:#}")),
                    };
                    (Some(sealed), action)
                }
                Err(e) => (None, Action::Refuse(e.to_string())),
            };
            objects.push(Object {
                doc: found.index,
                label,
                sealed,
                action,
            });
        }
        Ok(Some(FileJob {
            path: path.to_path_buf(),
            name: input.name,
            format,
            docs,
            objects,
            target: target.ok(),
            rule: rule.map(|r| r.to_string()),
        }))
    }

    /// The file's target: the flags, else its rule, else the kubeconfig's cluster.
    fn target(&mut self, rule: Option<&Matched>) -> Result<Target> {
        let flags = self.flags;
        let key = rule.map_or_else(String::new, ToString::to_string);
        if let Some(t) = self.targets.get(&key) {
            return Ok(t.clone());
        }
        let target = match rule {
            Some(rule) => {
                let wanted = self.rules.wanted(rule, flags, self.live)?;
                let controller = wanted
                    .cluster
                    .as_ref()
                    .and_then(|c| c.context.clone().map(Some));
                Target {
                    from: rule.to_string(),
                    named: wanted.named,
                    cluster: wanted.cluster,
                    keep_others: false,
                    controller,
                    scope: rule.rule().scope,
                }
            }
            None if !flags.is_empty() || flags.with_cluster => Target {
                from: "the recipient flags".into(),
                named: flags.named()?,
                cluster: flags
                    .with_cluster
                    .then(|| kubeconfig_cluster(flags))
                    .transpose()?,
                keep_others: false,
                controller: flags.with_cluster.then(|| flags.cluster.context.clone()),
                scope: None,
            },
            // Without a kubeconfig (--controller-url alone) the keys are unknown and the
            // controller decides.
            None => Target {
                from: "the kubeconfig's cluster".into(),
                named: Vec::new(),
                cluster: match self.live {
                    true if Cluster::connect(&flags.cluster)?.is_some() => {
                        Some(kubeconfig_cluster(flags)?)
                    }
                    _ => None,
                },
                keep_others: true,
                controller: Some(flags.cluster.context.clone()),
                scope: None,
            },
        };
        self.targets.insert(key, target.clone());
        Ok(target)
    }
}

/// The keys the kubeconfig's cluster publishes, newest first.
fn kubeconfig_cluster(flags: &RecipientArgs) -> Result<ClusterKeys> {
    let cluster = Cluster::require(&flags.cluster)?;
    let (doc, _) = cluster.configmap_with_annotations()?;
    let (keys, created) = crate::rules::document_keys(&doc)?;
    Ok(ClusterKeys {
        source: "the kubeconfig's cluster".into(),
        context: flags.cluster.context.clone(),
        keys,
        created,
    })
}

fn show(fps: &BTreeSet<Fingerprint>) -> String {
    let names: Vec<&str> = fps.iter().map(|f| f.0.as_str()).collect();
    format!("[{}]", names.join(", "))
}

/// Compares what an object records with its target.
pub(crate) fn decide(sealed: &SealedSecret, target: &Target, offline: bool) -> Action {
    let recorded: BTreeSet<Fingerprint> = sealed.spec.recipients.iter().cloned().collect();
    let cluster: BTreeSet<Fingerprint> = target
        .cluster
        .iter()
        .flat_map(|c| c.keys.iter().map(Recipient::fingerprint))
        .collect();
    let newest = target.cluster.as_ref().and_then(|c| c.keys.first());
    let others: BTreeSet<Fingerprint> = recorded.difference(&cluster).cloned().collect();
    let named: BTreeSet<Fingerprint> = target.named.iter().map(Recipient::fingerprint).collect();
    if target.keep_others && target.cluster.is_none() && !offline {
        // No keys read: the controller tells, from the stanzas.
        return Action::Controller;
    }
    let mut want = if target.keep_others {
        others.clone()
    } else {
        named.clone()
    };
    want.extend(newest.map(Recipient::fingerprint));
    if recorded == want {
        return Action::UpToDate;
    }
    if offline {
        if target.keep_others && !others.is_empty() {
            return Action::Refuse(format!(
                "sealed to {} beside the cluster, known only by fingerprint: name every recipient (-r, -R, --cert, --cluster, or a .kseal.yaml rule) to reseal with -i, or reseal without -i (the controller keeps them)",
                show(&others)
            ));
        }
        let mut all = target.named.clone();
        all.extend(newest.cloned());
        return match RecipientSet::new(all) {
            Ok(set) => Action::Identity(set),
            Err(e) => Action::Refuse(format!("{}: {e}", target.from)),
        };
    }
    if target.controller.is_none() {
        return Action::Refuse(format!(
            "sealed to {}, {} asks for {}: only -i IDENTITY can change that here ({})",
            show(&recorded),
            target.from,
            show(&want),
            if target.cluster.is_some() {
                "its cluster is a cert, with no controller to ask"
            } else {
                "no cluster is named"
            }
        ));
    }
    if !target.keep_others && others != named {
        let added: BTreeSet<_> = named.difference(&others).cloned().collect();
        let dropped: BTreeSet<_> = others.difference(&named).cloned().collect();
        return Action::Refuse(format!(
            "{} asks for recipients beside the cluster's key that differ (adds {}, drops {}): reseal with -i IDENTITY; the controller only moves its own old keys to its newest, and never re-encrypts to a recipient a request names",
            target.from,
            show(&added),
            show(&dropped)
        ));
    }
    if recorded.is_disjoint(&cluster) {
        return Action::Refuse(format!(
            "sealed to {}, none of them a key of {} ({}): its controller cannot open it; reseal with -i IDENTITY, or seal it again",
            show(&recorded),
            target
                .cluster
                .as_ref()
                .map_or("the cluster", |c| c.source.as_str()),
            show(&cluster)
        ));
    }
    Action::Controller
}
