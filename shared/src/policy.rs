//! What a SealedSecret may make the controller write.
//!
//! The template (type, labels, annotations, plain data) is not authenticated: anyone who
//! can write the SealedSecret, or the Git file it comes from, chooses it, without knowing
//! any sealed value. Whoever may create SealedSecrets in a namespace may so create
//! Secrets there; what must not follow is power beyond that namespace. So the controller
//! refuses, for every SealedSecret:
//! - the controller's own namespace (where its keys live), the namespace it imports the
//!   Bitnami keys from, and any namespace the operator denies: unsealing never writes
//!   there; and `kube-system` unless the operator opts in (`--allow-kube-system`), since
//!   the apiserver and cluster add-ons act on Secrets there with cluster-wide power;
//! - Secret types another component acts on with power of its own: the controller's key
//!   type (`kseal.dev/…`), `kubernetes.io/service-account-token` (the token controller
//!   would mint a token for the named ServiceAccount), `bootstrap.kubernetes.io/token`
//!   (the apiserver authenticates it, as a node joining the cluster on kubeadm clusters)
//!   and `helm.sh/release.v1` (Helm would take it as a release record, and uninstall or
//!   roll back what it lists with the rights of whoever runs Helm; so the label
//!   `owner=helm` Helm finds them by, too);
//! - labels and annotations under `kseal.dev/` (instructions to kseal itself; the one the
//!   template may carry is [`SKIP_OWNER_ANNOTATION`]), the Bitnami key label,
//!   ServiceAccount-token annotations, and the annotations that replication controllers
//!   (reflector, kubed, the Mittwald replicator) follow to copy a Secret into other
//!   namespaces, which would send a value where its sealed scope says it must not go. An
//!   operator may allow the replication and ServiceAccount prefixes, never the first two.
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
pub const FORBIDDEN_TYPES: &[&str] = &[
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
    "helm.sh/release.v1",
];

/// Label values a template may not set, as (key, value): Helm finds its release records
/// by `owner=helm`, whatever their type.
pub const FORBIDDEN_LABELS: &[(&str, &str)] = &[("owner", "helm")];

/// The namespace where the apiserver reads bootstrap tokens and add-ons keep cluster-wide
/// credentials: refused unless the operator opts in.
pub const KUBE_SYSTEM: &str = "kube-system";

/// Prefixes of Secret types a template may not set (the controller's key type).
pub const FORBIDDEN_TYPE_PREFIXES: &[&str] = &["kseal.dev/"];

/// Prefixes of [`FORBIDDEN_METADATA_PREFIXES`] no operator setting re-opens: they would
/// make the Secret a key, of kseal or of Bitnami sealed-secrets.
pub const NEVER_ALLOWED_PREFIXES: &[&str] =
    &["kseal.dev/", "sealedsecrets.bitnami.com/sealed-secrets-key"];

/// Prefixes of label and annotation keys a template may not set, unless the operator
/// allows them (`--allow-template-metadata`; not [`NEVER_ALLOWED_PREFIXES`]).
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
    #[error(
        "namespace {0:?} holds the Bitnami sealed-secrets keys the controller imports: SealedSecrets are never unsealed there"
    )]
    BitnamiKeysNamespace(String),
    #[error(
        "namespace \"kube-system\" is refused unless the controller runs with --allow-kube-system: the apiserver and add-ons act on Secrets there"
    )]
    KubeSystem,
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
            PolicyError::ControllerNamespace(_)
            | PolicyError::DeniedNamespace(_)
            | PolicyError::BitnamiKeysNamespace(_)
            | PolicyError::KubeSystem => Reason::ForbiddenNamespace,
            PolicyError::ForbiddenType(_) | PolicyError::ForbiddenMetadata { .. } => {
                Reason::ForbiddenTemplate
            }
        }
    }
}

/// Where unsealing may write.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    /// The controller's own namespace (its keys).
    pub controller: String,
    /// Where the controller imports the Bitnami keys from, if it does.
    pub bitnami_keys: Option<String>,
    /// Denied by the operator (`--deny-namespaces`).
    pub denied: Vec<String>,
    /// `kube-system` allowed (`--allow-kube-system`).
    pub allow_kube_system: bool,
}

impl Namespaces {
    /// Refuses the controller's namespace, the Bitnami keys', the denied ones, and
    /// `kube-system` unless allowed.
    pub fn check(&self, namespace: &str) -> Result<(), PolicyError> {
        if namespace == self.controller {
            return Err(PolicyError::ControllerNamespace(namespace.to_owned()));
        }
        if self.bitnami_keys.as_deref() == Some(namespace) {
            return Err(PolicyError::BitnamiKeysNamespace(namespace.to_owned()));
        }
        if self.denied.iter().any(|d| d == namespace) {
            return Err(PolicyError::DeniedNamespace(namespace.to_owned()));
        }
        if namespace == KUBE_SYSTEM && !self.allow_kube_system {
            return Err(PolicyError::KubeSystem);
        }
        Ok(())
    }
}

/// What a template may set. `allowed` lists label or annotation key prefixes the operator
/// allows despite [`FORBIDDEN_METADATA_PREFIXES`] (never [`NEVER_ALLOWED_PREFIXES`]).
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
    if let Some((key, value)) = FORBIDDEN_LABELS
        .iter()
        .find(|(k, v)| meta.labels.get(*k).is_some_and(|set| set == v))
    {
        return Err(PolicyError::ForbiddenMetadata {
            kind: "label",
            key: format!("{key}={value}"),
            why: "Helm would take the Secret as one of its release records",
        });
    }
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
        let operator_allowed = !NEVER_ALLOWED_PREFIXES.contains(prefix)
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
        let mut namespaces = Namespaces {
            controller: "kseal-system".into(),
            denied: vec!["legacy".to_owned()],
            ..Default::default()
        };
        assert_eq!(
            namespaces.check("kseal-system").unwrap_err().reason(),
            crate::reason::Reason::ForbiddenNamespace
        );
        assert!(namespaces.check("legacy").is_err());
        assert!(namespaces.check("shop").is_ok());
        // kube-system: refused unless allowed, and always when the Bitnami keys are there
        assert_eq!(
            namespaces.check("kube-system"),
            Err(PolicyError::KubeSystem)
        );
        namespaces.allow_kube_system = true;
        assert!(namespaces.check("kube-system").is_ok());
        namespaces.bitnami_keys = Some("kube-system".into());
        assert_eq!(
            namespaces.check("kube-system"),
            Err(PolicyError::BitnamiKeysNamespace("kube-system".into()))
        );
    }

    #[test]
    fn credential_types_and_helm_records_are_refused() {
        for t in ["bootstrap.kubernetes.io/token", "helm.sh/release.v1"] {
            let e = check_template(Some(&template(Some(t), &[], &[])), &[]).unwrap_err();
            assert_eq!(e, PolicyError::ForbiddenType(t.into()));
        }
        let mut helm = template(Some("Opaque"), &["name"], &[]);
        if let Some(meta) = helm.metadata.as_mut() {
            meta.labels.insert("owner".into(), "helm".into());
        }
        let e = check_template(Some(&helm), &[]).unwrap_err();
        assert!(e.to_string().contains("owner=helm"), "{e}");
        // another owner is an ordinary label
        if let Some(meta) = helm.metadata.as_mut() {
            meta.labels.insert("owner".into(), "team-a".into());
        }
        assert!(check_template(Some(&helm), &[]).is_ok());
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
        // kseal.dev/ and the Bitnami key label can never be allowed by the operator
        let allowed = vec![
            "kseal.dev/".to_owned(),
            "sealedsecrets.bitnami.com/".to_owned(),
        ];
        assert!(check_template(Some(&template(None, &["kseal.dev/key"], &[])), &allowed).is_err());
        let bitnami = template(None, &["sealedsecrets.bitnami.com/sealed-secrets-key"], &[]);
        assert!(check_template(Some(&bitnami), &allowed).is_err());
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
