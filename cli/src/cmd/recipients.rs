//! `kseal recipients` (kubeseal's `--fetch-cert`): the cluster's recipients document, as
//! the controller publishes it and `--cert` reads it; or, for recipients named with
//! `-r`/`-R`/`--cert`, their fingerprints (what `kseal inspect` and `spec.recipients`
//! show).

use anyhow::{Context, Result};
use kseal_core::recipients::{PublishedRecipient, RECIPIENTS_DOCUMENT_FORMAT, RecipientsDocument};

use crate::cli::{InspectFormat, RecipientsArgs};
use crate::io::out;

pub fn run(args: &RecipientsArgs) -> Result<()> {
    let flags = &args.recipients;
    let mut published: Vec<PublishedRecipient> = Vec::new();
    if flags.is_empty() || flags.with_cluster {
        // As published: every key, newest first, with its creation time.
        let cluster = flags.connect()?;
        let (document, _) = cluster.configmap_with_annotations()?;
        document
            .keys()
            .context("the cluster's recipients document")?;
        published.extend(document.recipients);
    }
    for recipient in flags.named()? {
        if published
            .iter()
            .all(|p| p.recipient != recipient.to_string())
        {
            published.push(PublishedRecipient {
                recipient: recipient.to_string(),
                fingerprint: recipient.fingerprint(),
                created: None,
            });
        }
    }
    let format = args.output.unwrap_or(if flags.is_empty() {
        InspectFormat::Json
    } else {
        InspectFormat::Text
    });
    match format {
        InspectFormat::Json => {
            let document = RecipientsDocument {
                format: RECIPIENTS_DOCUMENT_FORMAT.to_owned(),
                recipients: published,
            };
            out!("{}\n", serde_json::to_string_pretty(&document)?)
        }
        InspectFormat::Text => {
            let mut text = String::new();
            for p in &published {
                text.push_str(&format!("{}  {}", p.fingerprint, p.recipient));
                if let Some(created) = &p.created {
                    text.push_str(&format!("  created {created}"));
                }
                text.push('\n');
            }
            out!("{text}")
        }
    }
}
