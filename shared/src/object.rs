//! The shape every kseal custom resource shares on the wire: `apiVersion`, `kind`,
//! `metadata`, `spec` and an optional `status`, as kubectl writes them. A type declared
//! with [`namespaced_object!`] implements `k8s_openapi::Resource` and `Metadata`, which
//! is all kube's client and runtime need (kube implements its own `Resource` for every
//! such type), so this crate defines its kinds without depending on kube. The CRDs are
//! generated from the same types by `kseal-controller crd`.

/// Declares a namespaced custom resource `$name` of `$group/$version`, kind `$kind`,
/// served at `$plural`, holding `$spec` and an optional `$status`.
macro_rules! namespaced_object {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            group: $group:literal,
            version: $version:literal,
            kind: $kind:literal,
            plural: $plural:literal,
            spec: $spec:ty,
            status: $status:ty $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(serde::Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            // The API server validates metadata itself: it has no place in the schema.
            #[schemars(skip)]
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            pub spec: $spec,
            pub status: Option<$status>,
        }

        impl $name {
            /// The object `name` holding `spec`, with no namespace and no status yet.
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = 4 + usize::from(self.status.is_some());
                let mut object = ser.serialize_struct($kind, fields)?;
                object.serialize_field("apiVersion", <Self as k8s_openapi::Resource>::API_VERSION)?;
                object.serialize_field("kind", $kind)?;
                object.serialize_field("metadata", &self.metadata)?;
                object.serialize_field("spec", &self.spec)?;
                if let Some(status) = &self.status {
                    object.serialize_field("status", status)?;
                }
                object.end()
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = concat!($group, "/", $version);
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use namespaced_object;
