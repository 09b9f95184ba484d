//! Cross-crate test support for kseal: the frozen decrypt-side test vectors of the
//! sealing format (`tests/vectors/`), their schema and the generator that wrote them,
//! and the real control plane the tests run against ([`cluster`]).

pub mod bitnami;
pub mod cluster;
pub mod crafted;
pub mod custody;
pub mod etcd;
pub mod faults;
pub mod flux;
mod health;
pub mod ports;
pub mod sealing;
pub mod stored_values;

use serde::{Deserialize, Serialize};

/// One frozen vector: an identity, a sealed value, where it is opened, and the outcome.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vector {
    pub description: String,
    /// The age identity file used to open it.
    pub identity: String,
    /// Where the value is opened: scope, namespace, name and item key.
    pub opened_at: OpenedAt,
    /// `spec.encryptedData[item]` as it would appear in a SealedSecret.
    pub sealed: String,
    pub expect: Expect,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenedAt {
    pub scope: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub item: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Expect {
    /// The value, base64-encoded.
    Value(String),
    /// The error: its condition reason and its message.
    Error { reason: String, message: String },
}

/// Where the vectors live.
pub fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}
