//! `kseal validate FILE…`: checks for CI. Offline unless `--cluster` asks for the
//! cluster's keys. Prints one line per object on stdout when it passes, notices and one
//! line per problem on stderr, and exits non-zero if any failed.

use anyhow::{Result, bail};
use kseal_core::audit::{ExpectedRecipients, RecipientsCheck, check_recipients, problems};
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::recipients::Recipient;
use kseal_core::resource::printable;

use super::{doc_label, plural};
use crate::cli::ValidateArgs;
use crate::io::{outln, read_input};

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
    Ok(Some(ExpectedRecipients { named, cluster }))
}

pub fn run(args: &ValidateArgs) -> Result<()> {
    let expected = expected(args)?;
    let mut failed = 0usize;
    let mut checked = 0usize;
    for path in &args.files {
        let input = match read_input(Some(path), "reading a SealedSecret from stdin") {
            Ok(input) => input,
            Err(e) => {
                eprintln!("{e:#}");
                failed += 1;
                continue;
            }
        };
        let docs = match parse_documents(&input.bytes) {
            Ok((_, docs)) => docs,
            Err(e) => {
                eprintln!("{}: {e}", input.name);
                failed += 1;
                continue;
            }
        };
        for (i, doc) in docs.iter().enumerate() {
            checked += 1;
            let label = doc_label(&input.name, i, docs.len());
            let sealed = match sealed_from_value(doc) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{label}: {e}");
                    failed += 1;
                    continue;
                }
            };
            let who = sealed.location();
            let mut found = problems(&sealed);
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
            if found.is_empty() {
                outln!(
                    "{label}: {who}: ok ({}, {} scope, {})",
                    plural(sealed.spec.encrypted_data.len(), "item"),
                    sealed.spec.scope,
                    plural(sealed.spec.recipients.len(), "recipient")
                )?;
                if let Some(notice) = notice {
                    eprintln!("notice: {label}: {who}: {}", printable(&notice));
                }
            } else {
                failed += 1;
                for p in found {
                    eprintln!("{label}: {who}: {}", printable(&p));
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {checked} SealedSecrets failed validation");
    }
    Ok(())
}
