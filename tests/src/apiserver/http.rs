//! Request handling: authentication, routing of Kubernetes paths, authorization, verbs,
//! and the non-resource and control endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::{Value, json};

use super::discovery;
use super::patch::{PatchType, apply_patch, unsupported_media_type};
use super::rbac::{self, Attributes, User};
use super::registry::ResourceType;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};
use super::store::{Store, WriteCtx, partial};
use super::watch;

/// Faults a test can switch on.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*`) → the
    /// fraction of requests answered with 500.
    pub error_rate: HashMap<String, f64>,
    /// Added to every request.
    pub latency: Duration,
    /// Every watch is cut after about this long.
    pub drop_watches_after: Option<Duration>,
}

/// A programmed answer for a non-resource path such as `/metrics` or `/readyz`.
#[derive(Clone, Debug)]
pub struct Programmed {
    pub status: u16,
    pub body: String,
    /// Served when the query has `verbose`.
    pub verbose_body: Option<String>,
    pub content_type: String,
}

pub struct Shared {
    /// Shared with peer servers: several apiservers, one etcd.
    pub store: Arc<Mutex<Store>>,
    pub tokens: Arc<Mutex<HashMap<String, User>>>,
    /// This apiserver's storage transformers, as its metrics show them.
    pub storage: Mutex<super::storage::StorageModel>,
    pub faults: Mutex<Faults>,
    pub programmed: Mutex<HashMap<String, Programmed>>,
    pub bookmark_interval: Duration,
    pub default_watch_timeout: Duration,
    /// Requests answered with an injected error, watches cut and 410s forced so far.
    pub injected: FaultCounters,
}

#[derive(Debug, Default)]
pub struct FaultCounters {
    pub errors: std::sync::atomic::AtomicU64,
    pub dropped_watches: std::sync::atomic::AtomicU64,
    pub forced_gone: std::sync::atomic::AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Query parameters, with `?&a=b`, bare `?` and `+`-as-space handled as the real server does.
pub type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What a resource path names.
#[derive(Clone, Debug)]
pub struct Target {
    pub t: ResourceType,
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// `Some(Ok)` for a resource path, `Some(Err)` for an unknown resource, `None` for a
/// non-resource path.
fn parse_target(store: &Store, path: &str) -> Option<ApiResult<Target>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| store.find_type(group, version, plural);
    let namespaced_form =
        rest.len() >= 3 && rest[0] == "namespaces" && find(rest[2]).is_some_and(|t| t.namespaced);
    let (namespace, rest) = if namespaced_form {
        (rest[1], &rest[2..])
    } else {
        ("", rest)
    };
    let Some(t) = find(rest[0]) else {
        return Some(Err(ApiError::unknown_path()));
    };
    if rest.len() > 3 {
        return Some(Err(ApiError::unknown_path()));
    }
    let sub = rest.get(2).map(|s| s.to_string());
    if sub
        .as_deref()
        .is_some_and(|s| s != "status" || !t.status_subresource)
    {
        return Some(Err(ApiError::unknown_path()));
    }
    Some(Ok(Target {
        namespace: namespace.to_owned(),
        name: rest.get(1).map(|s| s.to_string()),
        sub,
        t,
    }))
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<User, ApiError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Ok(User::anonymous());
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or_default().trim();
    lock(&shared.tokens)
        .get(token)
        .cloned()
        .ok_or_else(|| ApiError::new(401, "Unauthorized", "Unauthorized"))
}

pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, 64 * 1024 * 1024).await else {
        return ApiError::bad_request("request body too large or unreadable").into_response();
    };
    let latency = lock(&shared.faults).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let user = match authenticate(&shared, &parts.headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let query = parse_query(parts.uri.query());
    let path = parts.uri.path().to_owned();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return ApiError::new(
            415,
            "UnsupportedMediaType",
            "this test server accepts JSON and YAML bodies only, not protobuf",
        )
        .into_response();
    }
    if let Some(control) = path.strip_prefix("/_kseal-test/") {
        if !user.is_admin() {
            return ApiError::new(
                403,
                "Forbidden",
                "the test control API needs the admin identity",
            )
            .into_response();
        }
        return super::server::control(&shared, &parts.method, control, &body);
    }
    let target = {
        let store = lock(&shared.store);
        parse_target(&store, &path)
    };
    match target {
        None => non_resource(&shared, &user, &parts.method, &path, &query, &parts.headers),
        Some(Err(e)) => e.into_response(),
        Some(Ok(target)) => match resource(
            &shared,
            &user,
            &parts.method,
            &parts.headers,
            &query,
            target,
            &body,
        ) {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
    }
}

fn non_resource(
    shared: &Shared,
    user: &User,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Response {
    let attrs = Attributes::NonResource {
        verb: method.as_str().to_lowercase(),
        path: path.to_owned(),
    };
    if !rbac::authorize(&lock(&shared.store), user, &attrs) {
        return ApiError::new(403, "Forbidden", rbac::forbidden_message(user, &attrs))
            .into_response();
    }
    if let Some(p) = lock(&shared.programmed).get(path).cloned() {
        let mut body = match (&p.verbose_body, query.contains_key("verbose")) {
            (Some(v), true) => v.clone(),
            _ => p.body.clone(),
        };
        if path == "/metrics" && p.status == 200 {
            body.push_str(&lock(&shared.storage).render());
        }
        let code = StatusCode::from_u16(p.status).unwrap_or(StatusCode::OK);
        return (code, [("content-type", p.content_type.clone())], body).into_response();
    }
    if path == "/metrics" {
        let body = lock(&shared.storage).render();
        return (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            body,
        )
            .into_response();
    }
    if matches!(path, "/healthz" | "/readyz" | "/livez") {
        return (StatusCode::OK, [("content-type", "text/plain")], "ok").into_response();
    }
    match discovery::serve(&lock(&shared.store), path, headers) {
        Some(body) => json_response(200, &body),
        None => ApiError::unknown_path().into_response(),
    }
}

/// The RBAC verb of a resource request.
fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn accepts_metadata(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// Decodes a request body: JSON, or YAML (apply bodies may be YAML).
fn decode_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text).map_err(|e| {
            ApiError::bad_request(format!("error decoding body: {}", e.without_snippet()))
        })
    })
}

fn manager(query: &Query, headers: &HeaderMap) -> ApiResult<String> {
    let m = match query.get("fieldManager") {
        Some(m) => m.clone(),
        None => headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or_default().to_owned())
            .unwrap_or_default(),
    };
    if m.len() > 128 {
        return Err(ApiError::bad_request(
            "fieldManager: Too long: may not be more than 128 bytes",
        ));
    }
    Ok(m)
}

/// Serves a resource request; a successful Secret write or single read is counted by the
/// storage model, as kube-apiserver's transformers count it.
fn resource(
    shared: &Arc<Shared>,
    user: &User,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    target: Target,
    body: &[u8],
) -> ApiResult<Response> {
    let secrets = target.t.group.is_empty() && target.t.plural == "secrets";
    let verb = verb_of(method, &target, query);
    let result = serve_resource(shared, user, method, headers, query, target, body);
    if secrets && result.as_ref().is_ok_and(|r| r.status().is_success()) {
        match verb {
            "create" | "update" | "patch" => lock(&shared.storage).record(true),
            "get" => lock(&shared.storage).record(false),
            _ => {}
        }
    }
    result
}

fn serve_resource(
    shared: &Arc<Shared>,
    user: &User,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    target: Target,
    body: &[u8],
) -> ApiResult<Response> {
    let verb = verb_of(method, &target, query);
    let dry_run_body = method == Method::DELETE && body.windows(6).any(|w| w == b"dryRun");
    if query.contains_key("dryRun") || dry_run_body {
        // Refused rather than ignored: a test must never believe a dry run left no trace.
        return Err(ApiError::bad_request(
            "dryRun is not supported by the kseal test API server",
        ));
    }
    let field_selector = query
        .get("fieldSelector")
        .map(|s| FieldSelector::parse(s, &target.t.kind))
        .transpose()?;
    let rbac_name = target
        .name
        .clone()
        .or_else(|| {
            field_selector
                .as_ref()
                .and_then(|f| f.single_name().map(str::to_owned))
        })
        .unwrap_or_default();
    let resource_name = match &target.sub {
        Some(s) => format!("{}/{s}", target.t.plural),
        None => target.t.plural.clone(),
    };
    let attrs = |verb: &str| Attributes::Resource {
        verb: verb.to_owned(),
        group: target.t.group.clone(),
        resource: resource_name.clone(),
        namespace: target.namespace.clone(),
        name: if verb == "create" {
            String::new()
        } else {
            rbac_name.clone()
        },
    };
    {
        let store = lock(&shared.store);
        if !rbac::authorize(&store, user, &attrs(verb)) {
            let a = attrs(verb);
            return Err(
                ApiError::new(403, "Forbidden", rbac::forbidden_message(user, &a)).with_details(
                    json!({"name": rbac_name, "group": target.t.group, "kind": target.t.plural}),
                ),
            );
        }
    }
    {
        let faults = lock(&shared.faults);
        let rate = faults
            .error_rate
            .get(verb)
            .or_else(|| faults.error_rate.get("*"))
            .copied()
            .unwrap_or(0.0);
        if rate > 0.0 && rand::rng().random_bool(rate.min(1.0)) {
            shared
                .injected
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::new(
                500,
                "InternalError",
                format!("injected fault on {verb}"),
            ));
        }
    }
    let meta = accepts_metadata(headers);
    let render = |obj: Value| if meta { partial(&obj) } else { obj };
    let t = &target.t;
    let ns = target.namespace.as_str();
    match verb {
        "get" => {
            let store = lock(&shared.store);
            let name = target.name.as_deref().unwrap_or_default();
            let obj = store
                .get(t, ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(t, name))?;
            Ok(json_response(200, &render(obj)))
        }
        "list" => list(shared, &target, query, field_selector, meta),
        "watch" => {
            let labels = label_selector(query)?;
            watch::start(
                shared.clone(),
                target,
                query,
                labels,
                field_selector.unwrap_or_default(),
                meta,
            )
        }
        "create" => {
            if target.name.is_some() {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                ));
            }
            let mut obj = decode_body(body)?;
            check_namespace(t, ns, &mut obj)?;
            let manager = manager(query, headers)?;
            let created = lock(&shared.store).create(
                t,
                obj,
                &WriteCtx {
                    manager: &manager,
                    subresource: None,
                },
            )?;
            Ok(json_response(201, &render(created)))
        }
        "update" => {
            let name = target.name.clone().unwrap_or_default();
            let mut obj = decode_body(body)?;
            check_namespace(t, ns, &mut obj)?;
            let manager = manager(query, headers)?;
            let ctx = WriteCtx {
                manager: &manager,
                subresource: target.sub.as_deref(),
            };
            let updated = lock(&shared.store).update(t, ns, &name, obj, &ctx, false)?;
            Ok(json_response(200, &render(updated)))
        }
        "patch" => patch(
            shared,
            user,
            headers,
            query,
            &target,
            body,
            &attrs("create"),
        )
        .map(|(obj, code)| json_response(code, &render(obj))),
        "delete" => {
            let name = target.name.clone().unwrap_or_default();
            let options = if body.is_empty() {
                json!({})
            } else {
                decode_body(body)?
            };
            let result = lock(&shared.store).delete(t, ns, &name, &options)?;
            let is_status = result["kind"] == "Status";
            Ok(json_response(
                200,
                &if is_status { result } else { render(result) },
            ))
        }
        "deletecollection" => {
            let labels = label_selector(query)?;
            let fields = field_selector.unwrap_or_default();
            let mut store = lock(&shared.store);
            let names: Vec<(String, String)> = store
                .list(t, if ns.is_empty() { None } else { Some(ns) })
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| {
                    (
                        o["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        o["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (o_ns, name) in names {
                if let Ok(v) = store.delete(t, &o_ns, &name, &json!({})) {
                    items.push(v);
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// The request's label selector; empty (matching everything) when there is none.
fn label_selector(query: &Query) -> ApiResult<LabelSelector> {
    query
        .get("labelSelector")
        .map(|s| LabelSelector::parse(s))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn check_namespace(t: &ResourceType, url_ns: &str, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if !t.namespaced {
        return Ok(());
    }
    match obj["metadata"]["namespace"].as_str() {
        Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = json!(url_ns);
            Ok(())
        }
    }
}

fn patch(
    shared: &Shared,
    user: &User,
    headers: &HeaderMap,
    query: &Query,
    target: &Target,
    body: &[u8],
    create_attrs: &Attributes,
) -> ApiResult<(Value, u16)> {
    let t = &target.t;
    let ns = target.namespace.as_str();
    let name = target.name.clone().unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchType::from_content_type(content_type).ok_or_else(unsupported_media_type)?;
    let force = query.get("force").is_some_and(|f| f == "true");
    if force && kind != PatchType::Apply {
        return Err(ApiError::invalid(
            t,
            &name,
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let ctx_sub = target.sub.as_deref();
    if kind == PatchType::Apply {
        let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
                .with_details(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})));
        };
        let mut config = decode_body(body)?;
        if t.namespaced {
            check_namespace(t, ns, &mut config)?;
        }
        let mut store = lock(&shared.store);
        if store.get(t, ns, &name).is_none() && !rbac::authorize(&store, user, create_attrs) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                rbac::forbidden_message(user, create_attrs),
            ));
        }
        let ctx = WriteCtx {
            manager,
            subresource: ctx_sub,
        };
        let (obj, created) = store.apply(t, ns, &name, config, &ctx, force)?;
        return Ok((obj, if created { 201 } else { 200 }));
    }
    let manager = manager(query, headers)?;
    let mut store = lock(&shared.store);
    let current = store
        .get(t, ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(t, &name))?;
    let mut patched = current.clone();
    apply_patch(t, kind, &mut patched, body)?;
    // A resourceVersion in the patch is a precondition; without one the patch applies to
    // whatever is stored.
    let rv_in_patch =
        patched["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"];
    if !rv_in_patch {
        patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    }
    let ctx = WriteCtx {
        manager: &manager,
        subresource: ctx_sub,
    };
    Ok((store.update(t, ns, &name, patched, &ctx, false)?, 200))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &Query,
    fields: Option<FieldSelector>,
    meta: bool,
) -> ApiResult<Response> {
    let t = &target.t;
    let labels = label_selector(query)?;
    let fields = fields.unwrap_or_default();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let store = lock(&shared.store);
    let (snapshot_rv, after) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
                .ok_or_else(|| ApiError::bad_request(format!("invalid continue token: {token}")))?;
            if decoded.rv < store.oldest_rv.saturating_sub(1) {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            (decoded.rv, Some((decoded.ns, decoded.name)))
        }
        None => (store.rv, None),
    };
    let ns_filter = if target.namespace.is_empty() {
        None
    } else {
        Some(target.namespace.as_str())
    };
    let after_ref = after
        .as_ref()
        .map(|(ns, name)| (ns.as_str(), name.as_str()));
    let mut matching = store
        .range(t, ns_filter, after_ref)
        .filter(|o| labels.matches(o) && fields.matches(o));
    let page: Vec<&Value> = matching.by_ref().take(limit).collect();
    let more = matching.next().is_some();
    let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
    if more && let Some(last) = page.last() {
        let token = ContinueToken {
            rv: snapshot_rv,
            ns: last["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: last["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        metadata["continue"] =
            json!(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default()));
    }
    let (kind, api_version) = if meta {
        (
            "PartialObjectMetadataList".to_owned(),
            "meta.k8s.io/v1".to_owned(),
        )
    } else {
        (format!("{}List", t.kind), t.api_version())
    };
    // Written item by item from the stored objects: no copy of the whole list.
    let mut out = Vec::with_capacity(page.len() * 512 + 256);
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}).to_string();
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = if meta {
            serde_json::to_writer(&mut out, &partial(item))
        } else {
            serde_json::to_writer(&mut out, item)
        };
        if written.is_err() {
            return Err(ApiError::new(
                500,
                "InternalError",
                "serializing a list failed",
            ));
        }
    }
    out.extend_from_slice(b"]}");
    drop(matching);
    drop(store);
    Ok((StatusCode::OK, [("content-type", "application/json")], out).into_response())
}
