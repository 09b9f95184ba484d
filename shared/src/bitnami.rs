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
use kube::CustomResource;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::policy::SKIP_OWNER_ANNOTATION;
use crate::recipients::RecipientSet;
use crate::resource::{DROPPED_ANNOTATIONS, SealedSecretSpec, SecretTemplate, TemplateMetadata};
use crate::scope::Scope;
use crate::sealing::{SealingError, seal_items};

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
const MAX_VALUE_BASE64: usize = (crate::MAX_SECRET_BYTES + 2 + 1024 + 16).div_ceil(3) * 4;

/// A Bitnami SealedSecret, as its CRD defines it (only what unsealing reads).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    namespaced,
    status = "BitnamiStatus",
    schema = "disabled"
)]
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

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

/// Why a Bitnami key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no RSA private key found (expected PEM, or a Secret or List of Secrets with tls.key)")]
    NoKey,
    #[error("not a PEM file, nor a Kubernetes Secret or List in YAML or JSON")]
    Unreadable,
    #[error("a {0} key, not RSA: Bitnami sealed-secrets keys are RSA")]
    NotRsa(&'static str),
    #[error("the RSA key is invalid or smaller than 2048 bits")]
    Rejected,
    #[error("{0}: tls.key is not valid base64")]
    SecretData(String),
}

/// Why one Bitnami value could not be opened. Names no ciphertext or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not valid base64")]
    Base64,
    #[error("too large: a Secret holds at most 1 MiB")]
    TooLarge,
    #[error("truncated: shorter than its RSA block")]
    Truncated,
    #[error(
        "no key could decrypt it (tried {0}): wrong key, or moved from the namespace or name it was sealed for"
    )]
    NoKey(usize),
    #[error("the value's AES-GCM tag does not match: tampered or truncated")]
    Tampered,
    /// The object's budget of RSA decryptions ran out ([`Trials`]).
    #[error("the object's budget of RSA decryptions ran out")]
    OverBudget,
}

/// The RSA decryptions one object may still cost, and the key that opened the value
/// before (tried first: a Bitnami SealedSecret's items are mostly sealed with one key).
#[derive(Debug)]
pub struct Trials {
    left: usize,
    first: usize,
}

impl Trials {
    /// At most `budget` RSA decryptions.
    pub fn new(budget: usize) -> Self {
        Trials {
            left: budget,
            first: 0,
        }
    }

    /// No bound: for one value, opened on the user's own machine.
    pub fn unbounded() -> Self {
        Trials::new(usize::MAX)
    }
}

/// One Bitnami controller key.
pub struct BitnamiKey {
    key: OaepPrivateDecryptingKey,
    /// `SHA256:` of the public key (SubjectPublicKeyInfo DER), hex, first 16 digits.
    pub fingerprint: String,
    pub bits: usize,
}

impl std::fmt::Debug for BitnamiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BitnamiKey({}, {} bits)", self.fingerprint, self.bits)
    }
}

/// The Bitnami keys a migration or the drop-in mode opens values with. Every key is
/// tried for every value, as the Bitnami controller does: its format names no key.
#[derive(Debug, Default)]
pub struct BitnamiKeys(Vec<BitnamiKey>);

impl BitnamiKeys {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|k| k.fingerprint.clone()).collect()
    }

    /// Adds every RSA private key in `bytes`: PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
    /// `PRIVATE KEY`), or YAML/JSON holding Secrets (a `List` too, as `kubectl get secret
    /// -o yaml` prints them) whose `tls.key` is such a PEM. Returns how many were added;
    /// a key already present is not added twice.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Unreadable)?;
        if text.trim_start().starts_with("-----BEGIN") {
            return self.add_pem(bytes);
        }
        let (_, docs) =
            crate::manifest::parse_documents(bytes).map_err(|_| KeyError::Unreadable)?;
        let mut added = 0;
        for doc in docs {
            if doc["kind"].as_str() != Some("Secret") {
                continue;
            }
            let name = doc["metadata"]["name"].as_str().unwrap_or("(no name)");
            let Some(encoded) = doc["data"]["tls.key"].as_str() else {
                continue;
            };
            let pem = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .map_err(|_| KeyError::SecretData(crate::resource::printable(name).into()))?,
            );
            added += self.add_pem(&pem)?;
        }
        if added == 0 && self.0.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(added)
    }

    fn add_pem(&mut self, pem: &[u8]) -> Result<usize, KeyError> {
        let mut added = 0;
        for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|_| KeyError::Unreadable)?;
            let der = Zeroizing::new(der);
            let pkcs8 = match kind {
                SectionKind::RsaPrivateKey => pkcs1_to_pkcs8(&der),
                SectionKind::PrivateKey => der,
                SectionKind::EcPrivateKey => return Err(KeyError::NotRsa("EC")),
                _ => continue,
            };
            let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|_| KeyError::Rejected)?;
            let spki = AsDer::<PublicKeyX509Der>::as_der(&key.public_key())
                .map_err(|_| KeyError::Rejected)?;
            let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
            let fingerprint = format!(
                "SHA256:{}",
                digest.as_ref()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            if self.0.iter().any(|k| k.fingerprint == fingerprint) {
                continue;
            }
            let bits = key.key_size_bits();
            let key = OaepPrivateDecryptingKey::new(key).map_err(|_| KeyError::Rejected)?;
            self.0.push(BitnamiKey {
                key,
                fingerprint,
                bits,
            });
            added += 1;
        }
        if added == 0 && self.0.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(added)
    }

    /// Opens one sealed value with `label` (see [`label`]), spending `trials`.
    pub fn open(
        &self,
        label: &[u8],
        value: &str,
        trials: &mut Trials,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if value.len() > MAX_VALUE_BASE64 {
            return Err(OpenError::TooLarge);
        }
        let blob = STANDARD.decode(value).map_err(|_| OpenError::Base64)?;
        self.open_bytes(label, &blob, trials)
    }

    /// [`open`](Self::open), for a value already base64-decoded. Keys are tried from the
    /// one that opened the value before; each RSA decryption spends one of `trials`.
    pub fn open_bytes(
        &self,
        label: &[u8],
        blob: &[u8],
        trials: &mut Trials,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (len, rest) = blob.split_first_chunk::<2>().ok_or(OpenError::Truncated)?;
        let rsa_len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < rsa_len {
            return Err(OpenError::Truncated);
        }
        let (rsa, sealed) = rest.split_at(rsa_len);
        let n = self.0.len();
        for i in (0..n).map(|i| (trials.first + i) % n) {
            let key = &self.0[i];
            if key.key.key_size_bytes() != rsa_len {
                continue;
            }
            if trials.left == 0 {
                return Err(OpenError::OverBudget);
            }
            trials.left -= 1;
            let mut out = Zeroizing::new(vec![0u8; key.key.min_output_size()]);
            let Ok(session) = key
                .key
                .decrypt(&OAEP_SHA256_MGF1SHA256, rsa, &mut out, Some(label))
            else {
                continue;
            };
            let Ok(session) = <&[u8; 32]>::try_from(&session[..]) else {
                continue;
            };
            trials.first = i;
            return open_gcm(session, sealed);
        }
        Err(OpenError::NoKey(self.0.len()))
    }
}

/// AES-256-GCM open with a zero nonce and no associated data (the session key is used
/// once).
fn open_gcm(session: &[u8; 32], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = UnboundKey::new(&AES_256_GCM, session).map_err(|_| OpenError::Tampered)?;
    let key = LessSafeKey::new(key);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| OpenError::Tampered)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// PKCS#8 `PrivateKeyInfo` around a PKCS#1 `RSAPrivateKey` (aws-lc-rs reads PKCS#8).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // version 0
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
        0x00, // rsaEncryption, NULL
    ];
    let mut octets = Zeroizing::new(vec![0x04]);
    der_length(&mut octets, pkcs1.len());
    octets.extend_from_slice(pkcs1);
    let mut out = Zeroizing::new(vec![0x30]);
    der_length(&mut out, VERSION_AND_ALGORITHM.len() + octets.len());
    out.extend_from_slice(VERSION_AND_ALGORITHM);
    out.extend_from_slice(&octets);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
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

/// Why a Bitnami SealedSecret could not become a kseal one.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error(transparent)]
    Seal(#[from] SealingError),
    #[error("{0}: the kseal controller would refuse it")]
    Policy(#[from] crate::policy::PolicyError),
}

/// The [`HAND_OVER`] annotations `kseal migrate --hand-over` added to `ss`'s template,
/// as its [`HAND_OVER_ANNOTATION`] names them (other names there are ignored).
pub fn handed_over(ss: &SealedSecret) -> Vec<&'static str> {
    let named = ss
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HAND_OVER_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default();
    HAND_OVER
        .iter()
        .copied()
        .filter(|k| named.split(',').any(|n| n.trim() == *k))
        .collect()
}

/// The kseal SealedSecret equivalent to `ss`: the same name, namespace, scope, item keys
/// and template (labels, annotations, type, immutable, plain data), every item sealed to
/// `recipients`. The outer labels and annotations are kept, except Bitnami's scope
/// annotations. A template that skips owner references gets kseal's annotation for it
/// too. The plaintext lives only in wiped buffers while this runs.
pub fn migrate(
    ss: &SealedSecret,
    keys: &BitnamiKeys,
    recipients: &RecipientSet,
) -> Result<crate::resource::SealedSecret, MigrateError> {
    let mut unsealed = unseal(ss, keys)?;
    let mut out = shell(ss, unsealed.template.clone(), unsealed.skip_owner)?;
    out.spec.recipients = recipients.fingerprints();
    let result = seal_items(
        &mut out,
        unsealed.items.iter().map(|(k, v)| (k.as_str(), &v[..])),
        recipients,
    );
    unsealed.items.clear();
    result?;
    Ok(out)
}

/// The kseal SealedSecret `ss` becomes, without its items: what [`migrate`] fills in, and
/// what `kseal migrate --via-controller` sends the controller (with the Bitnami values
/// as its items) for it to fill in.
pub fn shell(
    ss: &SealedSecret,
    mut template: SecretTemplate,
    skip_owner: bool,
) -> Result<crate::resource::SealedSecret, MigrateError> {
    // What a hand-over added was for the move only: the kseal SealedSecret owns its
    // Secret as the Bitnami one did before.
    let added = handed_over(ss);
    let skip_owner = skip_owner && !added.contains(&SKIP_OWNER_REFERENCES_ANNOTATION);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations.retain(|k, _| !added.contains(&k.as_str()));
    }
    if template
        .metadata
        .as_ref()
        .is_some_and(|m| m.labels.is_empty() && m.annotations.is_empty())
    {
        template.metadata = None;
    }
    if skip_owner {
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.annotations
            .insert(SKIP_OWNER_ANNOTATION.into(), "true".into());
    }
    let mut metadata = ObjectMeta {
        name: ss.metadata.name.clone(),
        namespace: ss.metadata.namespace.clone(),
        labels: ss.metadata.labels.clone().filter(|l| !l.is_empty()),
        annotations: ss.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.retain(|k, _| {
            k != CLUSTER_WIDE_ANNOTATION
                && k != NAMESPACE_WIDE_ANNOTATION
                && k != HAND_OVER_ANNOTATION
                && !DROPPED_ANNOTATIONS.contains(&k.as_str())
        });
    }
    metadata.annotations = metadata.annotations.filter(|a| !a.is_empty());
    let out = crate::resource::SealedSecret {
        metadata,
        spec: SealedSecretSpec {
            format_version: crate::envelope::VERSION,
            scope: scope_of(&ss.metadata),
            recipients: Vec::new(),
            encrypted_data: BTreeMap::new(),
            template: (template != SecretTemplate::default()).then_some(template),
        },
        status: None,
    };
    crate::policy::check_template(out.spec.template.as_ref(), &[])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
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
