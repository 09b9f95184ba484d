//! Reading Kubernetes documents: YAML (several documents) or JSON (one object, several
//! concatenated, or a `List`), then Secrets and SealedSecrets out of them.
//!
//! Secret values must never reach an error message, so Secrets are read field by field
//! from a generic tree with errors that name fields, never their contents, and the tree's
//! strings are wiped afterwards ([`scrub`]).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::resource::SealedSecret;
use crate::scope::{NameError, validate_item_key};

/// How a set of documents was written, so output can follow input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// The input is not a readable set of documents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("not UTF-8 text (YAML and JSON must be UTF-8)")]
    NotUtf8,
    #[error("no documents found")]
    Empty,
    #[error("not valid JSON at line {line}, column {column}")]
    Json { line: usize, column: usize },
    #[error("not valid JSON: it ends early (line {0})")]
    JsonEof(usize),
    #[error("not valid YAML at line {line}, column {column}")]
    Yaml { line: u64, column: u64 },
    #[error("document {0}: not a mapping/object")]
    NotAnObject(usize),
    #[error("YAML at line {line}, column {column}: {limit}")]
    YamlLimit {
        line: u64,
        column: u64,
        limit: &'static str,
    },
}

/// How much a YAML document may expand while it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aliases {
    /// Files a user reads on their own machine: anchors and aliases as YAML allows,
    /// within the parser's default budget.
    Allow,
    /// Bodies from the network: no anchors or aliases at all, so what is parsed is never
    /// larger than what was sent.
    Refuse,
}

/// Splits `bytes` into documents. `List` objects are expanded into their items.
pub fn parse_documents(bytes: &[u8]) -> Result<(Format, Vec<Value>), ManifestError> {
    parse_documents_with(bytes, Aliases::Allow)
}

/// [`parse_documents`], with YAML anchors and aliases allowed or not.
pub fn parse_documents_with(
    bytes: &[u8],
    aliases: Aliases,
) -> Result<(Format, Vec<Value>), ManifestError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    let (format, docs) = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let docs = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                if e.is_eof() {
                    ManifestError::JsonEof(e.line())
                } else {
                    ManifestError::Json {
                        line: e.line(),
                        column: e.column(),
                    }
                }
            })?;
        (Format::Json, docs)
    } else {
        // Error messages of the YAML parser can quote the input, so only the position
        // is kept.
        let mut options = serde_saphyr::Options::default();
        if aliases == Aliases::Refuse {
            let mut budget = serde_saphyr::Budget::default();
            budget.max_aliases = 0;
            budget.max_anchors = 0;
            budget.max_total_scalar_bytes = text.len();
            options.budget = Some(budget);
        }
        let docs =
            serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| {
                let loc = e.location();
                let (line, column) = (
                    loc.map(|l| l.line()).unwrap_or(0),
                    loc.map(|l| l.column()).unwrap_or(0),
                );
                match e.without_snippet() {
                    serde_saphyr::Error::Budget { breach, .. } => ManifestError::YamlLimit {
                        line,
                        column,
                        limit: budget_limit(breach),
                    },
                    _ => ManifestError::Yaml { line, column },
                }
            })?;
        (Format::Yaml, docs)
    };
    let mut out = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(ref map) if is_list(map) => {
                let Some(Value::Array(items)) = map.get("items").cloned() else {
                    return Err(ManifestError::NotAnObject(out.len() + 1));
                };
                out.extend(items);
            }
            Value::Object(_) => out.push(doc),
            _ => return Err(ManifestError::NotAnObject(out.len() + 1)),
        }
    }
    if out.is_empty() {
        return Err(ManifestError::Empty);
    }
    if let Some(i) = out.iter().position(|d| !d.is_object()) {
        return Err(ManifestError::NotAnObject(i + 1));
    }
    Ok((format, out))
}

/// What stands in a Helm template's source for each of its actions (`{{ … }}`) that shares
/// its line with YAML, when [`read_deployable`] reads one: a value holding it came from the
/// chart's values, not from the file.
pub const TEMPLATE_ACTION: &str = "KSEAL_HELM_TEMPLATE_ACTION";

/// A file read as kubectl and kustomize read what they deploy: the documents that read,
/// and those that did not (by number, from 1), so that one bad document hides no other.
#[derive(Debug, Default)]
pub struct Deployable {
    pub docs: Vec<Value>,
    pub unreadable: Vec<(usize, ManifestError)>,
}

/// Reads a file the way a plaintext guard must: everything kubectl or kustomize would
/// deploy from it, so that nothing they accept is skipped. Unlike [`parse_documents`]:
/// UTF-16 with a byte-order mark is decoded, other bytes that are not UTF-8 are replaced
/// (a Latin-1 byte in a comment), a byte-order mark may open any document, a duplicate
/// key keeps its last value, a document opening with `{` that is not JSON is read as YAML
/// (a flow mapping), each document is read on its own, and a Helm template's actions
/// (`{{ … }}`) are replaced: one alone on its line by nothing, one inside a line by
/// [`TEMPLATE_ACTION`]. Text that is neither UTF-8 nor marked UTF-16 (NUL bytes) is
/// refused.
pub fn read_deployable(bytes: &[u8]) -> Result<Deployable, ManifestError> {
    let text = decode_text(bytes)?;
    let text = if text.contains("{{") {
        neutralize_template_actions(&text)
    } else {
        text
    };
    let mut out = Deployable::default();
    for (i, doc) in split_documents(&text).into_iter().enumerate() {
        let doc = doc.trim_start_matches('\u{feff}');
        let content = doc
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if !content {
            continue;
        }
        match read_values(doc) {
            Ok(values) => {
                for value in values {
                    match value {
                        Value::Null => {}
                        Value::Object(ref map) if is_list(map) => match map.get("items") {
                            Some(Value::Array(items)) => out.docs.extend(items.iter().cloned()),
                            _ => out
                                .unreadable
                                .push((i + 1, ManifestError::NotAnObject(i + 1))),
                        },
                        Value::Object(_) => out.docs.push(value),
                        _ => out
                            .unreadable
                            .push((i + 1, ManifestError::NotAnObject(i + 1))),
                    }
                }
            }
            Err(e) => out.unreadable.push((i + 1, e)),
        }
    }
    Ok(out)
}

fn decode_text(bytes: &[u8]) -> Result<String, ManifestError> {
    let utf16 = |bytes: &[u8], unit: fn([u8; 2]) -> u16| {
        let units = bytes
            .chunks_exact(2)
            .map(|c| unit([c[0], c[1]]))
            .collect::<Vec<_>>();
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>()
    };
    match bytes {
        [0xff, 0xfe, rest @ ..] => Ok(utf16(rest, u16::from_le_bytes)),
        [0xfe, 0xff, rest @ ..] => Ok(utf16(rest, u16::from_be_bytes)),
        _ if bytes.contains(&0) => Err(ManifestError::NotUtf8),
        _ => Ok(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// A Helm template's actions replaced so that the YAML around them reads (see
/// [`read_deployable`]); newlines inside an action are kept, so positions stay.
fn neutralize_template_actions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(start) = text[at..].find("{{").map(|s| s + at) {
        let Some(end) = text[start..].find("}}").map(|e| start + e + 2) else {
            break;
        };
        let line_start = text[..start].rfind('\n').map_or(0, |p| p + 1);
        let line_end = text[end..].find('\n').map_or(text.len(), |p| end + p);
        let alone =
            text[line_start..start].trim().is_empty() && text[end..line_end].trim().is_empty();
        out.push_str(&text[at..start]);
        if alone {
            out.extend(text[start..end].chars().filter(|c| *c == '\n'));
        } else {
            out.push_str(TEMPLATE_ACTION);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The documents of a YAML stream, split at `---` lines (a `--- ` line may carry the
/// document's first content) and `...` lines.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let bare = line
            .trim_end_matches(['\r', '\n'])
            .trim_start_matches('\u{feff}');
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            docs.push(bare[3..].trim_start().to_owned() + "\n");
        } else if bare == "..." {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
        }
    }
    docs
}

/// One document as [`read_deployable`] reads it: JSON (a stream of values) when it opens
/// like JSON and reads as JSON, otherwise YAML with duplicate keys resolved as kubectl
/// does (the last one wins).
pub fn read_values(doc: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = doc.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(values) = serde_json::Deserializer::from_str(doc)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
    {
        return Ok(values);
    }
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::LastWins;
    serde_saphyr::from_multiple_with_options::<Value>(doc, options).map_err(|e| {
        let loc = e.location();
        ManifestError::Yaml {
            line: loc.map(|l| l.line()).unwrap_or(0),
            column: loc.map(|l| l.column()).unwrap_or(0),
        }
    })
}

/// What a YAML budget breach means, in words that name no input.
fn budget_limit(breach: &serde_saphyr::budget::BudgetBreach) -> &'static str {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Aliases { .. } | B::Anchors { .. } => {
            "anchors and aliases are not accepted here, or too many of them"
        }
        B::ScalarBytes { .. } => "too large once its aliases are expanded",
        _ => "too large or too deeply nested",
    }
}

fn is_list(map: &Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
}

/// Overwrites every string value in a document tree before it is dropped.
pub fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            for (_, v) in map.iter_mut() {
                scrub(v);
            }
        }
        _ => {}
    }
}

/// A document that is not a Secret kseal can seal. Names fields, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("kind is missing (expected Secret)")]
    MissingKind,
    #[error("kind is {0:?}, expected {1}")]
    WrongKind(String, &'static str),
    #[error("apiVersion is {0:?}, expected {1}")]
    WrongApiVersion(String, &'static str),
    #[error("{0} must be {1}")]
    WrongType(String, &'static str),
    #[error("data.{0} is not valid base64")]
    BadBase64(String),
    #[error("item {0:?} is in both data and stringData")]
    DuplicateKey(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("item {key:?} is {size} bytes; a Secret holds at most 1 MiB")]
    TooLarge { key: String, size: usize },
    #[error("the items add up to {0} bytes; a Secret holds at most 1 MiB")]
    TotalTooLarge(usize),
    #[error("not a valid SealedSecret: {0}")]
    BadSealedSecret(String),
}

/// A Secret read from a manifest: what sealing needs, values in wiped-on-drop buffers.
#[derive(Default)]
pub struct SecretInput {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub type_: Option<String>,
    pub immutable: Option<bool>,
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

fn check_kind(
    doc: &Map<String, Value>,
    kind: &'static str,
    api_version: &'static str,
) -> Result<(), InputError> {
    match doc.get("kind") {
        None => return Err(InputError::MissingKind),
        Some(Value::String(k)) if k == kind => {}
        Some(Value::String(k)) => return Err(InputError::WrongKind(k.clone(), kind)),
        Some(_) => return Err(InputError::WrongType("kind".into(), "a string")),
    }
    match doc.get("apiVersion") {
        Some(Value::String(v)) if v == api_version => Ok(()),
        Some(Value::String(v)) => Err(InputError::WrongApiVersion(v.clone(), api_version)),
        _ => Err(InputError::WrongApiVersion(String::new(), api_version)),
    }
}

fn string_map(
    parent: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<BTreeMap<String, String>, InputError> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(InputError::WrongType(format!("{path}.{k}"), "a string")),
            })
            .collect(),
        Some(_) => Err(InputError::WrongType(path.into(), "a map of strings")),
    }
}

fn opt_string(
    parent: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<String>, InputError> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(InputError::WrongType(path.into(), "a string")),
    }
}

/// Reads a `v1` Secret. Items from `data` are base64-decoded, `stringData` taken as UTF-8;
/// a key in both is an error rather than a silent override.
pub fn secret_from_value(doc: &Value) -> Result<SecretInput, InputError> {
    let Value::Object(doc) = doc else {
        return Err(InputError::WrongType("document".into(), "a mapping"));
    };
    check_kind(doc, "Secret", "v1")?;
    let empty = Map::new();
    let meta = match doc.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(InputError::WrongType("metadata".into(), "a mapping")),
    };
    let mut input = SecretInput {
        name: opt_string(meta, "name", "metadata.name")?,
        namespace: opt_string(meta, "namespace", "metadata.namespace")?,
        labels: string_map(meta, "labels", "metadata.labels")?,
        annotations: string_map(meta, "annotations", "metadata.annotations")?,
        type_: opt_string(doc, "type", "type")?,
        immutable: match doc.get("immutable") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(InputError::WrongType("immutable".into(), "true or false")),
        },
        data: BTreeMap::new(),
    };
    for (field, decode) in [("data", true), ("stringData", false)] {
        let items = match doc.get(field) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(InputError::WrongType(
                    field.into(),
                    "a mapping of item keys to strings",
                ));
            }
        };
        for (key, value) in items {
            validate_item_key(key)?;
            let Value::String(text) = value else {
                return Err(InputError::WrongType(format!("{field}.{key}"), "a string"));
            };
            let bytes = if decode {
                let compact: Zeroizing<String> =
                    Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
                Zeroizing::new(
                    STANDARD
                        .decode(compact.as_bytes())
                        .map_err(|_| InputError::BadBase64(key.clone()))?,
                )
            } else {
                Zeroizing::new(text.as_bytes().to_vec())
            };
            if bytes.len() > crate::limits::MAX_SECRET_BYTES {
                return Err(InputError::TooLarge {
                    key: key.clone(),
                    size: bytes.len(),
                });
            }
            if input.data.insert(key.clone(), bytes).is_some() {
                return Err(InputError::DuplicateKey(key.clone()));
            }
        }
    }
    let total: usize = input.data.values().map(|v| v.len()).sum();
    if total > crate::limits::MAX_SECRET_BYTES {
        return Err(InputError::TotalTooLarge(total));
    }
    Ok(input)
}

/// Reads a `kseal.dev/v1alpha1` SealedSecret.
pub fn sealed_from_value(doc: &Value) -> Result<SealedSecret, InputError> {
    let Value::Object(map) = doc else {
        return Err(InputError::WrongType("document".into(), "a mapping"));
    };
    check_kind(map, "SealedSecret", "kseal.dev/v1alpha1")?;
    serde_json::from_value(doc.clone()).map_err(|e| InputError::BadSealedSecret(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\ndata:\n  user: YWRtaW4=\nstringData:\n  password: hunter2\n";

    #[test]
    fn reads_yaml_documents_and_both_data_fields() {
        let (format, docs) = parse_documents(format!("{SECRET}---\n{SECRET}").as_bytes()).unwrap();
        assert_eq!(format, Format::Yaml);
        assert_eq!(docs.len(), 2);
        let s = secret_from_value(&docs[0]).unwrap();
        assert_eq!(&s.data["user"][..], b"admin");
        assert_eq!(&s.data["password"][..], b"hunter2");
        assert_eq!(s.namespace.as_deref(), Some("prod"));
    }

    #[test]
    fn reads_concatenated_json_and_lists() {
        let one =
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"},"stringData":{"k":"v"}}"#;
        let (format, docs) = parse_documents(format!("{one}\n{one}").as_bytes()).unwrap();
        assert_eq!((format, docs.len()), (Format::Json, 2));
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{one},{one},{one}]}}"#);
        assert_eq!(parse_documents(list.as_bytes()).unwrap().1.len(), 3);
    }

    #[test]
    fn errors_name_fields_not_values() {
        let doc: Value = serde_json::json!({"apiVersion":"v1","kind":"Secret","stringData":{"pw":"hunter2"},"data":{"pw":"aHVudGVyMg=="}});
        let err = secret_from_value(&doc).err().unwrap();
        assert_eq!(err, InputError::DuplicateKey("pw".into()));
        let doc: Value =
            serde_json::json!({"apiVersion":"v1","kind":"Secret","data":{"pw":"hunter2!"}});
        let err = secret_from_value(&doc).err().unwrap();
        assert_eq!(err.to_string(), "data.pw is not valid base64");
        let bad_yaml = "apiVersion: v1\nkind: Secret\nstringData:\n  pw: [hunter2\n";
        let err = parse_documents(bad_yaml.as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    /// Bodies from the network take no anchors or aliases at all (the review's item 4:
    /// a 1 MB body aliased 62 times became 64 MB); files on disk may still use them.
    #[test]
    fn network_bodies_take_no_aliases() {
        let text = b"kind: Secret\nmetadata: {name: &n db}\ndata:\n  a: *n\n";
        let err = parse_documents_with(text, Aliases::Refuse).unwrap_err();
        assert!(matches!(err, ManifestError::YamlLimit { .. }), "{err:?}");
        assert!(
            err.to_string().contains("aliases are not accepted"),
            "{err}"
        );
        assert!(parse_documents_with(text, Aliases::Allow).is_ok());
    }

    #[test]
    fn scrub_wipes_every_string() {
        let mut doc: Value = serde_json::json!({"a":["hunter2",{"b":"x"}]});
        scrub(&mut doc);
        assert!(!doc.to_string().contains("hunter2"));
    }
}
