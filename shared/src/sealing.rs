//! Whole objects: seal a Secret into a SealedSecret, add items to one, and open one back
//! into its items. Both the CLI and the controller go through these functions, so the
//! binding rules live in one place.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use zeroize::Zeroizing;

use crate::item::{self, OpenError, SealError};
use crate::keys::{Key, Keyring};
use crate::limits::{LimitError, MAX_KEY_TRIALS, PQ_TRIAL, check_items};
use crate::manifest::SecretInput;
use crate::recipients::RecipientSet;
use crate::resource::{
    BITNAMI_CLUSTER_WIDE_ANNOTATION, BITNAMI_NAMESPACE_WIDE_ANNOTATION, DROPPED_ANNOTATIONS,
    SCOPE_ANNOTATION, SealedSecret, SealedSecretSpec, SecretTemplate, TemplateMetadata,
};
use crate::rewrap::RewrapError;
use crate::scope::{Binding, NameError, Scope, validate_name};

/// Sealing an object failed.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The controller would refuse the result (more items than one object may hold).
    #[error("{0}: the controller would refuse it")]
    Limit(#[from] LimitError),
}

/// One item of a SealedSecret could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("item {item:?}")]
pub struct ItemError {
    pub item: String,
    #[source]
    pub source: OpenError,
}

/// A SealedSecret that could not be opened or resealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsealError {
    /// Refused whole, before any decryption.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Names the item; its cause is the source.
    #[error(transparent)]
    Item(#[from] ItemError),
    /// A reseal would mix post-quantum and classic recipients in the item named.
    #[error("item {0:?}: {mixed}", mixed = RewrapError::MixedRecipients)]
    MixedRecipients(String),
}

impl UnsealError {
    /// The reason for conditions, Events, metrics and answers.
    pub fn reason(&self) -> crate::reason::Reason {
        match self {
            UnsealError::Limit(_) => crate::reason::Reason::TooMuchWork,
            UnsealError::Item(e) => e.source.reason(),
            UnsealError::MixedRecipients(_) => crate::reason::Reason::MixedRecipients,
        }
    }

    /// One line with the cause: what a condition or an answer says.
    pub fn message(&self) -> String {
        match self {
            UnsealError::Limit(e) => e.to_string(),
            UnsealError::Item(e) => format!("{e}: {}", e.source),
            UnsealError::MixedRecipients(_) => self.to_string(),
        }
    }
}

/// How many key trials opening every item of `sealed` with `keys` costs, read from the
/// headers alone (nothing is decrypted): per item, each key times the stanzas of its
/// kind, a post-quantum trial counting [`PQ_TRIAL`]. An item whose header does not read
/// costs none (it fails before any key).
pub fn key_trials<'a>(sealed: &SealedSecret, keys: impl Iterator<Item = &'a Key>) -> usize {
    let (mut classic, mut pq) = (0usize, 0usize);
    for key in keys {
        if key.is_pq() {
            pq += 1;
        } else {
            classic += 1;
        }
    }
    sealed
        .spec
        .encrypted_data
        .values()
        .filter_map(|value| item::decode_bounded(value).ok())
        .map(|(_, header)| {
            header.count(crate::keys::X25519_TAG) * classic
                + header.count(crate::pq::TAG) * pq * PQ_TRIAL
        })
        .fold(0, usize::saturating_add)
}

/// Refuses an object over [`crate::limits`]' bounds with `keys`, before any decryption.
fn check_work<'a>(
    sealed: &SealedSecret,
    keys: impl Iterator<Item = &'a Key>,
) -> Result<(), LimitError> {
    check_items(sealed.spec.encrypted_data.len())?;
    let trials = key_trials(sealed, keys);
    if trials > MAX_KEY_TRIALS {
        return Err(LimitError::TooManyTrials(trials));
    }
    Ok(())
}

/// Seals every item of `input` for `scope` to `recipients`.
///
/// The template keeps the Secret's labels (without the controller's own), annotations
/// (without kubectl's last-applied-configuration, which holds a plaintext copy, the
/// scope annotations, or a live Secret's take-over and merge annotations), `type` and
/// `immutable`.
pub fn seal_secret(
    input: &SecretInput,
    scope: Scope,
    recipients: &RecipientSet,
) -> Result<SealedSecret, SealingError> {
    let name = input.name.as_deref().ok_or(SealingError::MissingName)?;
    validate_name(name)?;
    check_items(input.data.len())?;
    let annotations = template_annotations(&input.annotations);
    let labels = template_labels(&input.labels);
    let metadata = (!labels.is_empty() || !annotations.is_empty()).then_some(TemplateMetadata {
        labels,
        annotations,
    });
    let template = SecretTemplate {
        metadata,
        type_: input.type_.clone(),
        immutable: input.immutable,
        data: BTreeMap::new(),
    };
    let mut sealed = SealedSecret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: input.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: SealedSecretSpec {
            format_version: crate::envelope::VERSION,
            scope,
            recipients: recipients.fingerprints(),
            encrypted_data: BTreeMap::new(),
            template: (template != SecretTemplate::default()).then_some(template),
        },
        status: None,
    };
    seal_items(
        &mut sealed,
        input.data.iter().map(|(k, v)| (k.as_str(), &v[..])),
        recipients,
    )?;
    Ok(sealed)
}

/// The annotations of an input Secret that pick the scope (kseal's, and kubeseal's);
/// they stay out of the template.
const SCOPE_ANNOTATIONS: [&str; 3] = [
    SCOPE_ANNOTATION,
    BITNAMI_CLUSTER_WIDE_ANNOTATION,
    BITNAMI_NAMESPACE_WIDE_ANNOTATION,
];

/// The annotations a live Secret carries for the controller that writes it (take over,
/// merge into), which say nothing about the Secret a template describes: a Secret read
/// back from the cluster (`kubectl get secret … | kseal seal`) is sealed without them.
const LIVE_ANNOTATIONS: [&str; 4] = crate::contract::CONSENT_ANNOTATIONS;

/// The label the controller puts on every Secret it writes; it adds it again itself.
const CONTROLLER_LABEL: (&str, &str) = crate::contract::MANAGED_BY;

/// The annotations of an input Secret that belong in the template: all but kubectl's
/// last-applied-configuration (a plaintext copy of the Secret), the scope annotations
/// and a live Secret's take-over and merge annotations.
pub fn template_annotations(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            !DROPPED_ANNOTATIONS.contains(&k)
                && !SCOPE_ANNOTATIONS.contains(&k)
                && !LIVE_ANNOTATIONS.contains(&k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels of an input Secret that belong in the template: all but the one the
/// controller adds to every Secret it writes.
pub fn template_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, v)| (k.as_str(), v.as_str()) != CONTROLLER_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The scope an input Secret's annotations ask for: `kseal.dev/scope`, or kubeseal's
/// `sealedsecrets.bitnami.com/cluster-wide` / `namespace-wide` set to `"true"` (cluster-wide
/// wins, as in Bitnami's controller). `None` when none is set; an error, naming the
/// annotations, when they disagree or the value is not a scope.
pub fn scope_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Scope>, String> {
    let ours = annotations
        .get(SCOPE_ANNOTATION)
        .map(|v| {
            v.parse::<Scope>()
                .map_err(|e| format!("annotation {SCOPE_ANNOTATION}: {e}"))
        })
        .transpose()?;
    let set = |key: &str| annotations.get(key).is_some_and(|v| v == "true");
    let bitnami = if set(BITNAMI_CLUSTER_WIDE_ANNOTATION) {
        Some((BITNAMI_CLUSTER_WIDE_ANNOTATION, Scope::ClusterWide))
    } else if set(BITNAMI_NAMESPACE_WIDE_ANNOTATION) {
        Some((BITNAMI_NAMESPACE_WIDE_ANNOTATION, Scope::NamespaceWide))
    } else {
        None
    };
    match (ours, bitnami) {
        (Some(a), Some((key, b))) if a != b => Err(format!(
            "annotations {SCOPE_ANNOTATION} ({a}) and {key} ({b}) disagree: keep one"
        )),
        (Some(scope), _) | (None, Some((_, scope))) => Ok(Some(scope)),
        (None, None) => Ok(None),
    }
}

/// Seals items into an existing SealedSecret, replacing items of the same key and
/// leaving every other item's ciphertext exactly as it was.
pub fn seal_items<'a>(
    sealed: &mut SealedSecret,
    items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    recipients: &RecipientSet,
) -> Result<(), SealingError> {
    for (key, value) in items {
        let binding = binding_for(sealed, key)?;
        let ciphertext = item::seal(recipients, &binding, value)?;
        sealed
            .spec
            .encrypted_data
            .insert(key.to_owned(), ciphertext);
    }
    // Checked after: merging may replace items as well as add them.
    check_items(sealed.spec.encrypted_data.len())?;
    Ok(())
}

/// The binding an item of this SealedSecret must carry: its recorded scope and its own
/// namespace and name. This is what the controller checks and what sealing writes.
pub fn binding_for(sealed: &SealedSecret, item: &str) -> Result<Binding, NameError> {
    Binding::new(
        sealed.spec.scope,
        sealed.metadata.namespace.as_deref(),
        sealed.metadata.name.as_deref(),
        item,
    )
}

/// Opens every item. An object over [`crate::limits`]' bounds is refused first, whole.
/// Fails on the first item that cannot be opened; nothing partial is returned, so a
/// caller never writes a Secret with some items missing.
pub fn unseal(
    sealed: &SealedSecret,
    keyring: &Keyring,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, UnsealError> {
    check_work(sealed, keyring.ordered_for(&sealed.spec.recipients))?;
    let mut out = BTreeMap::new();
    for (key, ciphertext) in &sealed.spec.encrypted_data {
        let fail = |source| ItemError {
            item: key.clone(),
            source,
        };
        let binding = binding_for(sealed, key).map_err(|e| {
            fail(OpenError::ScopeMismatch {
                field: "location",
                sealed: sealed.spec.scope.to_string(),
                actual: e.to_string(),
            })
        })?;
        let value =
            item::open(keyring, &sealed.spec.recipients, &binding, ciphertext).map_err(fail)?;
        out.insert(key.clone(), value);
    }
    Ok(out)
}

/// The Secret a SealedSecret describes, once unsealed: named as the SealedSecret, with
/// its template's labels, annotations, type and immutability, and its template's plain
/// `data` with the unsealed `items` over it. What the controller adds when it writes one
/// (its label, the default type, the owner) is its own; `kseal unseal` prints this as is.
pub fn secret_of(
    name: Option<&str>,
    namespace: Option<&str>,
    template: &SecretTemplate,
    items: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut data: BTreeMap<String, ByteString> = template
        .data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect();
    for (k, v) in items {
        data.insert(k.clone(), ByteString(v.to_vec()));
    }
    let mut secret = k8s_openapi::api::core::v1::Secret {
        data: Some(data),
        type_: template.type_.clone(),
        immutable: template.immutable,
        ..Default::default()
    };
    secret.metadata.name = name.map(str::to_owned);
    secret.metadata.namespace = namespace.map(str::to_owned);
    secret.metadata.labels = (!meta.labels.is_empty()).then_some(meta.labels);
    secret.metadata.annotations = (!meta.annotations.is_empty()).then_some(meta.annotations);
    secret
}

/// Moves every item to the cluster's `newest` key without revealing it, keeping every
/// recipient the cluster does not hold (escrow keys, other clusters): see [`rewrap`].
/// Each item is opened first, and must carry its own item key in its authenticated
/// envelope; items must agree on one scope, which becomes `spec.scope` (template and
/// annotations are never consulted, so a reseal cannot widen a scope). Items the newest
/// key alone already holds keep their bytes. Returns the new object and how many items
/// changed.
///
/// [`rewrap`]: crate::rewrap
pub fn reseal(
    sealed: &SealedSecret,
    keyring: &Keyring,
    newest: &Key,
) -> Result<(SealedSecret, usize), UnsealError> {
    // Every key may be tried on every stanza here (rewrap decides by the stanzas, not the
    // hint), so the bound counts them all.
    check_work(sealed, keyring.iter())?;
    let mut out = sealed.clone();
    let mut scope = None;
    let mut changed = 0;
    let mut kept = 0;
    for (key, ciphertext) in &sealed.spec.encrypted_data {
        let fail = |source| ItemError {
            item: key.clone(),
            source,
        };
        let (binding, _) =
            item::open_with_binding(keyring, &sealed.spec.recipients, ciphertext).map_err(fail)?;
        if binding.item != *key {
            return Err(fail(OpenError::ScopeMismatch {
                field: "item key",
                sealed: format!("{:?}", binding.item),
                actual: format!("item key {key:?}"),
            })
            .into());
        }
        match scope {
            None => scope = Some(binding.scope),
            Some(s) if s != binding.scope => {
                return Err(fail(OpenError::ScopeMismatch {
                    field: "scope",
                    sealed: binding.scope.to_string(),
                    actual: format!("scope {s} (of the other items)"),
                })
                .into());
            }
            Some(_) => {}
        }
        let moved = match crate::rewrap::rewrap(keyring, newest, ciphertext) {
            Ok(moved) => moved,
            Err(RewrapError::Open(e)) => return Err(fail(e).into()),
            Err(RewrapError::MixedRecipients) => {
                return Err(UnsealError::MixedRecipients(key.clone()));
            }
        };
        kept = kept.max(moved.kept);
        if moved.changed {
            out.spec.encrypted_data.insert(key.clone(), moved.sealed);
            changed += 1;
        }
    }
    if let Some(scope) = scope {
        out.spec.scope = scope;
    }
    out.spec.recipients =
        crate::rewrap::rewrapped_hint(&sealed.spec.recipients, keyring, newest, kept);
    out.status = None;
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;

    fn input() -> SecretInput {
        let mut input = SecretInput {
            name: Some("db".into()),
            namespace: Some("prod".into()),
            type_: Some("kubernetes.io/basic-auth".into()),
            immutable: Some(true),
            ..SecretInput::default()
        };
        input.labels.insert("app".into(), "db".into());
        input
            .annotations
            .insert(DROPPED_ANNOTATIONS[0].into(), "{\"data\":\"leak\"}".into());
        input.annotations.insert("team".into(), "core".into());
        input
            .data
            .insert("username".into(), Zeroizing::new(b"admin".to_vec()));
        input
            .data
            .insert("password".into(), Zeroizing::new(b"hunter2".to_vec()));
        input
    }

    /// `kubectl get secret … | kseal seal` of a Secret the controller wrote or was
    /// handed: its take-over annotation and the controller's label stay out (the template
    /// refuses `kseal.dev/` annotations, and the controller adds its label itself).
    #[test]
    fn a_live_secrets_controller_metadata_stays_out_of_the_template() {
        let key = Key::generate();
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        let mut live = input();
        for k in LIVE_ANNOTATIONS {
            live.annotations.insert(k.into(), "true".into());
        }
        live.labels
            .insert(CONTROLLER_LABEL.0.into(), CONTROLLER_LABEL.1.into());
        let sealed = seal_secret(&live, Scope::Strict, &set).unwrap();
        let template = sealed.spec.template.unwrap();
        crate::policy::check_template(Some(&template), &[]).unwrap();
        let meta = template.metadata.unwrap();
        assert_eq!(meta.labels.keys().collect::<Vec<_>>(), ["app"]);
        assert_eq!(meta.annotations.keys().collect::<Vec<_>>(), ["team"]);
    }

    #[test]
    fn seal_then_unseal_keeps_template_and_values() {
        let key = Key::generate();
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        let sealed = seal_secret(&input(), Scope::Strict, &set).unwrap();
        let template = sealed.spec.template.clone().unwrap();
        let meta = template.metadata.unwrap();
        assert_eq!(meta.labels["app"], "db");
        assert_eq!(
            meta.annotations.len(),
            1,
            "last-applied-configuration dropped"
        );
        assert_eq!(template.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(template.immutable, Some(true));
        assert_eq!(sealed.spec.recipients, vec![key.fingerprint().clone()]);
        let items = unseal(&sealed, &Keyring::new([key])).unwrap();
        assert_eq!(&items["password"][..], b"hunter2");
        assert_eq!(&items["username"][..], b"admin");
    }

    #[test]
    fn reseal_moves_items_to_new_recipients_and_keeps_the_envelope_scope() {
        let (old, new) = (Key::generate(), Key::generate());
        let old_set = RecipientSet::new([old.recipient().clone()]).unwrap();
        let mut sealed = seal_secret(&input(), Scope::NamespaceWide, &old_set).unwrap();
        // An unauthenticated field claiming a wider scope changes nothing.
        sealed.spec.scope = Scope::ClusterWide;
        let ring = Keyring::new([old.clone(), new.clone()]);
        let (resealed, changed) = reseal(&sealed, &ring, &new).unwrap();
        assert_eq!(changed, 2);
        assert_eq!(
            resealed.spec.scope,
            Scope::NamespaceWide,
            "scope from the envelope"
        );
        assert_eq!(resealed.spec.recipients, vec![new.fingerprint().clone()]);
        let items = unseal(&resealed, &Keyring::new([new.clone()])).unwrap();
        assert_eq!(&items["password"][..], b"hunter2");
        let (again, changed) = reseal(&resealed, &ring, &new).unwrap();
        assert_eq!(
            (changed, &again.spec.encrypted_data),
            (0, &resealed.spec.encrypted_data)
        );
    }

    #[test]
    fn moving_the_object_breaks_every_strict_item() {
        let key = Key::generate();
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        let mut sealed = seal_secret(&input(), Scope::Strict, &set).unwrap();
        sealed.metadata.namespace = Some("dev".into());
        let err = unseal(&sealed, &Keyring::new([key])).unwrap_err();
        assert_eq!(err.reason().as_str(), "ScopeMismatch");
    }

    fn with_items(n: usize, recipients: &RecipientSet) -> SealedSecret {
        let mut input = input();
        input.data.clear();
        for i in 0..n {
            input
                .data
                .insert(format!("k{i}"), Zeroizing::new(b"v".to_vec()));
        }
        seal_secret(&input, Scope::Strict, recipients).unwrap()
    }

    #[test]
    fn an_object_over_the_item_cap_is_refused_before_any_key() {
        let key = Key::generate();
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        let ring = Keyring::new([key.clone()]);
        let most = with_items(crate::limits::MAX_ITEMS, &set);
        assert_eq!(
            unseal(&most, &ring).unwrap().len(),
            crate::limits::MAX_ITEMS
        );
        // kseal seal refuses to make it; a writer adds one by hand.
        let mut input = input();
        input.data = (0..=crate::limits::MAX_ITEMS)
            .map(|i| (format!("k{i}"), Zeroizing::new(b"v".to_vec())))
            .collect();
        assert!(matches!(
            seal_secret(&input, Scope::Strict, &set),
            Err(SealingError::Limit(LimitError::TooManyItems(257)))
        ));
        let mut over = most.clone();
        let extra = with_items(1, &set).spec.encrypted_data["k0"].clone();
        over.spec.encrypted_data.insert("k256".into(), extra);
        let err = unseal(&over, &ring).unwrap_err();
        assert_eq!(err, UnsealError::Limit(LimitError::TooManyItems(257)));
        assert_eq!(err.reason(), crate::reason::Reason::TooMuchWork);
        assert_eq!(
            reseal(&over, &ring, &key).unwrap_err(),
            UnsealError::Limit(LimitError::TooManyItems(257))
        );
    }

    /// The review's "500 items × 15 stanzas, no hint": every retained key tried on every
    /// stanza. Counted from the headers and refused before any decryption; the same
    /// object with a hint naming one held key costs one key's trials.
    #[test]
    fn trials_are_counted_from_the_headers_and_bounded() {
        let keys: Vec<Key> = (0..10).map(|_| Key::generate()).collect();
        let strangers: Vec<Key> = (0..15).map(|_| Key::generate()).collect();
        let set = RecipientSet::new(strangers.iter().map(|k| k.recipient().clone())).unwrap();
        let mut sealed = with_items(crate::limits::MAX_ITEMS, &set);
        let ring = Keyring::new(keys.clone());
        // no hint naming a held key: all ten keys on all 15 stanzas of all 256 items
        assert_eq!(
            key_trials(&sealed, ring.ordered_for(&sealed.spec.recipients)),
            256 * 15 * 10
        );
        let err = unseal(&sealed, &ring).unwrap_err();
        assert_eq!(
            err,
            UnsealError::Limit(LimitError::TooManyTrials(256 * 15 * 10))
        );
        // a hint naming one held key: that key alone is tried
        sealed.spec.recipients = vec![keys[0].fingerprint().clone()];
        assert_eq!(
            key_trials(&sealed, ring.ordered_for(&sealed.spec.recipients)),
            256 * 15
        );
        assert_eq!(
            unseal(&sealed, &ring).unwrap_err().reason(),
            crate::reason::Reason::NoMatchingKey,
            "within the bound, it is tried (and fails: no held key sealed it)"
        );
    }
}
