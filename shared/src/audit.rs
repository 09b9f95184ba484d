//! Checks on a SealedSecret that need no key: what `kseal inspect` shows and what
//! `kseal validate` enforces in CI.
//!
//! Without a private key nobody can prove an item opens; what can be checked is that the
//! object is well formed, uses a supported format, that every item is an age file with
//! one X25519 stanza per recorded recipient, and that the recorded recipients are the
//! expected ones.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::age_header::{self, AgeHeader};
use crate::recipients::Fingerprint;
use crate::resource::SealedSecret;
use crate::scope::{Binding, validate_item_key};

/// What can be read of one sealed item without a key.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemSummary {
    pub key: String,
    /// Length of the age file in bytes (after base64 decoding).
    pub age_bytes: usize,
    /// Number of X25519 recipient stanzas.
    pub x25519_stanzas: usize,
    /// Why the item is not a well-formed sealed value, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Reads the age header of one item.
pub fn summarize_item(key: &str, sealed: &str) -> ItemSummary {
    let mut summary = ItemSummary {
        key: key.to_owned(),
        age_bytes: 0,
        x25519_stanzas: 0,
        problem: None,
    };
    let header: Result<AgeHeader, String> = STANDARD
        .decode(sealed.trim_end())
        .map_err(|_| "not valid base64".to_owned())
        .and_then(|bytes| {
            summary.age_bytes = bytes.len();
            age_header::parse(&bytes).map_err(|e| e.to_string())
        });
    match header {
        Ok(h) => {
            summary.x25519_stanzas = h.count("X25519");
            if h.count("scrypt") > 0 {
                summary.problem = Some("passphrase-encrypted (scrypt), not sealed to a key".into());
            }
        }
        Err(e) => summary.problem = Some(e),
    }
    summary
}

/// Every problem found, as one-line messages; empty when the object passes.
/// `expected`: the recipients (sorted fingerprints) the items must be sealed to.
pub fn problems(sealed: &SealedSecret, expected: Option<&[Fingerprint]>) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &sealed.spec;
    if spec.format_version != crate::envelope::VERSION {
        out.push(format!(
            "format version {} is not supported (expected {})",
            spec.format_version,
            crate::envelope::VERSION
        ));
    }
    if sealed.metadata.name.is_none() {
        out.push("metadata.name is missing".into());
    }
    if spec.encrypted_data.is_empty() {
        out.push("no items in spec.encryptedData".into());
    }
    if let Some(ns) = sealed.metadata.namespace.as_deref()
        && ns == crate::policy::DEFAULT_CONTROLLER_NAMESPACE
    {
        out.push(format!(
            "namespace {ns:?} is kseal-controller's own (its keys live there): it never unseals into it"
        ));
    }
    if let Err(e) = crate::policy::check_template(spec.template.as_ref(), &[]) {
        out.push(format!("{e} (the controller refuses it: {})", e.reason()));
    }
    if spec.recipients.is_empty() {
        out.push("spec.recipients is empty: no record of which keys sealed it".into());
    }
    if let Some(expected) = expected
        && spec.recipients != expected
    {
        let show = |fps: &[Fingerprint]| {
            fps.iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "sealed to recipients [{}], expected [{}]",
            show(&spec.recipients),
            show(expected)
        ));
    }
    for (key, value) in &spec.encrypted_data {
        if let Err(e) = validate_item_key(key) {
            out.push(e.to_string());
            continue;
        }
        if sealed.metadata.name.is_some()
            && let Err(e) = Binding::new(
                spec.scope,
                sealed.metadata.namespace.as_deref(),
                sealed.metadata.name.as_deref(),
                key,
            )
        {
            out.push(e.to_string());
            break;
        }
        let summary = summarize_item(key, value);
        if let Some(p) = summary.problem {
            out.push(format!("item {key:?}: {p}"));
        } else if summary.x25519_stanzas != spec.recipients.len() {
            out.push(format!(
                "item {key:?}: sealed to {} X25519 recipients, but {} are recorded",
                summary.x25519_stanzas,
                spec.recipients.len()
            ));
        }
    }
    out
}
