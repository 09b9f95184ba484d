//! `EncryptionConfiguration` (apiserver.config.k8s.io/v1): its schema, strict parsing,
//! and `kseal at-rest lint`, which runs kube-apiserver's validation ([`apiserver`]) and
//! then kseal's policy ([`policy`]) over a parsed file.
//!
//! The rules follow kube-apiserver's own validation (`validation_encryption.go`) and
//! loader (`encryptionconfig/config.go`); `docs/at-rest.md` lists each finding. Key
//! material is parsed to check its size and then dropped: no message carries it.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

mod apiserver;
mod policy;

pub use apiserver::secrets_coverage;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub resources: Vec<ResourceConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfiguration {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub providers: Vec<ProviderConfiguration>,
}

/// One element of `providers`: exactly one of these must be set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfiguration {
    pub identity: Option<IdentityConfiguration>,
    pub aescbc: Option<KeysConfiguration>,
    pub aesgcm: Option<KeysConfiguration>,
    pub secretbox: Option<KeysConfiguration>,
    pub kms: Option<KmsConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfiguration {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfiguration {
    #[serde(default)]
    pub keys: Vec<Key>,
}

/// A local key. `secret` is zeroized on drop and never printed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub secret: String,
}

impl Drop for Key {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KmsConfiguration {
    pub api_version: Option<String>,
    pub name: Option<String>,
    pub endpoint: Option<String>,
    pub timeout: Option<String>,
    pub cachesize: Option<i64>,
}

/// Which provider an element holds, with what the rating and the stored prefix need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Provider {
    Identity,
    Aescbc { keys: Vec<String> },
    Aesgcm { keys: Vec<String> },
    Secretbox { keys: Vec<String> },
    Kms { version: KmsVersion, name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsVersion {
    V1,
    V2,
}

impl Provider {
    /// The prefix kube-apiserver puts before every value this provider writes
    /// (`k8s:enc:aescbc:v1:`, `k8s:enc:kms:v2:<name>:`), empty for identity.
    pub fn prefix(&self) -> String {
        match self {
            Provider::Identity => String::new(),
            Provider::Aescbc { .. } => "k8s:enc:aescbc:v1:".into(),
            Provider::Aesgcm { .. } => "k8s:enc:aesgcm:v1:".into(),
            Provider::Secretbox { .. } => "k8s:enc:secretbox:v1:".into(),
            Provider::Kms { version, name } => match version {
                KmsVersion::V1 => format!("k8s:enc:kms:v1:{name}:"),
                KmsVersion::V2 => format!("k8s:enc:kms:v2:{name}:"),
            },
        }
    }

    /// Key names in order (the first one encrypts); empty for identity and kms.
    pub fn key_names(&self) -> &[String] {
        match self {
            Provider::Aescbc { keys }
            | Provider::Aesgcm { keys }
            | Provider::Secretbox { keys } => keys,
            Provider::Identity | Provider::Kms { .. } => &[],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Identity => f.write_str("identity"),
            Provider::Aescbc { keys } => write_keys(f, "aescbc", keys),
            Provider::Aesgcm { keys } => write_keys(f, "aesgcm", keys),
            Provider::Secretbox { keys } => write_keys(f, "secretbox", keys),
            Provider::Kms { version, name } => {
                let v = if *version == KmsVersion::V1 { 1 } else { 2 };
                write!(f, "kms v{v} \"{name}\"")
            }
        }
    }
}

fn write_keys(f: &mut fmt::Formatter<'_>, kind: &str, keys: &[String]) -> fmt::Result {
    match keys.first() {
        Some(first) => write!(f, "{kind} (key \"{first}\")"),
        None => f.write_str(kind),
    }
}

/// How bad a finding is. `Error` means kube-apiserver would refuse the file; `Fail`
/// means Secrets would be stored in plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Note,
    Warn,
    Fail,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Severity::Info => "info",
            Severity::Note => "note",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
            Severity::Error => "error",
        })
    }
}

/// One thing `lint` has to say, at a field path such as `resources[0].providers[1]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable identifier (`identity-first`, `key-size`, …), listed in `docs/at-rest.md`.
    pub code: &'static str,
    pub path: String,
    pub message: String,
}

/// What happens to Secrets under this file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretsCoverage {
    /// The `resources` entries whose providers apply to Secrets, in the order they are tried.
    pub entries: Vec<usize>,
    /// The pattern that matched: `secrets`, `*.` or `*.*`; `None` when nothing covers them.
    pub matched_by: Option<String>,
    /// Every provider tried on read, in order; the first one writes.
    pub providers: Vec<Provider>,
}

impl SecretsCoverage {
    pub fn writer(&self) -> Option<&Provider> {
        self.providers.first()
    }
}

/// The result of linting one file.
#[derive(Clone, Debug, Serialize)]
pub struct Lint {
    /// `sha256:<hex>` of the file's bytes: what the apiserver's
    /// `apiserver_encryption_config_controller_last_config_info{hash}` shows.
    pub sha256: String,
    /// `None` when the file could not be parsed at all.
    pub secrets: Option<SecretsCoverage>,
    pub findings: Vec<Finding>,
}

impl Lint {
    /// The worst severity found, `Info` when there is nothing to say.
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    /// True when the apiserver would refuse the file or store Secrets in plaintext.
    pub fn failed(&self) -> bool {
        self.worst() >= Severity::Fail
    }
}

/// `sha256:<hex>` of some bytes, as kube-apiserver prints a config hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = String::from("sha256:");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses and lints one `EncryptionConfiguration` (YAML or JSON).
pub fn lint(bytes: &[u8]) -> Lint {
    let sha256 = sha256_hex(bytes);
    let mut findings = Vec::new();
    let config = match parse(bytes) {
        Ok(c) => c,
        Err(f) => {
            findings.push(f);
            return Lint {
                sha256,
                secrets: None,
                findings,
            };
        }
    };
    let mut out = Linter {
        findings: &mut findings,
    };
    let providers = out.validate(&config);
    let secrets = out.policy(&config, &providers);
    Lint {
        sha256,
        secrets: Some(secrets),
        findings,
    }
}

/// Strict decoding, as kube-apiserver's: unknown fields are errors. A message never quotes
/// a value from the file (it might be key material).
pub fn parse(bytes: &[u8]) -> Result<EncryptionConfiguration, Finding> {
    let text = std::str::from_utf8(bytes).map_err(|_| Finding {
        severity: Severity::Error,
        code: "parse",
        path: String::new(),
        message: "not UTF-8 text".into(),
    })?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| parse_error(&e.to_string(), "JSON"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| parse_error(&e.to_string(), "YAML"))?
    };
    if !value.is_object() {
        return Err(Finding {
            severity: Severity::Error,
            code: "parse",
            path: String::new(),
            message: "not an EncryptionConfiguration: the document is not a mapping".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Finding {
            severity: Severity::Error,
            code: "strict-decoding",
            path: if path == "." { String::new() } else { path },
            message: format!("strict decoding error: {}", redact(&e.inner().to_string())),
        }
    })
}

fn parse_error(message: &str, what: &str) -> Finding {
    // Syntax errors from both parsers name a line and column, never whole values.
    let first = message.lines().next().unwrap_or(message);
    Finding {
        severity: Severity::Error,
        code: "parse",
        path: String::new(),
        message: format!("not valid {what}: {}", redact(first)),
    }
}

/// Serde's type errors quote string values (`invalid type: string "…"`): drop them.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start + "string".len()]);
        let after = &rest[start + "string \"".len()..];
        match after.find('"') {
            Some(end) => rest = &after[end + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Collects the findings of one file; [`apiserver`] and [`policy`] add to it.
struct Linter<'a> {
    findings: &'a mut Vec<Finding>,
}

impl Linter<'_> {
    fn push(&mut self, severity: Severity, code: &'static str, path: String, message: String) {
        self.findings.push(Finding {
            severity,
            code,
            path,
            message,
        });
    }

    fn error(&mut self, code: &'static str, path: String, message: impl Into<String>) {
        self.push(Severity::Error, code, path, message.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_quoted_strings() {
        assert_eq!(
            redact(r#"invalid type: string "c2VjcmV0", expected a sequence"#),
            "invalid type: string, expected a sequence"
        );
    }
}
