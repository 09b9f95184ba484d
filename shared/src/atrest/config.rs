//! `EncryptionConfiguration` (apiserver.config.k8s.io/v1): strict parsing, the
//! kube-apiserver validation rules, and the policy findings of `kseal at-rest lint`.
//!
//! The rules follow kube-apiserver's own validation (`validation_encryption.go`) and
//! loader (`encryptionconfig/config.go`); `docs/at-rest.md` lists each finding. Key
//! material is parsed to check its size and then dropped: no message carries it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

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

struct Linter<'a> {
    findings: &'a mut Vec<Finding>,
}

const NON_REST_RESOURCES: [&str; 3] = [
    "apiserveripinfo",
    "serviceipallocations",
    "servicenodeportallocations",
];

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

    /// kube-apiserver's validation; returns each element's provider (`None` when invalid).
    fn validate(&mut self, config: &EncryptionConfiguration) -> Vec<Vec<Option<Provider>>> {
        match (config.api_version.as_deref(), config.kind.as_deref()) {
            (Some("apiserver.config.k8s.io/v1"), Some("EncryptionConfiguration")) => {}
            (Some("v1"), Some("EncryptionConfig")) => self.push(
                Severity::Note,
                "legacy-kind",
                "kind".into(),
                "legacy kind EncryptionConfig (v1) is still accepted; prefer apiVersion \
                 apiserver.config.k8s.io/v1, kind EncryptionConfiguration"
                    .into(),
            ),
            (api, kind) => self.error(
                "kind",
                "apiVersion".into(),
                format!(
                    "expected apiVersion apiserver.config.k8s.io/v1 and kind \
                     EncryptionConfiguration, found {} {}",
                    api.unwrap_or("(none)"),
                    kind.unwrap_or("(none)")
                ),
            ),
        }
        if config.resources.is_empty() {
            self.error("required", "resources".into(), "resources: Required value");
        }
        let mut kms_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut all = Vec::new();
        for (i, entry) in config.resources.iter().enumerate() {
            let base = format!("resources[{i}]");
            self.validate_resources(&base, &entry.resources);
            if entry.providers.is_empty() {
                self.error(
                    "required",
                    format!("{base}.providers"),
                    "providers: Required value",
                );
            }
            let mut providers = Vec::new();
            for (j, p) in entry.providers.iter().enumerate() {
                let path = format!("{base}.providers[{j}]");
                let provider = self.validate_provider(&path, p);
                if let Some(Provider::Kms { name, .. }) = &provider {
                    kms_names.entry(name.clone()).or_default().push(path);
                }
                providers.push(provider);
            }
            all.push(providers);
        }
        for (name, paths) in kms_names {
            if paths.len() > 1 {
                let v2 = all.iter().flatten().flatten().any(|p| {
                    matches!(p, Provider::Kms { version: KmsVersion::V2, name: n } if *n == name)
                });
                let (severity, why) = if v2 {
                    (Severity::Error, "KMS v2 provider names must be unique")
                } else {
                    (
                        Severity::Warn,
                        "KMS names must be unique when --encryption-provider-config-automatic-reload is on",
                    )
                };
                self.push(
                    severity,
                    "kms-name-unique",
                    paths[1].clone(),
                    format!(
                        "duplicate KMS provider name \"{name}\" (also at {}): {why}",
                        paths[0]
                    ),
                );
            }
        }
        self.check_masking(config);
        all
    }

    fn validate_resources(&mut self, base: &str, resources: &[String]) {
        if resources.is_empty() {
            self.error(
                "required",
                format!("{base}.resources"),
                "resources: Required value",
            );
        }
        let mut seen = HashSet::new();
        for (k, r) in resources.iter().enumerate() {
            let path = format!("{base}.resources[{k}]");
            if *r != r.to_lowercase() {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\": resource name must be lowercase"),
                );
            }
            if r == "*" {
                self.error("resource", path.clone(), "\"*\" is not allowed: use \"*.\" for the core group or \"*.*\" for all resources");
            }
            if NON_REST_RESOURCES.contains(&r.as_str()) {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\": resources which do not have REST API/s cannot be encrypted"),
                );
            }
            let (resource, group) = split_group_resource(r);
            if group == "events.k8s.io" {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\": group events.k8s.io is not supported: use \"events\""),
                );
            }
            if group == "extensions" {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\": group extensions is not supported"),
                );
            }
            if resource != "*" && group == "*" {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\": encrypting the same resource across groups is not supported"),
                );
            }
            if !seen.insert(r.as_str()) {
                self.error(
                    "resource",
                    path.clone(),
                    format!("\"{r}\" is listed twice in the same entry"),
                );
            }
        }
        // Overlap inside one list: a specific resource with its group's wildcard, or
        // anything with *.*.
        for (k, r) in resources.iter().enumerate() {
            let (resource, group) = split_group_resource(r);
            if r == "*.*" {
                continue;
            }
            let overlaps_with = if resources.iter().any(|o| o == "*.*") {
                Some("*.*".to_owned())
            } else if resource != "*" {
                let wildcard = format!("*.{group}");
                resources.contains(&wildcard).then_some(wildcard)
            } else {
                None
            };
            if let Some(w) = overlaps_with {
                self.error(
                    "resource",
                    format!("{base}.resources[{k}]"),
                    format!("\"{r}\" overlaps with \"{w}\" in the same entry"),
                );
            }
        }
    }

    fn validate_provider(&mut self, path: &str, p: &ProviderConfiguration) -> Option<Provider> {
        let set = [
            p.identity.is_some(),
            p.aescbc.is_some(),
            p.aesgcm.is_some(),
            p.secretbox.is_some(),
            p.kms.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set == 0 {
            self.error("provider", path.into(), "provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity");
            return None;
        }
        if set > 1 {
            self.error("provider", path.into(), "more than one provider specified in a single element, should split into different list elements");
            return None;
        }
        if p.identity.is_some() {
            return Some(Provider::Identity);
        }
        if let Some(c) = &p.aescbc {
            let keys =
                self.validate_keys(&format!("{path}.aescbc"), &c.keys, &[16, 24, 32], "aescbc");
            return keys.map(|keys| Provider::Aescbc { keys });
        }
        if let Some(c) = &p.aesgcm {
            let keys =
                self.validate_keys(&format!("{path}.aesgcm"), &c.keys, &[16, 24, 32], "aesgcm");
            return keys.map(|keys| Provider::Aesgcm { keys });
        }
        if let Some(c) = &p.secretbox {
            let keys =
                self.validate_keys(&format!("{path}.secretbox"), &c.keys, &[32], "secretbox");
            return keys.map(|keys| Provider::Secretbox { keys });
        }
        p.kms
            .as_ref()
            .and_then(|k| self.validate_kms(&format!("{path}.kms"), k))
    }

    fn validate_keys(
        &mut self,
        path: &str,
        keys: &[Key],
        sizes: &[usize],
        kind: &str,
    ) -> Option<Vec<String>> {
        if keys.is_empty() {
            self.error(
                "required",
                format!("{path}.keys"),
                "keys: Required value: at least one key is required",
            );
            return None;
        }
        let mut ok = true;
        let mut names = HashSet::new();
        for (k, key) in keys.iter().enumerate() {
            let kp = format!("{path}.keys[{k}]");
            if key.name.is_empty() {
                self.error("required", format!("{kp}.name"), "name: Required value");
                ok = false;
            } else {
                if key.name.contains(':') {
                    self.push(Severity::Warn, "key-name-colon", format!("{kp}.name"), format!(
                        "key name \"{}\" contains ':': it becomes part of the stored prefix \"<name>:\", which makes prefixes ambiguous",
                        key.name
                    ));
                }
                if !names.insert(key.name.as_str()) {
                    self.push(Severity::Warn, "key-name-duplicate", format!("{kp}.name"), format!(
                        "key name \"{}\" is used twice in this provider: stored values name their key, so reads try the wrong key first and an at-rest scan cannot tell them apart",
                        key.name
                    ));
                }
            }
            if key.secret.is_empty() {
                self.error("required", format!("{kp}.secret"), "secret: Required value");
                ok = false;
                continue;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(key.secret.as_bytes())
                .map(Zeroizing::new);
            match decoded.as_ref() {
                Err(_) => {
                    self.error(
                        "key-base64",
                        format!("{kp}.secret"),
                        "secret is not valid base64 (standard encoding, with padding)",
                    );
                    ok = false;
                }
                Ok(bytes) if !sizes.contains(&bytes.len()) => {
                    let want = match sizes {
                        [one] => format!("{one}"),
                        _ => "16, 24 or 32".into(),
                    };
                    self.error(
                        "key-size",
                        format!("{kp}.secret"),
                        format!(
                            "{kind} key is {} bytes after base64 decoding: it must be {want} bytes",
                            bytes.len()
                        ),
                    );
                    ok = false;
                }
                Ok(bytes) if kind == "aescbc" && bytes.len() != 32 => {
                    self.push(Severity::Warn, "key-size", format!("{kp}.secret"), format!(
                        "aescbc key is {} bytes: kube-apiserver accepts it, but the documented size is 32 bytes (head -c 32 /dev/urandom | base64)",
                        bytes.len()
                    ));
                }
                Ok(_) => {}
            }
        }
        ok.then(|| keys.iter().map(|k| k.name.clone()).collect())
    }

    fn validate_kms(&mut self, path: &str, kms: &KmsConfiguration) -> Option<Provider> {
        let mut ok = true;
        let version = match kms.api_version.as_deref() {
            None => {
                self.push(Severity::Warn, "kms-no-apiversion", format!("{path}.apiVersion"),
                    "kms without apiVersion means v1, which is deprecated and needs --feature-gates=KMSv1=true from Kubernetes 1.29 on: set apiVersion: v2".into());
                KmsVersion::V1
            }
            Some("v1") => KmsVersion::V1,
            Some("v2") => KmsVersion::V2,
            Some(other) => {
                self.error("kms-apiversion", format!("{path}.apiVersion"), format!("unsupported apiVersion \"{other}\" for KMS provider, only v1 and v2 are supported"));
                ok = false;
                KmsVersion::V1
            }
        };
        let name = kms.name.clone().unwrap_or_default();
        if name.is_empty() {
            self.error("required", format!("{path}.name"), "name: Required value");
            ok = false;
        } else if version == KmsVersion::V2 && name.contains(':') {
            self.error(
                "kms-name",
                format!("{path}.name"),
                format!("invalid KMS provider name {name}, must not contain ':'"),
            );
            ok = false;
        }
        match kms.endpoint.as_deref() {
            None | Some("") => {
                self.error(
                    "required",
                    format!("{path}.endpoint"),
                    "endpoint: Required value",
                );
                ok = false;
            }
            Some(e) => {
                match url::Url::parse(e) {
                    Ok(u) if u.scheme() == "unix" => {}
                    Ok(u) => {
                        self.error("kms-endpoint", format!("{path}.endpoint"), format!("unsupported scheme \"{}\" for KMS provider, only unix is supported", u.scheme()));
                        ok = false;
                    }
                    Err(e) => {
                        self.error(
                            "kms-endpoint",
                            format!("{path}.endpoint"),
                            format!("invalid endpoint for kms provider: {e}"),
                        );
                        ok = false;
                    }
                }
            }
        }
        if let Some(t) = &kms.timeout {
            match parse_go_duration(t) {
                Some(d) if d > 0.0 => {}
                Some(_) => {
                    self.error(
                        "kms-timeout",
                        format!("{path}.timeout"),
                        "timeout should be a positive value",
                    );
                    ok = false;
                }
                None => {
                    self.error(
                        "kms-timeout",
                        format!("{path}.timeout"),
                        format!("\"{t}\" is not a duration (e.g. 3s)"),
                    );
                    ok = false;
                }
            }
        }
        match (version, kms.cachesize) {
            (KmsVersion::V2, Some(_)) => {
                self.error(
                    "kms-cachesize",
                    format!("{path}.cachesize"),
                    "cachesize is not supported in v2",
                );
                ok = false;
            }
            (KmsVersion::V1, Some(0)) => {
                self.error(
                    "kms-cachesize",
                    format!("{path}.cachesize"),
                    "cachesize should be a positive value, or negative to disable caching",
                );
                ok = false;
            }
            _ => {}
        }
        ok.then_some(Provider::Kms { version, name })
    }

    /// A later entry naming a resource that an earlier `*.<group>` or `*.*` already covers
    /// makes the apiserver refuse the file.
    fn check_masking(&mut self, config: &EncryptionConfiguration) {
        let mut earlier: Vec<&str> = Vec::new();
        for (i, entry) in config.resources.iter().enumerate() {
            for (k, r) in entry.resources.iter().enumerate() {
                let (resource, group) = split_group_resource(r);
                let any_group = "*.*";
                let same_group = format!("*.{group}");
                let masked = if earlier.contains(&any_group) {
                    Some(any_group.to_owned())
                } else if resource != "*" && earlier.contains(&same_group.as_str()) {
                    Some(same_group)
                } else {
                    None
                };
                if let Some(m) = masked {
                    self.error(
                        "masked",
                        format!("resources[{i}].resources[{k}]"),
                        format!("resource \"{r}\" is masked by earlier rule \"{m}\""),
                    );
                }
            }
            earlier.extend(entry.resources.iter().map(String::as_str));
        }
    }

    /// What happens to Secrets, and how good it is.
    fn policy(
        &mut self,
        config: &EncryptionConfiguration,
        providers: &[Vec<Option<Provider>>],
    ) -> SecretsCoverage {
        let coverage = secrets_coverage(config, providers);
        let first_invalid = coverage
            .entries
            .first()
            .and_then(|i| providers.get(*i))
            .is_some_and(|p| p.first().is_some_and(Option::is_none));
        if first_invalid {
            // The errors above already say why; the apiserver would not start.
            return coverage;
        }
        let Some(writer) = coverage.writer() else {
            self.push(
                Severity::Fail,
                "secrets-not-covered",
                "resources".into(),
                "no entry covers secrets (neither \"secrets\", \"*.\" nor \"*.*\"): Secrets are stored in plaintext".into(),
            );
            return coverage;
        };
        let entry = coverage.entries[0];
        let at = format!("resources[{entry}].providers[0]");
        match writer {
            Provider::Identity => self.push(
                Severity::Fail,
                "identity-first",
                at.clone(),
                format!(
                    "secrets are covered by resources[{entry}] (\"{}\"), whose first provider is identity: new Secrets are written in plaintext",
                    coverage.matched_by.as_deref().unwrap_or_default()
                ),
            ),
            Provider::Kms { version: KmsVersion::V2, .. } => self.push(
                Severity::Info,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: envelope encryption with a key held outside the control plane (recommended)"),
            ),
            Provider::Kms { version: KmsVersion::V1, .. } => self.push(
                Severity::Warn,
                "provider-deprecated",
                at.clone(),
                format!("Secrets are written with {writer}: KMS v1 is deprecated since 1.28 and disabled by default since 1.29 (needs --feature-gates=KMSv1=true); migrate to apiVersion: v2"),
            ),
            Provider::Secretbox { .. } => self.push(
                Severity::Warn,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: strong, but the key sits on every control-plane host; prefer kms v2"),
            ),
            Provider::Aesgcm { .. } => self.push(
                Severity::Warn,
                "provider-rating",
                at.clone(),
                format!("Secrets are written with {writer}: the key must be rotated every 200,000 writes (random 96-bit nonces), so only with automated rotation; prefer kms v2"),
            ),
            Provider::Aescbc { .. } => self.push(
                Severity::Warn,
                "provider-weak",
                at.clone(),
                format!("Secrets are written with {writer}, which the Kubernetes docs rate weak (no MAC, padding-oracle attacks; CIS still lists it): prefer kms v2 or secretbox"),
            ),
        }
        if let Some(pos) = coverage
            .providers
            .iter()
            .skip(1)
            .position(|p| *p == Provider::Identity)
        {
            let _ = pos;
            self.push(
                Severity::Note,
                "identity-fallback",
                format!("resources[{entry}].providers"),
                "identity is listed after the encrypting provider: Secrets still stored in plaintext remain readable. Rewrite every Secret (kseal at-rest scan-etcd shows which), then remove it".into(),
            );
        }
        if coverage.entries.len() > 1 {
            self.push(
                Severity::Note,
                "secrets-several-entries",
                "resources".into(),
                format!(
                    "secrets are named by {} entries; their providers are tried in entry order and the first entry's first provider writes",
                    coverage.entries.len()
                ),
            );
        }
        coverage
    }
}

/// Which entries apply to core `secrets`: exact name first, then `*.`, then `*.*`
/// (kube-apiserver's `transformerFromOverrides`). Entries naming the same pattern add
/// their providers in order.
pub fn secrets_coverage(
    config: &EncryptionConfiguration,
    providers: &[Vec<Option<Provider>>],
) -> SecretsCoverage {
    for pattern in ["secrets", "*.", "*.*"] {
        let entries: Vec<usize> = config
            .resources
            .iter()
            .enumerate()
            .filter(|(_, e)| e.resources.iter().any(|r| r == pattern))
            .map(|(i, _)| i)
            .collect();
        if !entries.is_empty() {
            let providers = entries
                .iter()
                .flat_map(|i| providers.get(*i).into_iter().flatten().flatten().cloned())
                .collect();
            return SecretsCoverage {
                entries,
                matched_by: Some(pattern.into()),
                providers,
            };
        }
    }
    SecretsCoverage {
        entries: Vec::new(),
        matched_by: None,
        providers: Vec::new(),
    }
}

/// `secrets` → ("secrets", ""), `deployments.apps` → ("deployments", "apps"),
/// `*.` → ("*", ""), `*.*` → ("*", "*").
fn split_group_resource(r: &str) -> (&str, &str) {
    r.split_once('.').unwrap_or((r, ""))
}

/// Go's `time.ParseDuration` for the units a config uses; seconds.
fn parse_go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
        any = true;
    }
    any.then_some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("3s"), Some(3.0));
        assert_eq!(parse_go_duration("1m30s"), Some(90.0));
        assert_eq!(parse_go_duration("-1s"), Some(-1.0));
        assert_eq!(parse_go_duration("0"), Some(0.0));
        assert_eq!(parse_go_duration("3"), None);
        assert_eq!(parse_go_duration("3 seconds"), None);
    }

    #[test]
    fn redacts_quoted_strings() {
        assert_eq!(
            redact(r#"invalid type: string "c2VjcmV0", expected a sequence"#),
            "invalid type: string, expected a sequence"
        );
    }
}
