//! What a matched rule asks of an object's recipients: the named ones and its cluster's
//! keys (read from a context, or from a cert), resolved once per rule.

use std::collections::HashMap;

use anyhow::{Context, Result};
use kseal_core::recipients::{Fingerprint, Recipient, RecipientsDocument, parse_cert};

use super::config::Matched;
use crate::cli::RecipientArgs;

/// What a rule asks of an object's recipients, resolved once per rule.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// `recipients` and `recipientsFiles`: each must be there.
    pub named: Vec<Recipient>,
    /// Where each of `named` was given: `recipients`, or the file as the rule writes it.
    pub named_from: HashMap<Fingerprint, String>,
    /// The rule's cluster, when it names one.
    pub cluster: Option<ClusterKeys>,
}

/// A cluster's keys, newest first, and where they were read.
#[derive(Clone, Debug)]
pub struct ClusterKeys {
    /// `context prod`, or `cert certs/prod.json`.
    pub source: String,
    /// The kubeconfig context, when it is read live.
    pub context: Option<String>,
    /// Newest first; empty for a context not read (offline).
    pub keys: Vec<Recipient>,
    /// Creation times, as the recipients document gives them, by fingerprint.
    pub created: HashMap<Fingerprint, String>,
}

impl Wanted {
    /// Where the rule gets the recipient `fp` from, as `kseal inspect` names it: a file
    /// of `recipientsFiles`, `recipients`, or its cluster (and which of its keys).
    pub fn source_of(&self, fp: &Fingerprint) -> Option<String> {
        if let Some(c) = &self.cluster
            && let Some(i) = c.keys.iter().position(|k| k.fingerprint() == *fp)
        {
            let which = if i == 0 { "newest key" } else { "older key" };
            return Some(format!("{}, {which}", c.source));
        }
        self.named_from.get(fp).cloned()
    }

    /// The expected recipients for `kseal_core::checks::check_recipients`. A context not
    /// read (offline) counts as one recipient beside the named ones, unchecked.
    pub fn expected(&self) -> kseal_core::checks::ExpectedRecipients {
        let cluster = self.cluster.as_ref();
        let unread = cluster.is_some_and(|c| c.keys.is_empty());
        kseal_core::checks::ExpectedRecipients {
            named: self.named.iter().map(Recipient::fingerprint).collect(),
            cluster: cluster
                .filter(|_| !unread)
                .map(|c| c.keys.iter().map(Recipient::fingerprint).collect()),
            unread_cluster: unread,
        }
    }
}

/// A recipients document's keys, newest first, and their creation times.
pub fn document_keys(
    doc: &RecipientsDocument,
) -> Result<(Vec<Recipient>, HashMap<Fingerprint, String>)> {
    let keys = doc.keys()?;
    let created = doc
        .recipients
        .iter()
        .filter_map(|p| Some((p.fingerprint.clone(), p.created.clone()?)))
        .collect();
    Ok((keys, created))
}

/// Every key a recipients document (or a recipients file) names, newest first.
fn cert_keys(text: &str) -> Result<(Vec<Recipient>, HashMap<Fingerprint, String>)> {
    if text.trim_start().starts_with('{') {
        // parse_cert checks the document and says what is wrong in one line.
        parse_cert(text)?;
        let doc: RecipientsDocument = serde_json::from_str(text)?;
        return document_keys(&doc);
    }
    Ok((parse_cert(text)?, HashMap::new()))
}

/// What `matched` asks for. `live` reads a rule's context from the cluster (its keys
/// and their ages); otherwise a context's keys stay unknown. A cert is always read,
/// unless it is a URL and `offline`.
pub(super) fn resolve(
    matched: &Matched,
    flags: &RecipientArgs,
    live: bool,
    offline: bool,
) -> Result<Wanted> {
    let args = matched.recipient_args(&RecipientArgs {
        cluster: flags.cluster.clone(),
        allow_classic_with_pq: flags.allow_classic_with_pq,
        ..RecipientArgs::default()
    });
    let spec = &matched.rule().spec;
    let at = matched.to_string();
    // The named recipients alone: the cert is the cluster, read whole below.
    let named = RecipientArgs {
        certs: Vec::new(),
        ..args.clone()
    }
    .named()
    .with_context(|| at.clone())?;
    let remote = |cert: &str| cert.starts_with("https://") || cert.starts_with("http://");
    let cluster = if let Some(cert) = args.certs.first().filter(|c| offline && remote(c)) {
        Some(ClusterKeys {
            source: format!("cert {cert} (not fetched offline)"),
            context: None,
            keys: Vec::new(),
            created: HashMap::new(),
        })
    } else if let Some(cert) = args.certs.first() {
        let text = crate::recipient_flags::fetch_cert(cert).with_context(|| at.clone())?;
        let (keys, created) = cert_keys(&text).with_context(|| format!("{at}: cert {cert}"))?;
        Some(ClusterKeys {
            source: format!("cert {}", spec.cert.as_deref().unwrap_or(cert)),
            context: None,
            keys,
            created,
        })
    } else if let Some(context) = &args
        .cluster
        .context
        .clone()
        .filter(|_| spec.context.is_some())
    {
        let (keys, created) = if live {
            let cluster = args.connect().with_context(|| at.clone())?;
            let (doc, _) = cluster
                .configmap_with_annotations()
                .with_context(|| format!("{at}: context {context}"))?;
            document_keys(&doc).with_context(|| format!("{at}: context {context}"))?
        } else {
            (Vec::new(), HashMap::new())
        };
        Some(ClusterKeys {
            source: format!("context {context}"),
            context: Some(context.clone()),
            keys,
            created,
        })
    } else {
        None
    };
    // Each named recipient's source, one file at a time.
    let mut named_from = HashMap::new();
    for text in &spec.recipients {
        if let Ok(r) = text.parse::<Recipient>() {
            named_from.insert(r.fingerprint(), "recipients".to_owned());
        }
    }
    for file in &spec.recipients_files {
        let from_file = RecipientArgs {
            recipients_files: vec![matched.config.resolve(file)],
            ..RecipientArgs::default()
        }
        .named()
        .with_context(|| format!("{at}: recipientsFiles {file}"))?;
        for r in from_file {
            named_from
                .entry(r.fingerprint())
                .or_insert_with(|| file.clone());
        }
    }
    Ok(Wanted {
        named,
        named_from,
        cluster,
    })
}
