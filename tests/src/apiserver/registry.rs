//! The resource types the server knows: built-in kinds, plus every CRD created through it.

use serde_json::{Value, json};

/// One servable resource: `/api[s]/<group>/<version>/[namespaces/<ns>/]<plural>`.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// `/status` is a subresource with its own rules.
    pub status_subresource: bool,
    /// Custom resources: generation maintained, no strategic merge, PUT needs an RV.
    pub custom: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: false,
            custom: false,
            short_names: vec![],
            categories: vec![],
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `resource[.group]`, as error messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether this kind keeps `metadata.generation` (custom resources and CRDs).
    pub fn has_generation(&self) -> bool {
        self.custom || self.kind == "CustomResourceDefinition"
    }

    /// The `APIResource` entries for discovery.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut main = json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced,
                "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// The type a CRD object declares, one per served version.
    pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let kind = names["kind"].as_str().unwrap_or_default().to_owned();
        let plural = names["plural"].as_str().unwrap_or_default().to_owned();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == json!(false) {
                continue;
            }
            out.push(ResourceType {
                group: spec["group"].as_str().unwrap_or_default().into(),
                version: version["name"].as_str().unwrap_or_default().into(),
                plural: plural.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.clone(),
                namespaced: spec["scope"] != json!("Cluster"),
                status_subresource: version["subresources"]["status"].is_object(),
                custom: true,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
            });
        }
        out
    }
}

/// The built-in kinds the controller, the CLI and kubectl touch.
pub fn builtins() -> Vec<ResourceType> {
    let mut out = vec![
        ResourceType::builtin("", "v1", "namespaces", "Namespace", false),
        ResourceType::builtin("", "v1", "secrets", "Secret", true),
        ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true),
        ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true),
        ResourceType::builtin("", "v1", "services", "Service", true),
        ResourceType::builtin("", "v1", "pods", "Pod", true),
        ResourceType::builtin("", "v1", "events", "Event", true),
        ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
        ResourceType::builtin("apps", "v1", "deployments", "Deployment", true),
        ResourceType::builtin("batch", "v1", "cronjobs", "CronJob", true),
        ResourceType::builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
        ResourceType::builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
        ),
        ResourceType::builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true),
        ResourceType::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        ResourceType::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
    ];
    for t in &mut out {
        match t.plural.as_str() {
            "namespaces" => t.short_names = vec!["ns".into()],
            "secrets" | "configmaps" => t.categories = vec![],
            "customresourcedefinitions" => {
                t.short_names = vec!["crd".into(), "crds".into()];
                t.status_subresource = true;
            }
            "pods" | "services" | "deployments" | "cronjobs" | "poddisruptionbudgets" => {
                t.status_subresource = true
            }
            _ => {}
        }
    }
    out
}
