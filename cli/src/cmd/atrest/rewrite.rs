//! `kseal at-rest rewrite`: after encryption at rest is turned on or a key rotated, the
//! Secrets stored before stay as they were in etcd until something writes them again.
//! This writes each one back through the API unchanged, as
//! `kubectl get secrets -A -o json | kubectl replace -f -` does, but in pages, a few at
//! a time, resumable from a checkpoint file, and keeping concurrent edits.
//!
//! Each Secret is read with a GET and written back with a PUT of exactly the bytes read,
//! its `resourceVersion` included: the apiserver stores it again under its first
//! provider when what etcd held was plaintext or under another provider or key (stale),
//! and writes nothing when it was already current (the `resourceVersion` comes back
//! unchanged). A Secret edited between the GET and the PUT gets a conflict; it is read
//! again and that version written, so the edit stays. One that conflicts every time is
//! being edited continuously: it is left to its editor (each of whose writes stores it
//! again under the current provider) and named in the report, and the run goes on.
//! Values are never parsed, printed or logged; the buffers holding them are wiped.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use http::header::CONTENT_TYPE;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::cli::RewriteArgs;
use crate::cluster::Cluster;
use crate::io::outln;

/// What the rewrite did, also the checkpoint's content.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Progress {
    /// What is being rewritten: a checkpoint from another selection is refused.
    selection: String,
    /// The last `namespace/name` of the last page finished: every Secret up to it (in the
    /// API's order, which is etcd's key order) has been written.
    done_through: Option<String>,
    /// Stored again by the apiserver (a new resourceVersion).
    rewritten: u64,
    /// Written back, and the apiserver found nothing to change.
    already_current: u64,
    /// Deleted between the listing and the write.
    gone: u64,
    /// Edited by someone else between the read and the write, and read again.
    conflicts_retried: u64,
    /// Edited by someone else on every try (`namespace/name`): left to its editor.
    #[serde(default)]
    contended: Vec<String>,
}

enum Outcome {
    Rewritten,
    AlreadyCurrent,
    Gone,
    /// A conflict on every one of [`MAX_CONFLICTS`] tries.
    Contended,
}

/// A conflict means another writer got there first; this many in a row on one Secret
/// mean it is edited continuously, and the rewrite leaves it rather than spin.
const MAX_CONFLICTS: u64 = 20;

pub fn run(args: &RewriteArgs) -> Result<ExitCode> {
    let cluster = Cluster::require(&args.cluster)?;
    let selection = match (&args.from_scan, &args.namespace) {
        (Some(scan), ns) => format!(
            "from scan {}{}",
            scan.display(),
            ns.as_deref()
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_default()
        ),
        (None, Some(ns)) => format!("namespace {ns}"),
        (None, None) => "all namespaces".to_owned(),
    };
    let mut progress = match &args.checkpoint {
        Some(path) if path.exists() && !args.dry_run => {
            let read = read_checkpoint(path)?;
            if read.selection != selection {
                bail!(
                    "--checkpoint {}: records a rewrite of {}, not of {selection}: remove it to start over",
                    path.display(),
                    read.selection
                );
            }
            read
        }
        _ => Progress {
            selection,
            ..Progress::default()
        },
    };
    let named = match &args.from_scan {
        Some(path) => Some(names_from_scan(path, args.namespace.as_deref())?),
        None => None,
    };
    let client = cluster.client();
    let bar = indicatif::ProgressBar::new(named.as_ref().map_or(0, |n| n.len() as u64));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} rewriting Secrets {pos}/{len} [{elapsed_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let listing = named.is_none();
    let mut would = Vec::new();
    let result = cluster.runtime.block_on(async {
        let mut pages = Pages::new(&client, args, named);
        let mut seen = 0;
        while let Some(page) = pages.next().await? {
            seen += page.len() as u64;
            if listing {
                bar.set_length(seen + pages.remaining.unwrap_or(0));
            }
            let todo: Vec<&String> = page
                .iter()
                .filter(|key| progress.done_through.as_ref().is_none_or(|d| *key > d))
                .collect();
            bar.inc((page.len() - todo.len()) as u64);
            if args.dry_run {
                would.extend(todo.iter().map(|k| (*k).clone()));
                bar.inc(todo.len() as u64);
                continue;
            }
            let outcomes: Vec<(&String, Outcome, u64)> = futures::stream::iter(todo)
                .map(|key| {
                    let (bar, client) = (&bar, &client);
                    async move {
                        let (outcome, conflicts) = rewrite_one(client, key).await?;
                        bar.inc(1);
                        anyhow::Ok((key, outcome, conflicts))
                    }
                })
                .buffer_unordered(usize::from(args.concurrency))
                .try_collect()
                .await?;
            for (key, outcome, conflicts) in outcomes {
                progress.conflicts_retried += conflicts;
                match outcome {
                    Outcome::Rewritten => progress.rewritten += 1,
                    Outcome::AlreadyCurrent => progress.already_current += 1,
                    Outcome::Gone => progress.gone += 1,
                    Outcome::Contended => progress.contended.push(key.clone()),
                }
            }
            if let Some(last) = page.last() {
                progress.done_through = Some(last.clone());
            }
            if let Some(path) = &args.checkpoint {
                crate::io::replace_file(path, &serde_json::to_vec_pretty(&progress)?)
                    .with_context(|| format!("--checkpoint {}", path.display()))?;
            }
        }
        anyhow::Ok(())
    });
    bar.finish_and_clear();
    result?;

    if args.dry_run {
        if args.json {
            outln!(
                "{}",
                serde_json::json!({ "dry_run": true, "would_rewrite": would })
            )?;
        } else {
            for key in &would {
                outln!("would rewrite {key}")?;
            }
            outln!(
                "dry run: {} to write back (nothing written)",
                crate::cmd::plural(would.len(), "Secret")
            )?;
        }
    } else if args.json {
        outln!("{}", serde_json::to_string_pretty(&progress)?)?;
    } else {
        outln!(
            "rewrote {}: {} stored again, {} already current, {} deleted meanwhile, {} conflicts retried",
            progress.selection,
            progress.rewritten,
            progress.already_current,
            progress.gone,
            progress.conflicts_retried
        )?;
        for key in &progress.contended {
            outln!(
                "left {key}: edited by someone else on each of {MAX_CONFLICTS} tries (each of their writes stores it again)"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_checkpoint(path: &Path) -> Result<Progress> {
    let input = crate::io::read_file(path)?;
    serde_json::from_slice(&input.bytes).with_context(|| {
        format!(
            "--checkpoint {}: not a kseal rewrite checkpoint",
            input.name
        )
    })
}

/// The `plaintext` and `stale` names of a scan report, checked and sorted in the API's
/// order.
fn names_from_scan(path: &Path, namespace: Option<&str>) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Report {
        plaintext: Vec<String>,
        #[serde(default)]
        stale: Vec<String>,
    }
    let input = crate::io::read_file(path)?;
    let report: Report = serde_json::from_slice(&input.bytes).with_context(|| {
        format!(
            "--from-scan {}: not a `kseal at-rest scan-etcd --json` report",
            input.name
        )
    })?;
    let mut names = Vec::new();
    for key in report.plaintext.into_iter().chain(report.stale) {
        let valid = key
            .split_once('/')
            .is_some_and(|(ns, name)| dns_name(ns, 63) && dns_name(name, 253));
        if !valid {
            bail!(
                "--from-scan {}: {:?} is not a Secret's namespace/name",
                input.name,
                key.chars().take(80).collect::<String>()
            );
        }
        if namespace.is_none_or(|n| key.split_once('/').is_some_and(|(ns, _)| ns == n)) {
            names.push(key);
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// A Kubernetes object name as the API accepts it: lowercase letters, digits, `-` and
/// `.`, starting and ending with a letter or digit. (Anything else never reaches a URL.)
fn dns_name(s: &str, max: usize) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= max
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Pages of `namespace/name` keys: chunks of the scan report's names, or the API's list
/// (metadata only, so no value is read twice), restarted past the last page when its
/// continue token expires.
struct Pages<'a> {
    client: &'a kube::Client,
    namespace: Option<&'a str>,
    page_size: u32,
    named: Option<std::vec::IntoIter<String>>,
    token: Option<String>,
    last: Option<String>,
    finished: bool,
    /// What the API says is left after this page, when it says.
    remaining: Option<u64>,
}

impl<'a> Pages<'a> {
    fn new(client: &'a kube::Client, args: &'a RewriteArgs, named: Option<Vec<String>>) -> Self {
        Pages {
            client,
            namespace: args.namespace.as_deref(),
            page_size: args.page_size,
            named: named.map(Vec::into_iter),
            token: None,
            last: None,
            finished: false,
            remaining: None,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<String>>> {
        if let Some(named) = &mut self.named {
            let page: Vec<String> = named.take(self.page_size as usize).collect();
            return Ok((!page.is_empty()).then_some(page));
        }
        if self.finished {
            return Ok(None);
        }
        let api: Api<Secret> = match self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut params = ListParams::default().limit(self.page_size);
        if let Some(token) = &self.token {
            params = params.continue_token(token);
        }
        let list = match api.list_metadata(&params).await {
            Err(kube::Error::Api(s)) if s.code == 410 => {
                // The continue token outlived etcd's compaction: list again from the
                // start, skipping what earlier pages covered.
                self.token = None;
                api.list_metadata(&ListParams::default().limit(self.page_size))
                    .await
                    .map_err(|e| api_error("listing Secrets", &e))?
            }
            other => other.map_err(|e| api_error("listing Secrets", &e))?,
        };
        self.token = list.metadata.continue_.clone().filter(|t| !t.is_empty());
        self.finished = self.token.is_none();
        self.remaining = list
            .metadata
            .remaining_item_count
            .and_then(|n| u64::try_from(n).ok());
        let page: Vec<String> = list
            .items
            .iter()
            .filter_map(|s| {
                Some(format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref()?,
                    s.metadata.name.as_deref()?
                ))
            })
            .filter(|key| self.last.as_ref().is_none_or(|last| key > last))
            .collect();
        if let Some(last) = page.last() {
            self.last = Some(last.clone());
        }
        Ok(Some(page))
    }
}

/// Reads one Secret and writes it back unchanged; on a conflict, reads it again.
/// Returns what happened and how many conflicts it took.
async fn rewrite_one(client: &kube::Client, key: &str) -> Result<(Outcome, u64)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        resource_version: String,
    }
    #[derive(Deserialize)]
    struct Object {
        metadata: Meta,
    }
    let (namespace, name) = key.split_once('/').context("a key without a namespace")?;
    let url = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
    let mut conflicts = 0;
    loop {
        let get = http::Request::get(&url).body(Vec::new())?;
        let body = match client.request_text(get).await {
            Ok(text) => Zeroizing::new(text),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok((Outcome::Gone, conflicts)),
            Err(e) => return Err(api_error(&format!("reading Secret {key}"), &e)),
        };
        let before: Object = serde_json::from_str(&body).with_context(|| {
            format!("Secret {key}: the apiserver's answer has no resourceVersion")
        })?;
        let put = http::Request::put(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())?;
        match client.request_text(put).await {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let after: Object = serde_json::from_str(&text).with_context(|| {
                    format!("Secret {key}: the apiserver's answer has no resourceVersion")
                })?;
                let outcome = if after.metadata.resource_version == before.metadata.resource_version
                {
                    Outcome::AlreadyCurrent
                } else {
                    Outcome::Rewritten
                };
                return Ok((outcome, conflicts));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                conflicts += 1;
                if conflicts == MAX_CONFLICTS {
                    return Ok((Outcome::Contended, conflicts));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok((Outcome::Gone, conflicts)),
            Err(e) => return Err(api_error(&format!("writing Secret {key} back"), &e)),
        }
    }
}

/// One line: what was being done and what the apiserver said (its message names the
/// object and the verb, never a value).
fn api_error(doing: &str, e: &kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "{doing}: forbidden ({}): rewrite needs list, get and update on secrets",
            s.message
        ),
        kube::Error::Api(s) => anyhow::anyhow!("{doing}: {} ({})", s.message, s.code),
        other => anyhow::anyhow!("{doing}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_kubernetes_names() {
        assert!(dns_name("shop", 63));
        assert!(dns_name("db-password.v2", 253));
        for bad in ["", "Shop", "-a", "a-", "a/b", "a?b", "..", "a b", "%2e%2e"] {
            assert!(!dns_name(bad, 253), "{bad:?}");
        }
        assert!(!dns_name(&"a".repeat(64), 63));
    }
}
