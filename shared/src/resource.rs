//! The `SealedSecret` custom resource (`kseal.dev/v1alpha1`), and `SealedSecretRequest`,
//! through which `kseal verify` and `kseal reseal` reach the controller with nothing but
//! the Kubernetes API.
//!
//! `manifests/crd.yaml` is generated from these types by `kseal-controller crd`, and a
//! test fails when the committed file drifts from them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::object::namespaced_object;
use crate::recipients::Fingerprint;
use crate::scope::Scope;

/// Annotations kubectl and other tools write that can carry a plaintext copy of the
/// Secret; they never reach the template.
pub const DROPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
];

/// Annotation on an input Secret that picks the scope when `--scope` is not given.
pub const SCOPE_ANNOTATION: &str = "kseal.dev/scope";
/// Bitnami's scope annotations, which kubeseal reads from an input Secret (and the
/// Bitnami controller from a SealedSecret): `"true"` makes it cluster-wide or
/// namespace-wide. kseal reads them from an input Secret too.
pub const BITNAMI_CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
pub const BITNAMI_NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";

namespaced_object! {
    /// A Secret sealed to one or more public keys, safe to commit: the controller
    /// unseals it into the Secret of the same name.
    pub struct SealedSecret {
        group: "kseal.dev",
        version: "v1alpha1",
        kind: "SealedSecret",
        plural: "sealedsecrets",
        spec: SealedSecretSpec,
        status: SealedSecretStatus,
    }
}

/// A Secret sealed to one or more public keys, safe to commit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// Envelope version the items were sealed with. A hint for tools without a key; the
    /// envelope inside each item is authoritative.
    // Kubernetes knows int32 and int64, not schemars' uint32 (kubectl warned about it).
    #[serde(default = "default_format_version")]
    #[schemars(extend("format" = "int64"))]
    pub format_version: u32,
    /// The scope the items were sealed for. The controller requires each item's
    /// authenticated scope to equal this one and to match where the object is.
    #[serde(default)]
    pub scope: Scope,
    /// Fingerprints of the recipients every item is sealed to (sorted). A hint for key
    /// selection, rotation reports and offline validation.
    #[serde(default)]
    pub recipients: Vec<Fingerprint>,
    /// Item key → `base64(age file)`; one ciphertext per item.
    pub encrypted_data: BTreeMap<String, String>,
    /// What the resulting Secret looks like, apart from its sealed items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

fn default_format_version() -> u32 {
    crate::envelope::VERSION
}

/// Metadata, type and plain data for the Secret the controller writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Plain, non-secret items copied into the Secret as they are (UTF-8 strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Labels and annotations for the resulting Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, following the kstatus conventions so Flux and Argo CD read health.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

namespaced_object! {
    /// A question for the controller about one SealedSecret, answered in its status.
    pub struct SealedSecretRequest {
        group: "kseal.dev",
        version: "v1alpha1",
        kind: "SealedSecretRequest",
        plural: "sealedsecretrequests",
        spec: SealedSecretRequestSpec,
        status: SealedSecretRequestStatus,
    }
}

/// A question for the controller about one SealedSecret: can this cluster unseal it
/// (`Verify`), re-encrypt it to the newest key (`Reseal`), or convert a Bitnami one with
/// the Bitnami keys it imported (`Migrate`)? The controller answers in
/// the status, with no plaintext, the same as its `/v1/verify` and `/v1/reseal`. It works
/// wherever the Kubernetes API does: no port-forward, no service proxy to a pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretRequestSpec {
    pub operation: RequestOperation,
    /// Where the SealedSecret lives (or will): every item's envelope is checked against it.
    pub target: RequestTarget,
    /// The SealedSecret's spec, as in its file.
    pub sealed_secret: SealedSecretSpec,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RequestOperation {
    Verify,
    Reseal,
    /// `sealedSecret.encryptedData` holds Bitnami sealed-secrets values sealed for the
    /// target and `sealedSecret.scope`: the controller opens them with the Bitnami keys
    /// it imported and answers with them sealed to its newest key.
    Migrate,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RequestTarget {
    pub namespace: String,
    pub name: String,
}

/// The controller's answer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretRequestStatus {
    /// `Succeeded` or `Failed`; absent until answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why it failed (the same reasons as a SealedSecret's Ready condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Verify: how many items this cluster can open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub items: Option<u32>,
    /// Reseal: the spec re-encrypted to the newest key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resealed: Option<SealedSecretSpec>,
}

impl SealedSecretRequest {
    /// The SealedSecret the request is about, at its target.
    pub fn sealed_secret(&self) -> SealedSecret {
        let mut ss = SealedSecret::new(&self.spec.target.name, self.spec.sealed_secret.clone());
        ss.metadata.namespace = Some(self.spec.target.namespace.clone());
        ss
    }
}

/// `s` safe to print on a terminal: control characters (escape sequences, carriage
/// returns) and the bidirectional-override characters are shown as `\u{…}` escapes, so a
/// file under review cannot erase, fake or reorder the lines a reviewer reads.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if unsafe_char(c) {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

impl SealedSecret {
    /// `namespace/name` (or the name, or `(no name)`), safe to print ([`printable`]).
    pub fn location(&self) -> String {
        let location = match (&self.metadata.namespace, &self.metadata.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => "(no name)".into(),
        };
        printable(&location).into_owned()
    }
}
