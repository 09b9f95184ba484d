//! What the controller keeps of a SealedSecret between reconciles: [`Cached`], the type
//! its watch and its cache hold, made from each SealedSecret as it is read.
//!
//! A reconcile of an object that is up to date reads its name, namespace, uid and
//! generation, its status, its recipients hint, its template and its item keys (the
//! shape of the Secret). That is all [`Cached`] keeps once the status records the
//! object unsealed: no labels, annotations, managedFields or timestamps, and the item
//! keys in one small slice instead of a map of ciphertexts (a map node alone is over
//! 500 bytes). Until then it keeps the whole spec, so a new object is unsealed without
//! reading it again. An unsealed object that must be decrypted again (a key change, a
//! Secret edited behind kseal's back) is read back from the API.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kseal_core::recipients::Fingerprint;
use kseal_core::resource::{SealedSecret, SealedSecretSpec, SealedSecretStatus, SecretTemplate};
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Deserializer};

/// A SealedSecret as the controller caches it (see the module documentation).
#[derive(Clone, Debug)]
pub struct Cached {
    /// Name, namespace, uid, generation, resourceVersion and deletionTimestamp; nothing
    /// else.
    pub metadata: ObjectMeta,
    pub status: Option<SealedSecretStatus>,
    spec: Spec,
}

#[derive(Clone, Debug)]
enum Spec {
    /// Not yet unsealed at this generation: everything, ciphertexts included.
    Whole(Box<SealedSecretSpec>),
    /// Unsealed: what deciding "nothing to do" reads.
    Shape {
        keys: Box<[Box<str>]>,
        recipients: Box<[Fingerprint]>,
        template: Option<Box<SecretTemplate>>,
    },
}

impl From<SealedSecret> for Cached {
    fn from(ss: SealedSecret) -> Self {
        let unsealed = unsealed(ss.metadata.generation, ss.status.as_ref());
        let SealedSecret {
            metadata,
            spec,
            status,
        } = ss;
        let metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            generation: metadata.generation,
            resource_version: metadata.resource_version,
            deletion_timestamp: metadata.deletion_timestamp,
            ..ObjectMeta::default()
        };
        let spec = if unsealed {
            Spec::Shape {
                keys: spec.encrypted_data.into_keys().map(Into::into).collect(),
                recipients: spec.recipients.into(),
                template: spec.template.map(Box::new),
            }
        } else {
            Spec::Whole(Box::new(spec))
        };
        Cached {
            metadata,
            status,
            spec,
        }
    }
}

impl<'de> Deserialize<'de> for Cached {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SealedSecret::deserialize(deserializer).map(Cached::from)
    }
}

impl Resource for Cached {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SealedSecret::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        SealedSecret::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        SealedSecret::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        SealedSecret::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Cached {
    /// The item keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let (whole, shape) = match &self.spec {
            Spec::Whole(spec) => (Some(spec.encrypted_data.keys().map(String::as_str)), None),
            Spec::Shape { keys, .. } => (None, Some(keys.iter().map(AsRef::as_ref))),
        };
        whole
            .into_iter()
            .flatten()
            .chain(shape.into_iter().flatten())
    }

    pub fn item_count(&self) -> usize {
        match &self.spec {
            Spec::Whole(spec) => spec.encrypted_data.len(),
            Spec::Shape { keys, .. } => keys.len(),
        }
    }

    /// The recipients hint.
    pub fn recipients(&self) -> &[Fingerprint] {
        match &self.spec {
            Spec::Whole(spec) => &spec.recipients,
            Spec::Shape { recipients, .. } => recipients,
        }
    }

    pub fn template(&self) -> Option<&SecretTemplate> {
        match &self.spec {
            Spec::Whole(spec) => spec.template.as_ref(),
            Spec::Shape { template, .. } => template.as_deref(),
        }
    }

    /// The whole SealedSecret, ciphertexts included, when the cache still holds it (its
    /// status does not record this generation as unsealed).
    pub fn whole(&self) -> Option<SealedSecret> {
        match &self.spec {
            Spec::Whole(spec) => Some(SealedSecret {
                metadata: self.metadata.clone(),
                spec: (**spec).clone(),
                status: None,
            }),
            Spec::Shape { .. } => None,
        }
    }

    /// Whether the status records this generation as unsealed.
    pub fn unsealed(&self) -> bool {
        unsealed(self.metadata.generation, self.status.as_ref())
    }
}

/// Whether `status` records `generation` as unsealed.
fn unsealed(generation: Option<i64>, status: Option<&SealedSecretStatus>) -> bool {
    status.is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn sealed(ready_generation: Option<i64>) -> SealedSecret {
        let mut ss = SealedSecret::new(
            "db",
            SealedSecretSpec {
                format_version: 1,
                scope: Default::default(),
                recipients: vec![Fingerprint("age1fp".into())],
                encrypted_data: [
                    ("b".into(), "CIPHER-B".into()),
                    ("a".into(), "CIPHER-A".into()),
                ]
                .into(),
                template: None,
            },
        );
        ss.metadata.namespace = Some("app".into());
        ss.metadata.uid = Some("u1".into());
        ss.metadata.generation = Some(2);
        ss.metadata.resource_version = Some("7".into());
        ss.metadata.labels = Some([("team".into(), "x".into())].into());
        ss.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{...}".into(),
            )]
            .into(),
        );
        ss.status = ready_generation.map(|g| SealedSecretStatus {
            observed_generation: Some(g),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Unsealed".into(),
                message: String::new(),
                observed_generation: Some(g),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            }],
        });
        ss
    }

    #[test]
    fn an_unsealed_object_keeps_its_shape_and_no_ciphertext() {
        let json = serde_json::to_string(&sealed(Some(2))).unwrap();
        let cached: Cached = serde_json::from_str(&json).unwrap();
        assert!(cached.unsealed());
        assert!(cached.whole().is_none());
        assert_eq!(cached.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cached.item_count(), 2);
        assert_eq!(cached.recipients(), [Fingerprint("age1fp".into())]);
        assert!(!format!("{cached:?}").contains("CIPHER"));
        let meta = &cached.metadata;
        assert_eq!(
            (
                meta.name.as_deref(),
                meta.namespace.as_deref(),
                meta.uid.as_deref()
            ),
            (Some("db"), Some("app"), Some("u1"))
        );
        assert_eq!(
            (meta.generation, meta.resource_version.as_deref()),
            (Some(2), Some("7"))
        );
        assert!(meta.labels.is_none() && meta.annotations.is_none());
    }

    #[test]
    fn an_object_not_yet_unsealed_keeps_everything_to_unseal() {
        for status in [None, Some(1)] {
            let cached = Cached::from(sealed(status));
            assert!(!cached.unsealed());
            let whole = cached.whole().expect("the whole spec");
            assert_eq!(whole.spec, sealed(status).spec);
            assert_eq!(whole.metadata.name.as_deref(), Some("db"));
            assert_eq!(cached.keys().collect::<Vec<_>>(), ["a", "b"]);
        }
    }

    #[test]
    fn it_is_the_sealedsecret_resource() {
        assert_eq!(Cached::api_version(&()), SealedSecret::api_version(&()));
        assert_eq!(Cached::plural(&()), "sealedsecrets");
        assert_eq!(Cached::kind(&()), "SealedSecret");
    }
}
