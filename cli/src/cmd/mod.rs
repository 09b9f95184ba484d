//! One module per subcommand. Each takes its parsed arguments and does its I/O through
//! `crate::io`, so tests drive them through the real binary.

pub mod atrest;
pub mod inspect;
pub mod keygen;
pub mod merge;
pub mod migrate;
pub mod recipients;
pub mod rewrite;
pub mod seal;
pub mod services;
pub mod status;
pub mod unseal;
pub mod validate;

use std::path::Path;

use crate::cli::OutputFormat;

/// The output format: the flag, else what `-w`'s extension says, else YAML.
pub fn output_format(flag: Option<OutputFormat>, dest: Option<&Path>) -> OutputFormat {
    flag.unwrap_or_else(
        || match dest.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some("json") => OutputFormat::Json,
            _ => OutputFormat::Yaml,
        },
    )
}

/// How error messages name a document: the input's name, and "document N" when the
/// input held several.
pub fn doc_label(input: &str, index: usize, total: usize) -> String {
    if total > 1 {
        format!("{input}: document {}", index + 1)
    } else {
        input.to_owned()
    }
}

/// "1 item", "2 items".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
