//! `kseal verify`: asks the cluster's controller, which holds the private keys, whether
//! it can unseal each SealedSecret of the files given ([`crate::ask`]). Plaintext never
//! leaves the controller.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::manifest::parse_documents;
use kseal_core::resource::RequestOperation;
use serde::Serialize;

use crate::ask::{Answer, Asker, Refusal};
use crate::cli::{InspectFormat, ServiceArgs};
use crate::cluster::Cluster;
use crate::io::{outln, read_file};

/// The controller `args` name: `--controller-url`, else SealedSecretRequests through the
/// kubeconfig.
pub(crate) fn asker(args: &ServiceArgs) -> Result<Asker> {
    if let Some(url) = &args.ask.controller_url {
        return Ok(Asker::Http(url.clone()));
    }
    let cluster = Cluster::connect(&args.cluster)?.ok_or_else(|| {
        anyhow!("no kubeconfig: pass --kubeconfig (or set $KUBECONFIG), or --controller-url")
    })?;
    let timeout = Duration::from_secs(args.ask.timeout);
    Ok(Asker::api(cluster, args.ask.namespace.clone(), timeout))
}

/// One object asked about, for `-o json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answered {
    file: String,
    /// 1-based, when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    /// `namespace/name`.
    object: String,
    /// Whether the cluster can unseal it.
    ok: bool,
    /// How many items it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<Refusal>,
}

pub fn verify(args: &ServiceArgs) -> Result<()> {
    let controller = asker(args)?;
    let json = args.output == InspectFormat::Json;
    let mut answered = Vec::new();
    for (path, named) in super::named_files(&args.files)? {
        let input = read_file(&path)?;
        let (_, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
        if named && !super::holds_sealed_secrets(&docs) {
            bail!("{}: holds no kseal SealedSecret", input.name);
        }
        for found in super::sealed_secrets(&input.name, &docs, true) {
            let label = found.label;
            let sealed = found.sealed.with_context(|| label.clone())?;
            let mut entry = Answered {
                file: input.name.clone(),
                document: found.document,
                object: sealed.location(),
                ok: true,
                items: None,
                refused: None,
            };
            match controller.ask_blocking(RequestOperation::Verify, &sealed)? {
                Ok(Answer::Resealed(_)) => {
                    bail!("{label}: the controller answered a verification with a reseal")
                }
                Ok(Answer::Verified { items }) => {
                    entry.items = Some(items);
                    if !json {
                        outln!(
                            "{label}: {}: the cluster can unseal it ({})",
                            entry.object,
                            super::plural(items as usize, "item")
                        )?;
                    }
                }
                Err(why) => {
                    if !json {
                        eprintln!(
                            "{label}: {}: cannot be unsealed by this cluster: {why}",
                            entry.object
                        );
                    }
                    entry.ok = false;
                    entry.refused = Some(why);
                }
            }
            answered.push(entry);
        }
    }
    let failed = answered.iter().filter(|o| !o.ok).count();
    if json {
        super::print_report(&answered, failed)?;
    }
    if failed > 0 {
        bail!(
            "{} of {} failed verification",
            failed,
            super::plural(answered.len(), "SealedSecret")
        );
    }
    Ok(())
}
