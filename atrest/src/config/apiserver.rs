//! kube-apiserver's own validation of an `EncryptionConfiguration`
//! (`validation_encryption.go`) and its choice of providers for `secrets`
//! (`transformerFromOverrides`): a file these rules refuse is one the apiserver would not
//! start with.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use zeroize::Zeroizing;

use super::*;

const NON_REST_RESOURCES: [&str; 3] = [
    "apiserveripinfo",
    "serviceipallocations",
    "servicenodeportallocations",
];

impl Linter<'_> {
    /// kube-apiserver's validation; returns each element's provider (`None` when invalid).
    pub(super) fn validate(
        &mut self,
        config: &EncryptionConfiguration,
    ) -> Vec<Vec<Option<Provider>>> {
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
}
