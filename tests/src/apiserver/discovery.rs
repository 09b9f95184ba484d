//! Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`, in
//! the legacy (non-aggregated) shapes, which both kube-rs and kubectl accept.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::store::Store;

pub fn serve(store: &Store, path: &str, _headers: &HeaderMap) -> Option<Value> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Some(json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.13-kseal-test", "gitCommit": "0000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
            "compiler": "gc", "platform": "linux/amd64",
        })),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        ["api", v] => resource_list(store, "", v),
        ["apis"] => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups(store).into_values().collect::<Vec<_>>()}),
        ),
        ["apis", g] => groups(store).remove(*g),
        ["apis", g, v] => resource_list(store, g, v),
        ["openapi", "v3"] => Some(openapi_index(store)),
        ["openapi", "v3", "api", v] => Some(openapi_group_version(store, "", v)),
        ["openapi", "v3", "apis", g, v] => Some(openapi_group_version(store, g, v)),
        _ => None,
    }
}

/// `/openapi/v3`: one entry per group/version.
fn openapi_index(store: &Store) -> Value {
    let mut paths = serde_json::Map::new();
    for t in &store.types {
        let (key, url) = if t.group.is_empty() {
            (
                format!("api/{}", t.version),
                format!("/openapi/v3/api/{}", t.version),
            )
        } else {
            (
                format!("apis/{}/{}", t.group, t.version),
                format!("/openapi/v3/apis/{}/{}", t.group, t.version),
            )
        };
        paths.insert(
            key,
            json!({"serverRelativeURL": format!("{url}?hash={}", store.rv)}),
        );
    }
    json!({"paths": paths})
}

/// A group/version document with one PATCH operation per kind, carrying the GVK and the
/// `fieldValidation` parameter: what `kubectl apply --validate=strict` looks for before
/// it leaves validation to the server. No schemas: the server keeps unknown fields.
fn openapi_group_version(store: &Store, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for t in store
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        paths.insert(path, json!({"patch": {
            "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
        }}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.13"}, "paths": paths})
}

fn groups(store: &Store) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for t in store.types.iter().filter(|t| !t.group.is_empty()) {
        let gv = json!({"groupVersion": t.api_version(), "version": t.version});
        let entry = out.entry(t.group.clone()).or_insert_with(|| {
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": t.group, "versions": [], "preferredVersion": gv})
        });
        if let Some(versions) = entry["versions"].as_array_mut()
            && !versions.contains(&gv)
        {
            versions.push(gv);
        }
    }
    out
}

fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = store
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(|t| t.discovery_entries())
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
