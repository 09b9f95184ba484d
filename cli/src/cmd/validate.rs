//! `kseal validate FILE…`: offline checks for CI. Prints one line per object on stdout
//! when it passes, one line per problem on stderr, and exits non-zero if any failed.

use anyhow::{Result, bail};
use kseal_core::audit::problems;
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::resource::printable;

use super::{doc_label, plural};
use crate::cli::ValidateArgs;
use crate::io::{outln, read_input};

pub fn run(args: &ValidateArgs) -> Result<()> {
    // Checked against recipients given as flags, or the cluster's when a kubeconfig is named.
    let expected = if args.recipients.is_empty() && args.recipients.cluster.kubeconfig.is_none() {
        None
    } else {
        Some(args.recipients.resolve()?.fingerprints())
    };
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
            let found = problems(&sealed, expected.as_deref());
            if found.is_empty() {
                outln!(
                    "{label}: {who}: ok ({}, {} scope, {})",
                    plural(sealed.spec.encrypted_data.len(), "item"),
                    sealed.spec.scope,
                    plural(sealed.spec.recipients.len(), "recipient")
                )?;
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
