//! `kseal unseal`: disaster recovery. Opens SealedSecrets with private keys, checking
//! each item's scope binding against the object's own namespace and name, and prints
//! the Secrets on stdout. It never writes them to a file.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::keys::{Keyring, parse_identities};
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::sealing::{secret_of, unseal};
use serde_json::{Map, Value, json};
use zeroize::Zeroize;

use super::doc_label;
use crate::cli::UnsealArgs;
use crate::io::{read_file, read_input, render, write_output};

pub fn run(args: &UnsealArgs) -> Result<()> {
    // Private keys and plaintext are about to be in memory: a crash must not write them to
    // a core file. The hard limit too, so nothing later in the process can raise it.
    rlimit::setrlimit(rlimit::Resource::CORE, 0, 0)
        .context("disabling core dumps before reading keys")?;
    let mut keyring = Keyring::default();
    for path in &args.identities {
        let file = read_file(path).context("--identity")?;
        keyring.extend(
            parse_identities(&file.bytes).with_context(|| format!("--identity {}", file.name))?,
        );
    }
    let input = read_input(args.file.as_deref(), "reading SealedSecrets from stdin")?;
    let (_, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
    let mut secrets = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let label = doc_label(&input.name, i, docs.len());
        let sealed = sealed_from_value(doc).with_context(|| label.clone())?;
        let items = unseal(&sealed, &keyring).with_context(|| label.clone())?;
        let template = sealed.spec.template.clone().unwrap_or_default();
        let (name, namespace) = (&sealed.metadata.name, &sealed.metadata.namespace);
        let mut secret = secret_of(name.as_deref(), namespace.as_deref(), &template, &items);
        secrets.push(document(&secret));
        for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
            value.0.zeroize();
        }
    }
    let text = render(&secrets, args.output);
    for s in &mut secrets {
        kseal_core::manifest::scrub(s);
    }
    write_output(None, text?.as_bytes())
}

/// The Secret as a document, its fields in the order kubectl prints them.
fn document(secret: &Secret) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(secret.metadata.name));
    if let Some(ns) = &secret.metadata.namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    insert_map(&mut metadata, "labels", secret.metadata.labels.as_ref());
    insert_map(
        &mut metadata,
        "annotations",
        secret.metadata.annotations.as_ref(),
    );
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), json!("v1"));
    doc.insert("kind".into(), json!("Secret"));
    doc.insert("metadata".into(), Value::Object(metadata));
    if let Some(t) = &secret.type_ {
        doc.insert("type".into(), json!(t));
    }
    if let Some(i) = secret.immutable {
        doc.insert("immutable".into(), json!(i));
    }
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(STANDARD.encode(&v.0))))
        .collect();
    doc.insert("data".into(), Value::Object(data));
    Value::Object(doc)
}

fn insert_map(
    parent: &mut Map<String, Value>,
    field: &str,
    map: Option<&BTreeMap<String, String>>,
) {
    if let Some(map) = map.filter(|m| !m.is_empty()) {
        parent.insert(field.into(), json!(map));
    }
}
