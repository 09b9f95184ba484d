//! Authentication (bearer tokens) and RBAC authorization over the Role, ClusterRole,
//! RoleBinding and ClusterRoleBinding objects in the store.

use serde_json::Value;

use super::store::Store;

/// Who is calling.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The user a ServiceAccount token authenticates as.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// What a request asks to do, as RBAC sees it.
#[derive(Clone, Debug)]
pub enum Attributes {
    Resource {
        verb: String,
        group: String,
        resource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array().is_some_and(|a| {
        a.iter()
            .any(|v| v.as_str() == Some(want) || v.as_str() == Some("*"))
    })
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            name,
            ..
        } => {
            if !has(&rule["verbs"], verb) || !has(&rule["apiGroups"], group) {
                return false;
            }
            let resource_ok = rule["resources"].as_array().is_some_and(|rs| {
                rs.iter().filter_map(Value::as_str).any(|r| {
                    r == "*"
                        || r == resource
                        || resource
                            .split_once('/')
                            .is_some_and(|(_, sub)| r == format!("*/{sub}"))
                })
            });
            let names_ok = match rule["resourceNames"].as_array() {
                None => true,
                Some(ns) if ns.is_empty() => true,
                Some(ns) => !name.is_empty() && ns.iter().any(|n| n.as_str() == Some(name)),
            };
            resource_ok && names_ok
        }
        Attributes::NonResource { verb, path } => {
            has(&rule["verbs"], verb)
                && rule["nonResourceURLs"].as_array().is_some_and(|urls| {
                    urls.iter().filter_map(Value::as_str).any(|u| {
                        u == "*"
                            || u == path
                            || u.strip_suffix('*')
                                .is_some_and(|prefix| path.starts_with(prefix))
                    })
                })
        }
    }
}

fn subject_matches(subject: &Value, user: &User) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            user.name
                == format!(
                    "system:serviceaccount:{}:{name}",
                    subject["namespace"].as_str().unwrap_or_default()
                )
        }
        _ => false,
    }
}

/// The discovery and health paths every authenticated user may read
/// (the `system:discovery` and `system:public-info-viewer` bootstrap roles).
fn public_path(path: &str) -> bool {
    matches!(
        path,
        "/livez"
            | "/readyz"
            | "/healthz"
            | "/version"
            | "/version/"
            | "/api"
            | "/apis"
            | "/openapi"
    ) || ["/api/", "/apis/", "/openapi/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Deny by default; the union of every binding that names the user.
pub fn authorize(store: &Store, user: &User, attrs: &Attributes) -> bool {
    if user.is_admin() {
        return true;
    }
    if let Attributes::NonResource { path, verb } = attrs
        && verb == "get"
        && public_path(path)
        && user.groups.iter().any(|g| g == "system:authenticated")
    {
        return true;
    }
    let rbac = "rbac.authorization.k8s.io";
    let role = |kind: &str, ns: &str, name: &str| -> Option<Value> {
        let (plural, ns) = if kind == "ClusterRole" {
            ("clusterroles", "")
        } else {
            ("roles", ns)
        };
        store
            .objects
            .get(&(
                rbac.to_owned(),
                plural.to_owned(),
                ns.to_owned(),
                name.to_owned(),
            ))
            .cloned()
    };
    let granted_by = |binding: &Value, binding_ns: &str| -> bool {
        if !binding["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user)))
        {
            return false;
        }
        let r = &binding["roleRef"];
        let Some(role) = role(
            r["kind"].as_str().unwrap_or_default(),
            binding_ns,
            r["name"].as_str().unwrap_or_default(),
        ) else {
            return false;
        };
        role["rules"]
            .as_array()
            .is_some_and(|rules| rules.iter().any(|rule| rule_allows(rule, attrs)))
    };
    let cluster_bindings = store
        .objects
        .iter()
        .filter(|((g, p, _, _), _)| g == rbac && p == "clusterrolebindings");
    if cluster_bindings.into_iter().any(|(_, b)| granted_by(b, "")) {
        return true;
    }
    let Attributes::Resource { namespace, .. } = attrs else {
        return false;
    };
    if namespace.is_empty() {
        return false;
    }
    store
        .objects
        .iter()
        .filter(|((g, p, ns, _), _)| g == rbac && p == "rolebindings" && ns == namespace)
        .any(|(_, b)| granted_by(b, namespace))
}

/// The 403 message the real server writes.
pub fn forbidden_message(user: &User, attrs: &Attributes) -> String {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            namespace,
            name,
        } => {
            let prefix = if name.is_empty() {
                format!("{resource} is forbidden")
            } else {
                format!("{resource} \"{name}\" is forbidden")
            };
            let place = if namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{namespace}\"")
            };
            let base = resource.split('/').next().unwrap_or_default();
            let qualified = if group.is_empty() {
                base.to_owned()
            } else {
                format!("{base}.{group}")
            };
            let prefix = prefix.replacen(resource.as_str(), &qualified, 1);
            format!(
                "{prefix}: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {place}",
                user.name
            )
        }
        Attributes::NonResource { verb, path } => {
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                user.name
            )
        }
    }
}
