//! A Bitnami SealedSecret made a kseal one: with its keys (`kseal migrate`), or as the
//! shell a controller fills (`--via-controller`), undoing what a hand-over added.

use super::*;

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
