//! `kseal at-rest scan-etcd`: what etcd holds for every Secret, read on a control-plane
//! node: plaintext, or which provider and key wrote it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kseal_atrest::config::{self, SecretsCoverage, Severity};
use kseal_atrest::stored::{self, Standing, Stored, StoredProvider};
use serde::Serialize;

use super::exit_code::{EXIT_FAILED, exit};
use crate::cli::ScanEtcdArgs;
use crate::io::{out, outln};

/// Totals and the names a rewrite must cover. Values are never kept.
#[derive(Debug, Default, Serialize)]
struct Scan {
    prefix: String,
    revision: i64,
    total: u64,
    /// Count per classification label (`plaintext-protobuf`, `aescbc:key1`, …).
    formats: BTreeMap<String, u64>,
    /// KMS v2 values per provider name and key id (the KEK id the plugin reported, which
    /// etcd holds in the clear), with the key id's `sha256:` hash as `at-rest check` and
    /// the apiserver's metrics show it. A rotation shows as a second key id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kms_v2_key_ids: BTreeMap<String, BTreeMap<String, KeyIdCount>>,
    /// With --config: count per standing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    standing: BTreeMap<String, u64>,
    /// `namespace/name` of every Secret stored in plaintext.
    plaintext: Vec<String>,
    /// With --config: Secrets on a provider or key that no longer writes.
    stale: Vec<String>,
    /// Secrets the config cannot read, or whose bytes are not a known format.
    unreadable: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct KeyIdCount {
    hash: String,
    count: u64,
}

pub(super) fn run(args: &ScanEtcdArgs) -> Result<ExitCode> {
    let coverage = match &args.config {
        None => None,
        Some(path) => {
            let input = crate::io::read_file(path)?;
            let lint = config::lint(&input.bytes);
            match (
                &lint.secrets,
                lint.findings.iter().find(|f| f.severity == Severity::Error),
            ) {
                (Some(c), None) => Some(c.clone()),
                (_, Some(f)) => bail!("--config {}: {} {}", input.name, f.path, f.message),
                (None, None) => bail!("--config {}: not an EncryptionConfiguration", input.name),
            }
        }
    };
    let tls = tls_options(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(scan_etcd(args, tls, coverage.as_ref()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        out!("{}", render_scan(&result, coverage.is_some()))?;
    }
    let failed =
        !(result.plaintext.is_empty() && result.stale.is_empty() && result.unreadable.is_empty());
    Ok(exit(if failed { EXIT_FAILED } else { 0 }))
}

fn tls_options(args: &ScanEtcdArgs) -> Result<Option<kseal_etcd::Tls>> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).with_context(|| format!("--{what} {}: cannot read", p.display()))
    };
    let https = args.endpoints.iter().any(|e| e.starts_with("https://"));
    if args.cacert.is_none() && args.cert.is_none() && !https {
        return Ok(None);
    }
    let mut tls = kseal_etcd::Tls::default();
    if let Some(ca) = &args.cacert {
        tls.ca = Some(read(ca, "cacert")?);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        tls.identity = Some((read(cert, "cert")?, read(key, "key")?));
    }
    Ok(Some(tls))
}

async fn scan_etcd(
    args: &ScanEtcdArgs,
    tls: Option<kseal_etcd::Tls>,
    coverage: Option<&SecretsCoverage>,
) -> Result<Scan> {
    let timeout = Duration::from_secs(args.timeout);
    let joined = args
        .endpoints
        .iter()
        .map(|e| kseal_etcd::endpoint_uri(e, tls.is_some()))
        .collect::<Vec<_>>()
        .join(",");
    let options = kseal_etcd::ConnectOptions {
        tls,
        connect_timeout: timeout,
    };
    let mut client = kseal_etcd::Client::connect(&args.endpoints, options)
        .await
        .with_context(|| format!("--endpoints {joined}"))?;

    let known: Vec<String> = coverage
        .map(|c| {
            c.providers
                .iter()
                .flat_map(|p| match p {
                    config::Provider::Kms { name, .. } => vec![name.clone()],
                    other => other.key_names().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default();
    let base = format!("{}/secrets/", args.prefix.trim_end_matches('/'));
    let end = kseal_etcd::prefix_end(base.as_bytes());
    let mut scan = Scan {
        prefix: base.clone(),
        ..Scan::default()
    };
    let mut from = base.clone().into_bytes();
    loop {
        let range = kseal_etcd::Range {
            key: from.clone(),
            range_end: end.clone(),
            limit: args.page_size,
            // Every page reads the same revision: a consistent snapshot.
            revision: scan.revision,
        };
        let page = tokio::time::timeout(timeout * 6, client.range(range))
            .await
            .with_context(|| format!("--endpoints {joined}: no answer in time"))?
            .with_context(|| format!("--endpoints {joined}: reading {base}"))?;
        if scan.revision == 0 {
            scan.revision = page.header.as_ref().map(|h| h.revision).unwrap_or_default();
        }
        for kv in &page.kvs {
            let name = String::from_utf8_lossy(&kv.key[base.len()..]).into_owned();
            let stored = stored::classify(&kv.value, &known);
            scan.total += 1;
            *scan.formats.entry(stored.label()).or_default() += 1;
            if let Stored::Encrypted {
                provider: StoredProvider::KmsV2,
                name,
                kms_key_id: Some(id),
                ..
            } = &stored
            {
                let entry = scan
                    .kms_v2_key_ids
                    .entry(name.clone())
                    .or_default()
                    .entry(id.clone())
                    .or_insert_with(|| KeyIdCount {
                        hash: config::sha256_hex(id.as_bytes()),
                        count: 0,
                    });
                entry.count += 1;
            }
            let standing = coverage.map(|c| stored::standing(&stored, c));
            if let Some(s) = standing {
                *scan
                    .standing
                    .entry(format!("{s:?}").to_lowercase())
                    .or_default() += 1;
            }
            match (standing, &stored) {
                (Some(Standing::Plaintext), _)
                | (None, Stored::PlaintextProtobuf | Stored::PlaintextJson) => {
                    scan.plaintext.push(name)
                }
                (Some(Standing::Stale), _) => scan.stale.push(name),
                (Some(Standing::Unreadable), _)
                | (None, Stored::Unknown)
                | (
                    None,
                    Stored::Encrypted {
                        well_formed: false, ..
                    },
                ) => scan.unreadable.push(name),
                _ => {}
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok(scan)
}

fn render_scan(s: &Scan, with_config: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scanned {} Secrets under {} at revision {}",
        s.total, s.prefix, s.revision
    );
    for (format, n) in &s.formats {
        let _ = writeln!(out, "  {n:>8}  {format}");
    }
    for (provider, ids) in &s.kms_v2_key_ids {
        for (id, c) in ids {
            let _ = writeln!(
                out,
                "  {:>8}  kms-v2:{provider} under key id {id:?} ({})",
                c.count, c.hash
            );
        }
    }
    for (label, names, why) in [
        (
            "plaintext",
            &s.plaintext,
            "stored unencrypted: rewrite them once encryption is on",
        ),
        (
            "stale",
            &s.stale,
            "on a provider or key that no longer writes: rewrite them",
        ),
        (
            "unreadable",
            &s.unreadable,
            "not readable with the config (or not a known format)",
        ),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "{label} ({}): {why}", names.len());
            for n in names {
                let _ = writeln!(out, "  {n}");
            }
        }
    }
    if !with_config {
        let _ = writeln!(
            out,
            "(pass --config with the apiservers' EncryptionConfiguration to find Secrets on old keys)"
        );
    }
    let clean = s.plaintext.is_empty() && s.stale.is_empty() && s.unreadable.is_empty();
    let _ = writeln!(out, "result: {}", if clean { "pass" } else { "fail" });
    out
}
