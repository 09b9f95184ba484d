//! The CustomResourceDefinitions of kseal's kinds (`kseal-controller crd`, committed as
//! `manifests/crd.yaml`): generated from kseal-core's types, with the structural schema
//! Kubernetes requires (kube's schema transforms over schemars' OpenAPI 3 output) and the
//! names and columns kubectl shows.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kseal_core::resource::{SealedSecret, SealedSecretRequest};
use schemars::JsonSchema;

/// The CRDs as YAML, exactly as committed in `manifests/crd.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let sealed_secret = definition::<SealedSecret>(
        "kss",
        &[
            ("Ready", "string", READY_STATUS, None),
            ("Reason", "string", READY_REASON, None),
            ("Scope", "string", ".spec.scope", Some(1)),
            AGE,
        ],
    );
    let request = definition::<SealedSecretRequest>(
        "kssr",
        &[
            ("Operation", "string", ".spec.operation", None),
            ("Result", "string", ".status.phase", None),
            ("Reason", "string", ".status.reason", None),
            AGE,
        ],
    );
    Ok(format!(
        "# Generated from kseal-core's Rust types; do not edit.\n# Regenerate: KSEAL_UPDATE_CRD=1 cargo test -p kseal-controller --test crd\n{}---\n{}",
        serde_saphyr::to_string(&sealed_secret)?,
        serde_saphyr::to_string(&request)?
    ))
}

const READY_STATUS: &str = ".status.conditions[?(@.type==\"Ready\")].status";
const READY_REASON: &str = ".status.conditions[?(@.type==\"Ready\")].reason";
/// A printer column: name, type, JSONPath and priority (shown with `-o wide` when 1).
type Column = (&'static str, &'static str, &'static str, Option<i32>);
const AGE: Column = ("Age", "date", ".metadata.creationTimestamp", None);

/// The CRD of the namespaced kind `K`, in kseal's category, with a status subresource.
fn definition<K>(short_name: &str, columns: &[Column]) -> CustomResourceDefinition
where
    K: JsonSchema + k8s_openapi::Resource,
{
    let plural = K::URL_PATH_SEGMENT;
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            // The apiserver allows neither `$ref` definitions nor a `$schema`.
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let schema = serde_json::to_value(generator.into_root_schema_for::<K>())
        .and_then(serde_json::from_value)
        .expect("schemars writes a valid JSONSchemaProps for kseal's types");
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.{}", K::GROUP)),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: K::GROUP.to_owned(),
            names: CustomResourceDefinitionNames {
                categories: Some(vec!["kseal".to_owned()]),
                kind: K::KIND.to_owned(),
                plural: plural.to_owned(),
                short_names: Some(vec![short_name.to_owned()]),
                singular: Some(K::KIND.to_ascii_lowercase()),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Namespaced".to_owned(),
            versions: vec![CustomResourceDefinitionVersion {
                additional_printer_columns: Some(
                    columns
                        .iter()
                        .map(
                            |&(name, type_, json_path, priority)| CustomResourceColumnDefinition {
                                json_path: json_path.to_owned(),
                                name: name.to_owned(),
                                priority,
                                type_: type_.to_owned(),
                                ..CustomResourceColumnDefinition::default()
                            },
                        )
                        .collect(),
                ),
                name: K::VERSION.to_owned(),
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema),
                }),
                served: true,
                storage: true,
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
                    ..CustomResourceSubresources::default()
                }),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        ..CustomResourceDefinition::default()
    }
}
