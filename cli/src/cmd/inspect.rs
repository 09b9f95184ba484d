//! `kseal inspect FILE`: what a SealedSecret holds, read without any key.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use kseal_core::checks::{ItemSummary, RecipientsCheck, check_recipients, summarize_item};
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::resource::{SealedSecret, printable};
use serde::Serialize;

use super::{doc_label, plural};
use crate::cli::{InspectArgs, InspectFormat, RecipientArgs};
use crate::io::{read_input, write_output};
use crate::rules::{Matched, Rules};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    name: Option<String>,
    namespace: Option<String>,
    api_version: &'static str,
    format_version: u32,
    scope: String,
    recipients: Vec<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<String>,
    immutable: bool,
    labels: usize,
    annotations: usize,
    plain_items: Vec<String>,
    items: Vec<ItemSummary>,
    /// The `.kseal.yaml` rule that applies to the file, and how the recipients compare
    /// with what it asks (offline: a rule's context is not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_check: Option<String>,
    /// Where the rule gets each recipient from, by fingerprint: a recipients file as the
    /// rule names it, `recipients`, or its cluster and which of its keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    recipient_sources: BTreeMap<String, String>,
}

fn report(sealed: &SealedSecret) -> Report {
    let template = sealed.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Report {
        name: sealed.metadata.name.clone(),
        namespace: sealed.metadata.namespace.clone(),
        api_version: "kseal.dev/v1alpha1",
        format_version: sealed.spec.format_version,
        scope: sealed.spec.scope.to_string(),
        recipients: sealed.spec.recipients.iter().map(|f| f.0.clone()).collect(),
        type_: template.type_,
        immutable: template.immutable.unwrap_or(false),
        labels: meta.labels.len(),
        annotations: meta.annotations.len(),
        plain_items: template.data.keys().cloned().collect(),
        items: sealed
            .spec
            .encrypted_data
            .iter()
            .map(|(k, v)| summarize_item(k, v))
            .collect(),
        rule: None,
        rule_check: None,
        recipient_sources: BTreeMap::new(),
    }
}

/// The rule's name, the recipients compared with what it asks, and where it gets those
/// the object is sealed to.
fn rule_check(
    rules: &mut Rules,
    rule: &Matched,
    sealed: &SealedSecret,
) -> Result<(String, String, BTreeMap<String, String>)> {
    let wanted = rules.wanted(rule, &RecipientArgs::default(), false)?;
    let sources = sealed
        .spec
        .recipients
        .iter()
        .filter_map(|fp| Some((fp.0.clone(), wanted.source_of(fp)?)))
        .collect();
    let check = match check_recipients(&sealed.spec.recipients, &wanted.expected()) {
        RecipientsCheck::Pass => "recipients as it asks".to_owned(),
        RecipientsCheck::OlderClusterKey { sealed_to, newest } => format!(
            "sealed to the cluster's older key {sealed_to} (newest {newest}): kseal reseal moves it"
        ),
        RecipientsCheck::Fail(why) => format!("differs: {why}"),
    };
    Ok((rule.to_string(), check, sources))
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let input = read_input(Some(&args.file), "reading a SealedSecret from stdin")?;
    let (_, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
    let mut rules = Rules::default();
    let rule = rules.for_file(&args.file)?;
    let mut reports = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if let super::DocumentKind::Bitnami = super::document_kind(doc) {
            anyhow::bail!(
                "{}: {}",
                doc_label(&input.name, i, docs.len()),
                super::BITNAMI_NOTICE
            );
        }
        let sealed =
            sealed_from_value(doc).with_context(|| doc_label(&input.name, i, docs.len()))?;
        let mut r = report(&sealed);
        if let Some(rule) = &rule {
            let (name, check, sources) = rule_check(&mut rules, rule, &sealed)?;
            r.rule = Some(name);
            r.rule_check = Some(check);
            r.recipient_sources = sources;
        }
        reports.push(r);
    }
    let text = match args.output {
        InspectFormat::Json => {
            let value = if reports.len() == 1 {
                serde_json::to_value(&reports[0])?
            } else {
                serde_json::to_value(&reports)?
            };
            format!("{}\n", serde_json::to_string_pretty(&value)?)
        }
        InspectFormat::Text => reports
            .iter()
            .map(render_text)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    write_output(None, text.as_bytes())
}

fn render_text(r: &Report) -> String {
    let mut out = String::new();
    // Every string below comes from the file under inspection: printed with control and
    // bidi characters escaped, so the file cannot rewrite what the reviewer sees.
    let location = match (&r.namespace, &r.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => "(no name)".into(),
    };
    let _ = writeln!(out, "SealedSecret {}", printable(&location));
    let _ = writeln!(
        out,
        "  format:      {}, envelope v{}",
        r.api_version, r.format_version
    );
    let _ = writeln!(out, "  scope:       {}", r.scope);
    let rule = match (&r.rule, &r.rule_check) {
        (Some(rule), Some(check)) => format!("{rule}: {check}"),
        _ => "none (no .kseal.yaml rule matches the file)".to_owned(),
    };
    let _ = writeln!(out, "  rule:        {}", printable(&rule));
    let recipients: Vec<String> = r
        .recipients
        .iter()
        .map(|fp| match r.recipient_sources.get(fp) {
            Some(from) => format!("{fp} ({from})"),
            None => fp.clone(),
        })
        .collect();
    let _ = writeln!(
        out,
        "  recipients:  {} [{}]",
        r.recipients.len(),
        printable(&recipients.join(", "))
    );
    let mut template = vec![format!(
        "type {}",
        printable(r.type_.as_deref().unwrap_or("Opaque"))
    )];
    template.push(plural(r.labels, "label"));
    template.push(plural(r.annotations, "annotation"));
    if r.immutable {
        template.push("immutable".into());
    }
    if !r.plain_items.is_empty() {
        template.push(format!(
            "plain items: {}",
            printable(&r.plain_items.join(", "))
        ));
    }
    let _ = writeln!(out, "  template:    {}", template.join(", "));
    let _ = writeln!(out, "  items:       {}", r.items.len());
    let keys: Vec<String> = r
        .items
        .iter()
        .map(|i| printable(&i.key).into_owned())
        .collect();
    let width = keys.iter().map(String::len).max().unwrap_or(0);
    for (item, key) in r.items.iter().zip(&keys) {
        let detail = match &item.problem {
            Some(p) => format!("INVALID: {}", printable(p)),
            None if item.pq_stanzas > 0 => format!(
                "age, {} (post-quantum){}, {} bytes",
                plural(item.pq_stanzas, "ML-KEM-768+X25519 recipient"),
                if item.x25519_stanzas > 0 {
                    format!(", {}", plural(item.x25519_stanzas, "X25519 recipient"))
                } else {
                    String::new()
                },
                item.age_bytes
            ),
            None => format!(
                "age, {}, {} bytes",
                plural(item.x25519_stanzas, "X25519 recipient"),
                item.age_bytes
            ),
        };
        let _ = writeln!(out, "    {key:width$}  {detail}");
    }
    out
}
