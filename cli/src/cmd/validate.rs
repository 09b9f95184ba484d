//! `kseal validate PATH…`: checks for CI. Offline unless `--cluster` asks for the
//! cluster's keys. Files and directories (searched for `.yaml`, `.yml` and `.json`); only
//! kseal SealedSecrets are checked, other documents are passed over (a Bitnami
//! SealedSecret with a notice to migrate it), and a file named on the command line with
//! none fails. Prints one line per object on stdout when it passes, notices and one line
//! per problem on stderr, and exits non-zero if any failed.

use anyhow::{Result, bail};
use kseal_core::checks::{
    Allowed, ExpectedRecipients, RecipientsCheck, check_recipients, problems,
};
use kseal_core::manifest::parse_documents;
use kseal_core::recipients::Recipient;
use kseal_core::resource::printable;
use serde::Serialize;

use super::plural;
use crate::cli::{InspectFormat, ValidateArgs};
use crate::io::{outln, read_input};
use crate::rules::Rules;

/// What the recorded recipients are held to: nothing without flags; exactly the named
/// ones; with `--cluster`, one of the cluster's keys (and the named ones beside it).
fn expected(args: &ValidateArgs) -> Result<Option<ExpectedRecipients>> {
    let flags = &args.recipients;
    if flags.is_empty() && !flags.with_cluster {
        return Ok(None);
    }
    let named = flags.named()?.iter().map(Recipient::fingerprint).collect();
    let cluster = if flags.with_cluster {
        let keys = flags.connect()?.published_keys()?;
        Some(keys.iter().map(Recipient::fingerprint).collect())
    } else {
        None
    };
    Ok(Some(ExpectedRecipients {
        named,
        cluster,
        unread_cluster: false,
    }))
}

/// One object checked (or one input that could not be read as objects).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checked {
    file: String,
    /// 1-based, when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    /// `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    recipients: Vec<String>,
    /// The `.kseal.yaml` rule the recipients were checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    /// Every item sealed to post-quantum recipients only.
    post_quantum: bool,
    problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    #[serde(skip)]
    label: String,
}

impl Checked {
    fn unreadable(file: &str, document: Option<usize>, label: String, why: String) -> Checked {
        Checked {
            file: file.to_owned(),
            document,
            object: None,
            ok: false,
            items: None,
            scope: None,
            recipients: Vec::new(),
            rule: None,
            post_quantum: false,
            problems: vec![why],
            notice: None,
            label,
        }
    }
}

pub fn run(args: &ValidateArgs) -> Result<()> {
    let from_flags = expected(args)?;
    let mut rules = Rules::default();
    let mut objects = Vec::new();
    for (file, named) in super::named_files(&args.files)? {
        let path = file.as_path();
        // Recipient flags win; else the file's `.kseal.yaml` rule (its context read only
        // with --cluster); else --cluster alone, or only the structure.
        let mut rule = None;
        if args.recipients.is_empty() {
            rule = rules.for_file(path)?;
        }
        let expected = match &rule {
            Some(rule) => Some(
                rules
                    .wanted(rule, &args.recipients, args.recipients.with_cluster)?
                    .expected(),
            ),
            None => from_flags.clone(),
        };
        let input = match read_input(Some(path), "reading a SealedSecret from stdin") {
            Ok(input) => input,
            Err(e) => {
                let name = path.display().to_string();
                objects.push(Checked::unreadable(
                    &name,
                    None,
                    String::new(),
                    format!("{e:#}"),
                ));
                continue;
            }
        };
        let docs = match parse_documents(&input.bytes) {
            Ok((_, docs)) => docs,
            Err(e) => {
                let label = input.name.clone();
                objects.push(Checked::unreadable(&input.name, None, label, e.to_string()));
                continue;
            }
        };
        if named && !super::holds_sealed_secrets(&docs) {
            let label = input.name.clone();
            let why = "holds no kseal SealedSecret".to_owned();
            objects.push(Checked::unreadable(&input.name, None, label, why));
            continue;
        }
        for found in super::sealed_secrets(&input.name, &docs, true) {
            let (label, document) = (found.label, found.document);
            let sealed = match found.sealed {
                Ok(s) => s,
                Err(e) => {
                    objects.push(Checked::unreadable(
                        &input.name,
                        document,
                        label,
                        e.to_string(),
                    ));
                    continue;
                }
            };
            let allowed = Allowed {
                classic_with_pq: args.recipients.allow_classic_with_pq,
                kube_system: args.allow_kube_system,
            };
            let mut found = problems(&sealed, allowed);
            let mut notice = None;
            match expected
                .as_ref()
                .map(|e| check_recipients(&sealed.spec.recipients, e))
            {
                None | Some(RecipientsCheck::Pass) => {}
                Some(RecipientsCheck::OlderClusterKey { sealed_to, newest }) => {
                    notice = Some(format!(
                        "sealed to the cluster's older key {sealed_to}, which it still holds (the newest is {newest}): `kseal reseal {}` re-encrypts it to the newest",
                        input.name
                    ));
                }
                Some(RecipientsCheck::Fail(why)) => found.push(why),
            }
            objects.push(Checked {
                file: input.name.clone(),
                document,
                object: Some(sealed.location()),
                ok: found.is_empty(),
                items: Some(sealed.spec.encrypted_data.len()),
                scope: Some(sealed.spec.scope.to_string()),
                recipients: sealed.spec.recipients.iter().map(|f| f.0.clone()).collect(),
                rule: rule.as_ref().map(ToString::to_string),
                post_quantum: !sealed.spec.encrypted_data.is_empty()
                    && sealed.spec.encrypted_data.iter().all(|(k, v)| {
                        let s = kseal_core::checks::summarize_item(k, v);
                        s.pq_stanzas > 0 && s.x25519_stanzas == 0
                    }),
                problems: found.iter().map(|p| printable(p).into_owned()).collect(),
                notice: notice.map(|n| printable(&n).into_owned()),
                label,
            });
        }
    }
    let failed = objects.iter().filter(|o| !o.ok).count();
    match args.output {
        InspectFormat::Json => super::print_report(&objects, failed)?,
        InspectFormat::Text => {
            for o in &objects {
                let prefix = match &o.object {
                    Some(who) => format!("{}: {who}", o.label),
                    None if o.label.is_empty() => String::new(),
                    None => o.label.clone(),
                };
                let line = |text: &str| {
                    if prefix.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{prefix}: {text}")
                    }
                };
                if o.ok {
                    outln!(
                        "{}",
                        line(&format!(
                            "ok ({}, {} scope, {}{}{})",
                            plural(o.items.unwrap_or_default(), "item"),
                            o.scope.as_deref().unwrap_or_default(),
                            plural(o.recipients.len(), "recipient"),
                            if o.post_quantum { ", post-quantum" } else { "" },
                            o.rule
                                .as_deref()
                                .map(|r| format!(", as {r} asks"))
                                .unwrap_or_default()
                        ))
                    )?;
                    if let Some(notice) = &o.notice {
                        eprintln!("notice: {}", line(notice));
                    }
                } else {
                    for p in &o.problems {
                        eprintln!("{}", line(p));
                    }
                }
            }
        }
    }
    if failed > 0 {
        // Files that could not be read, or held no SealedSecret, are not SealedSecrets.
        let sealed = objects.iter().filter(|o| o.object.is_some());
        let files = objects.iter().filter(|o| o.object.is_none()).count();
        let mut what = vec![format!(
            "{} of {} failed validation",
            sealed.clone().filter(|o| !o.ok).count(),
            plural(sealed.count(), "SealedSecret")
        )];
        if files > 0 {
            what.push(format!(
                "{} not read or holding none",
                plural(files, "file")
            ));
        }
        bail!("{}", what.join("; "));
    }
    Ok(())
}
