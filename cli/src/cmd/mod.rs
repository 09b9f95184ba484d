//! One module per subcommand. Each takes its parsed arguments and does its I/O through
//! `crate::io`, so tests drive them through the real binary.

pub mod atrest;
pub mod audit;
mod found;
pub mod inspect;
pub mod keygen;
pub mod merge;
pub mod migrate;
pub mod plan;
pub mod recipients;
pub mod reseal;
pub mod scan;
pub mod seal;
pub mod status;
pub mod unseal;
pub mod validate;
pub mod verify;

use std::path::Path;

use anyhow::Result;

use crate::cli::OutputFormat;

pub use found::{
    BITNAMI_NOTICE, DocumentKind, Found, Hidden, doc_label, doc_number, document_kind,
    holds_sealed_secrets, manifest_files, named_files, sealed_secrets,
};

/// The output format: the flag, else what `-w`'s extension says, else YAML.
pub fn output_format(flag: Option<OutputFormat>, dest: Option<&Path>) -> OutputFormat {
    flag.unwrap_or_else(
        || match dest.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some("json") => OutputFormat::Json,
            _ => OutputFormat::Yaml,
        },
    )
}

/// The `-o json` report of a command that checks objects one by one (validate, verify,
/// reseal): how many, how many failed, and each one.
pub fn print_report<T: serde::Serialize>(objects: &[T], failed: usize) -> Result<()> {
    crate::io::outln!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "checked": objects.len(),
            "failed": failed,
            "objects": objects,
        }))?
    )
}

/// "1 item", "2 items".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
