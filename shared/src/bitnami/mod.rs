//! Bitnami sealed-secrets (`bitnami.com/v1alpha1`), read so that its users can move to
//! kseal: its private keys, its ciphertexts and its SealedSecret objects.
//!
//! The format, per item (read from Bitnami's `pkg/crypto`; frozen vectors made by the real
//! kubeseal are in `tests/vectors/bitnami/`): `base64(BE u16 len(rsa) ‖ rsa ‖ gcm)`
//! where `rsa` is RSA-OAEP-SHA256 (MGF1-SHA256) of a 32-byte session key under the
//! controller's key with the scope as the OAEP label (`namespace/name`, `namespace` or
//! empty), and `gcm` is AES-256-GCM of the value under that session key with a zero nonce
//! and no associated data. The scope comes from the SealedSecret's outer annotations, the
//! namespace and name from its own metadata, as the Bitnami controller reads them.
//!
//! RSA-OAEP decryption is aws-lc-rs's (constant time); the AES-GCM open is ring's.
//! Session keys and values live in [`Zeroizing`] buffers.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::policy::SKIP_OWNER_ANNOTATION;
use crate::recipients::RecipientSet;
use crate::resource::{DROPPED_ANNOTATIONS, SealedSecretSpec, SecretTemplate, TemplateMetadata};
use crate::scope::Scope;
use crate::sealing::{SealingError, seal_items};

mod keys;
mod migrate;

pub use keys::{BitnamiKey, BitnamiKeys, KeyError, OpenError, Trials};
pub use migrate::{MigrateError, handed_over, migrate, shell};

pub const API_VERSION: &str = "bitnami.com/v1alpha1";
/// On a SealedSecret (and, from kubeseal, its template): the scope is cluster-wide.
pub use crate::resource::BITNAMI_CLUSTER_WIDE_ANNOTATION as CLUSTER_WIDE_ANNOTATION;
/// On a SealedSecret (and its template): the scope is namespace-wide.
pub use crate::resource::BITNAMI_NAMESPACE_WIDE_ANNOTATION as NAMESPACE_WIDE_ANNOTATION;
/// In a template: the Secret gets no owner reference.
pub const SKIP_OWNER_REFERENCES_ANNOTATION: &str =
    "sealedsecrets.bitnami.com/skip-set-owner-references";
/// In a template: Bitnami's controller takes an existing Secret over; left on a Secret
/// (by a hand-over), kseal's controller takes it over too.
pub use crate::contract::BITNAMI_MANAGED_ANNOTATION as MANAGED_ANNOTATION;
/// The template annotations a hand-over sets to `"true"`: the Bitnami controller then
/// leaves the Secret with no owner (so pruning the Bitnami SealedSecret does not delete
/// it) and marked for take-over (so both controllers may write it).
pub const HAND_OVER: &[&str] = &[MANAGED_ANNOTATION, SKIP_OWNER_REFERENCES_ANNOTATION];
/// On a Bitnami SealedSecret (not its template): the [`HAND_OVER`] annotations
/// `kseal migrate --hand-over` added to its template, comma-separated, which converting
/// it removes again.
pub const HAND_OVER_ANNOTATION: &str = "kseal.dev/hand-over";

/// On the controller's recipients ConfigMap, for `kseal status`: how many Bitnami keys the
/// controller imported, from which namespace, and whether it unseals Bitnami
/// SealedSecrets itself (`"true"`/`"false"`).
pub const IMPORTED_KEYS_ANNOTATION: &str = "kseal.dev/bitnami-keys";
pub const IMPORTED_FROM_ANNOTATION: &str = "kseal.dev/bitnami-keys-namespace";
pub const DROP_IN_ANNOTATION: &str = "kseal.dev/bitnami-drop-in";

/// The label on the Bitnami controller's key Secrets (`active` for keys in use).
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

/// A Bitnami sealed value is at most this long (base64): a Secret holds at most 1 MiB,
/// plus the RSA block and the tag. Longer inputs are refused before any decoding.
const MAX_VALUE_BASE64: usize = (crate::limits::MAX_SECRET_BYTES + 2 + 1024 + 16).div_ceil(3) * 4;

crate::object::namespaced_object! {
    /// A Bitnami SealedSecret, as its CRD defines it (only what unsealing reads).
    pub struct SealedSecret {
        group: "bitnami.com",
        version: "v1alpha1",
        kind: "SealedSecret",
        plural: "sealedsecrets",
        spec: BitnamiSpec,
        status: BitnamiStatus,
    }
}

/// What a Bitnami SealedSecret holds: its sealed values and the Secret's template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encrypted_data: BTreeMap<String, String>,
    /// The deprecated v1 format: one blob holding the whole Secret as JSON (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default)]
    pub template: BitnamiTemplate,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
pub struct BitnamiTemplate {
    #[serde(default)]
    pub metadata: Option<ObjectMeta>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Go `text/template` sources rendered by the Bitnami controller; a value without
    /// `{{` renders as itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// The Bitnami controller's status: a `Synced` condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

/// The scope a Bitnami SealedSecret was sealed for, from its outer annotations (what the
/// Bitnami controller reads; cluster-wide wins when both are set).
pub fn scope_of(meta: &ObjectMeta) -> Scope {
    let set = |key: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .is_some_and(|v| v == "true")
    };
    if set(CLUSTER_WIDE_ANNOTATION) {
        Scope::ClusterWide
    } else if set(NAMESPACE_WIDE_ANNOTATION) {
        Scope::NamespaceWide
    } else {
        Scope::Strict
    }
}

/// The OAEP label of a scope: `namespace/name`, `namespace`, or empty.
pub fn label(scope: Scope, namespace: &str, name: &str) -> Vec<u8> {
    match scope {
        Scope::Strict => format!("{namespace}/{name}").into_bytes(),
        Scope::NamespaceWide => namespace.as_bytes().to_vec(),
        Scope::ClusterWide => Vec::new(),
    }
}

/// Why a Bitnami SealedSecret could not be unsealed or migrated.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("metadata.name is missing")]
    NoName,
    #[error("metadata.namespace is missing, and the {0} scope binds it")]
    NoNamespace(Scope),
    #[error("item {item:?}: {source}")]
    Item {
        item: String,
        #[source]
        source: OpenError,
    },
    #[error("spec.data (the deprecated v1 format): {0}")]
    V1(String),
    #[error("both spec.encryptedData and the deprecated spec.data are set")]
    BothFormats,
    #[error(
        "template.data[{0:?}] is a Go template, which kseal does not render: rewrite it as a sealed item"
    )]
    GoTemplate(String),
    #[error("no encryptedData items")]
    Empty,
    /// Refused whole: too many items, or too many RSA decryptions.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

impl UnsealError {
    /// The condition reason, as kseal's own SealedSecrets report it.
    pub fn reason(&self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            UnsealError::Item {
                source: OpenError::NoKey(_),
                ..
            } => Reason::NoMatchingKey,
            UnsealError::Item { .. } | UnsealError::V1(_) => Reason::DecryptionFailed,
            UnsealError::Limit(_) => Reason::TooMuchWork,
            _ => Reason::InvalidSealedSecret,
        }
    }
}

/// A Bitnami SealedSecret opened: its items, and the Secret it describes apart from them.
pub struct Unsealed {
    pub items: BTreeMap<String, Zeroizing<Vec<u8>>>,
    /// Labels, annotations, type, immutable and plain data, as the Bitnami controller
    /// would write them.
    pub template: SecretTemplate,
    /// The template asks for no owner reference.
    pub skip_owner: bool,
}

/// The OAEP label `ss`'s values were sealed with, from where it is and its scope.
pub fn label_of(ss: &SealedSecret) -> Result<Vec<u8>, UnsealError> {
    let name = ss.metadata.name.as_deref().ok_or(UnsealError::NoName)?;
    let scope = scope_of(&ss.metadata);
    let namespace = ss.metadata.namespace.as_deref().unwrap_or_default();
    if scope.binds_namespace() && namespace.is_empty() {
        return Err(UnsealError::NoNamespace(scope));
    }
    Ok(label(scope, namespace, name))
}

/// The Secret `ss` describes apart from its sealed items (no key needed): the template's
/// labels, annotations (without kubectl's last-applied-configuration), type, immutable,
/// and its plain data. Whether it skips the owner reference. Go templates are refused.
pub fn template_of(ss: &SealedSecret) -> Result<(SecretTemplate, bool), UnsealError> {
    let template = &ss.spec.template;
    let mut data = BTreeMap::new();
    for (key, source) in &template.data {
        if source.contains("{{") {
            return Err(UnsealError::GoTemplate(
                crate::resource::printable(key).into_owned(),
            ));
        }
        data.insert(key.clone(), source.clone());
    }
    let meta = template.metadata.clone().unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    let annotations: BTreeMap<String, String> = meta
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    let skip_owner = annotations
        .get(SKIP_OWNER_REFERENCES_ANNOTATION)
        .is_some_and(|v| v == "true");
    let metadata = (!labels.is_empty() || !annotations.is_empty()).then_some(TemplateMetadata {
        labels,
        annotations,
    });
    let template = SecretTemplate {
        metadata,
        type_: template.type_.clone().filter(|t| !t.is_empty()),
        immutable: template.immutable,
        data,
    };
    Ok((template, skip_owner))
}

/// Opens every item of `ss` (and the deprecated v1 blob) with `keys`, checking the scope
/// the same way the Bitnami controller does: by the OAEP label.
pub fn unseal(ss: &SealedSecret, keys: &BitnamiKeys) -> Result<Unsealed, UnsealError> {
    let label = label_of(ss)?;
    let (template, skip_owner) = template_of(ss)?;
    let mut items = match &ss.spec.data {
        Some(_) if !ss.spec.encrypted_data.is_empty() => return Err(UnsealError::BothFormats),
        Some(v1) => open_v1(keys, &label, v1)?,
        None => open_items(keys, &label, &ss.spec.encrypted_data)?,
    };
    // A template item replaces a sealed item of the same key, as in Bitnami.
    items.retain(|k, _| !template.data.contains_key(k));
    if items.is_empty() {
        return Err(UnsealError::Empty);
    }
    Ok(Unsealed {
        items,
        template,
        skip_owner,
    })
}

/// Opens Bitnami values sealed with `label`: at most [`MAX_ITEMS`] of them, with at most
/// [`bitnami_trials`] RSA decryptions in all (the Bitnami format names no key, so each
/// value may need every key tried; a hostile object would ask for items × keys).
///
/// [`MAX_ITEMS`]: crate::limits::MAX_ITEMS
/// [`bitnami_trials`]: crate::limits::bitnami_trials
pub fn open_items(
    keys: &BitnamiKeys,
    label: &[u8],
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, UnsealError> {
    use crate::limits::{LimitError, bitnami_trials, check_items};
    check_items(values.len())?;
    let budget = bitnami_trials(keys.len());
    let mut trials = Trials::new(budget);
    let mut items = BTreeMap::new();
    for (item, value) in values {
        let plain = keys
            .open(label, value, &mut trials)
            .map_err(|source| match source {
                OpenError::OverBudget => {
                    UnsealError::Limit(LimitError::TooManyBitnamiTrials(budget))
                }
                source => UnsealError::Item {
                    item: crate::resource::printable(item).into_owned(),
                    source,
                },
            })?;
        items.insert(item.clone(), plain);
    }
    Ok(items)
}

/// The v1 format: the whole Secret as JSON, sealed as one value.
fn open_v1(
    keys: &BitnamiKeys,
    label: &[u8],
    v1: &str,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, UnsealError> {
    let blob = STANDARD
        .decode(v1)
        .map_err(|_| UnsealError::V1(OpenError::Base64.to_string()))?;
    let json = keys
        .open_bytes(label, &blob, &mut Trials::new(keys.len()))
        .map_err(|e| UnsealError::V1(e.to_string()))?;
    let mut secret: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|_| UnsealError::V1("the opened value is not a Secret in JSON".into()))?;
    let mut items = BTreeMap::new();
    if let Some(data) = secret["data"].as_object() {
        for (k, v) in data {
            let bytes = STANDARD
                .decode(v.as_str().unwrap_or_default())
                .map_err(|_| UnsealError::V1(format!("data[{k:?}] is not base64")))?;
            items.insert(k.clone(), Zeroizing::new(bytes));
        }
    }
    if let Some(data) = secret["stringData"].as_object() {
        for (k, v) in data {
            let value = v.as_str().unwrap_or_default().as_bytes().to_vec();
            items.insert(k.clone(), Zeroizing::new(value));
        }
    }
    crate::manifest::scrub(&mut secret);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::keys::der_length;
    use super::*;

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_length(&mut v, 5);
        der_length(&mut v, 200);
        der_length(&mut v, 2350);
        assert_eq!(v, [5, 0x81, 200, 0x82, 0x09, 0x2e]);
    }

    #[test]
    fn labels_and_scopes() {
        assert_eq!(label(Scope::Strict, "ns", "a"), b"ns/a");
        assert_eq!(label(Scope::NamespaceWide, "ns", "a"), b"ns");
        assert!(label(Scope::ClusterWide, "ns", "a").is_empty());
        let mut meta = ObjectMeta::default();
        assert_eq!(scope_of(&meta), Scope::Strict);
        meta.annotations = Some(
            [
                (NAMESPACE_WIDE_ANNOTATION.to_owned(), "true".to_owned()),
                (CLUSTER_WIDE_ANNOTATION.to_owned(), "true".to_owned()),
            ]
            .into(),
        );
        assert_eq!(scope_of(&meta), Scope::ClusterWide);
    }

    #[test]
    fn hostile_values_fail_before_any_key() {
        let keys = BitnamiKeys::default();
        let open = |value: &str| keys.open(b"", value, &mut Trials::unbounded());
        assert_eq!(open("!!"), Err(OpenError::Base64));
        assert_eq!(open("AA=="), Err(OpenError::Truncated));
        assert_eq!(open("AgA="), Err(OpenError::Truncated));
        let huge = "A".repeat(MAX_VALUE_BASE64 + 4);
        assert_eq!(open(&huge), Err(OpenError::TooLarge));
    }

    #[test]
    fn keys_from_garbage_are_refused_in_one_line() {
        let mut keys = BitnamiKeys::default();
        assert_eq!(keys.add(b"hello: world\n"), Err(KeyError::NoKey));
        assert_eq!(
            keys.add(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
            Err(KeyError::Rejected)
        );
    }

    fn bitnami(outer: serde_json::Value, template: serde_json::Value) -> SealedSecret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "shop", "annotations": outer},
            "spec": {"encryptedData": {}, "template": {"metadata": {"annotations": template}}},
        }))
        .unwrap()
    }

    #[test]
    fn converting_undoes_what_a_hand_over_added_and_nothing_else() {
        let handed = bitnami(
            serde_json::json!({
                HAND_OVER_ANNOTATION: format!("{MANAGED_ANNOTATION},{SKIP_OWNER_REFERENCES_ANNOTATION},example.com/not-ours"),
                "team": "a",
            }),
            serde_json::json!({
                MANAGED_ANNOTATION: "true",
                SKIP_OWNER_REFERENCES_ANNOTATION: "true",
                "example.com/kept": "yes",
            }),
        );
        assert_eq!(handed_over(&handed), HAND_OVER);
        let (template, skip) = template_of(&handed).unwrap();
        assert!(
            skip,
            "the Bitnami controller (and the drop-in) skip the owner"
        );
        let out = shell(&handed, template, skip).unwrap();
        let annotations = &out.spec.template.unwrap().metadata.unwrap().annotations;
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["example.com/kept"],
            "the kseal SealedSecret owns its Secret"
        );
        assert_eq!(
            out.metadata.annotations.unwrap().keys().collect::<Vec<_>>(),
            ["team"]
        );

        // A template that skipped owners before any hand-over keeps doing so.
        let own = bitnami(
            serde_json::json!({HAND_OVER_ANNOTATION: MANAGED_ANNOTATION}),
            serde_json::json!({MANAGED_ANNOTATION: "true", SKIP_OWNER_REFERENCES_ANNOTATION: "true"}),
        );
        let (template, skip) = template_of(&own).unwrap();
        let out = shell(&own, template, skip).unwrap();
        let annotations = &out.spec.template.unwrap().metadata.unwrap().annotations;
        assert_eq!(annotations[SKIP_OWNER_REFERENCES_ANNOTATION], "true");
        assert_eq!(annotations[SKIP_OWNER_ANNOTATION], "true");
        assert!(!annotations.contains_key(MANAGED_ANNOTATION));
    }
}
