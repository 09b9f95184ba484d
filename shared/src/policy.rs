//! What a SealedSecret may make the controller write.
//!
//! The template (type, labels, annotations, plain data) is not authenticated: anyone who
//! can write the SealedSecret, or the Git file it comes from, chooses it, without knowing
//! any sealed value. So the controller refuses, for every SealedSecret:
//! - the controller's own namespace (where its keys live), and any namespace the operator
//!   denies: unsealing never writes there;
//! - Secret types another component acts on with power of its own: the controller's key
//!   type (`kseal.dev/…`) and `kubernetes.io/service-account-token` (the token
//!   controller would mint a token for the named ServiceAccount);
//! - labels and annotations under `kseal.dev/` (instructions to kseal itself; the one the
//!   template may carry is [`SKIP_OWNER_ANNOTATION`]), ServiceAccount-token annotations,
//!   and the annotations that replication controllers (reflector, kubed, the Mittwald
//!   replicator) follow to copy a Secret into other namespaces, which would send a value
//!   where its sealed scope says it must not go. An operator may allow chosen prefixes.
//!
//! `kseal seal` and `kseal validate` apply the same template rules, so the mistake shows
//! before the commit; the controller is where they are enforced.

use crate::resource::SecretTemplate;

/// The namespace kseal-controller runs in (and keeps its keys in) unless installed
/// elsewhere; `kseal validate` flags SealedSecrets aimed at it.
pub const DEFAULT_CONTROLLER_NAMESPACE: &str = "kseal-system";

/// In a template: write the Secret without an owner reference, so it outlives the
/// SealedSecret.
pub const SKIP_OWNER_ANNOTATION: &str = "kseal.dev/skip-owner-reference";

/// Secret types a template may not set.
pub const FORBIDDEN_TYPES: &[&str] = &["kubernetes.io/service-account-token"];

/// Prefixes of Secret types a template may not set (the controller's key type).
pub const FORBIDDEN_TYPE_PREFIXES: &[&str] = &["kseal.dev/"];

/// Prefixes of label and annotation keys a template may not set, unless the operator
/// allows them (`--allow-template-annotation`).
pub const FORBIDDEN_METADATA_PREFIXES: &[&str] = &[
    "kseal.dev/",
    "kubernetes.io/service-account.",
    // the Bitnami controller's key label: a Secret carrying it would become a Bitnami key
    // (for its controller, and for kseal's drop-in mode)
    "sealedsecrets.bitnami.com/sealed-secrets-key",
    // emberstack/kubernetes-reflector
    "reflector.v1.k8s.emberstack.com/",
    // appscode/kubed
    "kubed.appscode.com/",
    // mittwald/kubernetes-replicator
    "replicator.v1.mittwald.de/",
];

/// Why a SealedSecret may not be unsealed where it is, or as its template asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("namespace {0:?} holds the controller's keys: SealedSecrets are never unsealed there")]
    ControllerNamespace(String),
    #[error("namespace {0:?} is denied by the operator (--deny-namespaces)")]
    DeniedNamespace(String),
    #[error("template type {0:?} is not allowed: another component acts on Secrets of that type")]
    ForbiddenType(String),
    #[error("template {kind} {key:?} is not allowed: {why}")]
    ForbiddenMetadata {
        kind: &'static str,
        key: String,
        why: &'static str,
    },
}

impl PolicyError {
    /// The condition reason.
    pub fn reason(&self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            PolicyError::ControllerNamespace(_) | PolicyError::DeniedNamespace(_) => {
                Reason::ForbiddenNamespace
            }
            PolicyError::ForbiddenType(_) | PolicyError::ForbiddenMetadata { .. } => {
                Reason::ForbiddenTemplate
            }
        }
    }
}

/// Where unsealing may write: not the controller's namespace, nor a denied one.
pub fn check_namespace(
    namespace: &str,
    controller_namespace: &str,
    denied: &[String],
) -> Result<(), PolicyError> {
    if namespace == controller_namespace {
        return Err(PolicyError::ControllerNamespace(namespace.to_owned()));
    }
    if denied.iter().any(|d| d == namespace) {
        return Err(PolicyError::DeniedNamespace(namespace.to_owned()));
    }
    Ok(())
}

/// What a template may set. `allowed` lists label or annotation key prefixes the operator
/// allows despite [`FORBIDDEN_METADATA_PREFIXES`] (never `kseal.dev/`).
pub fn check_template(
    template: Option<&SecretTemplate>,
    allowed: &[String],
) -> Result<(), PolicyError> {
    let Some(template) = template else {
        return Ok(());
    };
    if let Some(t) = template.type_.as_deref()
        && (FORBIDDEN_TYPES.contains(&t)
            || FORBIDDEN_TYPE_PREFIXES.iter().any(|p| t.starts_with(p)))
    {
        return Err(PolicyError::ForbiddenType(t.to_owned()));
    }
    let Some(meta) = template.metadata.as_ref() else {
        return Ok(());
    };
    let labels = meta.labels.keys().map(|k| ("label", k));
    let annotations = meta.annotations.keys().map(|k| ("annotation", k));
    for (kind, key) in labels.chain(annotations) {
        if kind == "annotation" && key == SKIP_OWNER_ANNOTATION {
            continue;
        }
        let Some(prefix) = FORBIDDEN_METADATA_PREFIXES
            .iter()
            .find(|p| key.starts_with(*p))
        else {
            continue;
        };
        let operator_allowed = *prefix != "kseal.dev/"
            && allowed
                .iter()
                .any(|a| !a.is_empty() && key.starts_with(a.as_str()));
        if !operator_allowed {
            return Err(PolicyError::ForbiddenMetadata {
                kind,
                key: key.clone(),
                why: why(prefix),
            });
        }
    }
    Ok(())
}

fn why(prefix: &str) -> &'static str {
    match prefix {
        "kseal.dev/" => "kseal.dev/ keys are instructions to kseal, not to be set by a template",
        "kubernetes.io/service-account." => "it would bind the Secret to a ServiceAccount",
        "sealedsecrets.bitnami.com/sealed-secrets-key" => {
            "it would make the Secret a Bitnami sealed-secrets key"
        }
        _ => "a replication controller would copy the value into other namespaces",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::TemplateMetadata;

    fn template(type_: Option<&str>, labels: &[&str], annotations: &[&str]) -> SecretTemplate {
        SecretTemplate {
            type_: type_.map(str::to_owned),
            metadata: Some(TemplateMetadata {
                labels: labels.iter().map(|k| (k.to_string(), "x".into())).collect(),
                annotations: annotations
                    .iter()
                    .map(|k| (k.to_string(), "true".into()))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_controller_namespace_and_denied_ones_are_refused() {
        let denied = vec!["kube-system".to_owned()];
        assert_eq!(
            check_namespace("kseal-system", "kseal-system", &denied)
                .unwrap_err()
                .reason(),
            crate::reason::Reason::ForbiddenNamespace
        );
        assert!(check_namespace("kube-system", "kseal-system", &denied).is_err());
        assert!(check_namespace("shop", "kseal-system", &denied).is_ok());
    }

    #[test]
    fn a_planted_key_or_a_token_is_refused() {
        for t in ["kseal.dev/age-key", "kubernetes.io/service-account-token"] {
            let e = check_template(Some(&template(Some(t), &[], &[])), &[]).unwrap_err();
            assert_eq!(e, PolicyError::ForbiddenType(t.into()));
        }
        let e = check_template(Some(&template(None, &["kseal.dev/key"], &[])), &[]);
        assert!(matches!(
            e,
            Err(PolicyError::ForbiddenMetadata { kind: "label", .. })
        ));
        let e = check_template(Some(&template(None, &[], &["kseal.dev/created"])), &[]);
        assert!(e.is_err());
        // kseal.dev/ can never be allowed by the operator
        let allowed = vec!["kseal.dev/".to_owned()];
        assert!(check_template(Some(&template(None, &["kseal.dev/key"], &[])), &allowed).is_err());
    }

    #[test]
    fn replication_annotations_are_refused_unless_allowed() {
        let t = template(
            None,
            &[],
            &["reflector.v1.k8s.emberstack.com/reflection-allowed"],
        );
        let e = check_template(Some(&t), &[]).unwrap_err();
        assert!(e.to_string().contains("other namespaces"), "{e}");
        let allowed = vec!["reflector.v1.k8s.emberstack.com/".to_owned()];
        assert!(check_template(Some(&t), &allowed).is_ok());
    }

    #[test]
    fn ordinary_templates_pass() {
        let t = template(
            Some("kubernetes.io/tls"),
            &["app", "app.kubernetes.io/name"],
            &[SKIP_OWNER_ANNOTATION, "example.com/owner"],
        );
        assert!(check_template(Some(&t), &[]).is_ok());
        assert!(check_template(None, &[]).is_ok());
    }
}
