//! The object store: every object as JSON, one global resourceVersion counter, a bounded
//! history of change events for watches, and the write rules of the API server
//! (uid/creationTimestamp/generation, status subresource, optimistic concurrency,
//! finalizers and ownerReference garbage collection).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::fields::{self, Part, Writer};
use super::registry::{ResourceType, builtins};
use super::status::{ApiError, ApiResult};

/// Where an object lives: (group, plural, namespace, name); namespace `""` when cluster-scoped.
pub type Key = (String, String, String, String);

/// A change, as watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
    /// The previous state for MODIFIED, so watchers with selectors can see transitions.
    pub old: Option<Value>,
}

/// What broadcasts to live watchers.
#[derive(Clone, Debug)]
pub enum Signal {
    Change(Arc<Event>),
    /// History was compacted: every open watch must end with a 410 ERROR event.
    Expire,
    /// Drop every open watch connection (fault injection).
    Drop,
}

pub struct Store {
    pub rv: u64,
    pub types: Vec<ResourceType>,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Arc<Event>>,
    pub history_limit: usize,
    /// Watches from a resourceVersion below this get 410.
    pub oldest_rv: u64,
    pub tx: broadcast::Sender<Signal>,
    /// Every change ever made, never compacted: what tests inspect to prove that no
    /// intermediate state was ever written.
    pub audit: Vec<Arc<Event>>,
    /// uid → where the object is, and owner uid → its dependents: garbage collection
    /// looks at the objects a change can affect, never at the whole store.
    uids: HashMap<String, Key>,
    dependents: HashMap<String, BTreeSet<Key>>,
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn key_of(t: &ResourceType, namespace: &str, name: &str) -> Key {
    let ns = if t.namespaced { namespace } else { "" };
    (
        t.group.clone(),
        t.plural.clone(),
        ns.to_owned(),
        name.to_owned(),
    )
}

/// Who writes, and how the write is recorded.
pub struct WriteCtx<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(65_536);
        Store {
            rv: 1,
            types: builtins(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            oldest_rv: 1,
            tx,
            audit: Vec::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
        }
        .with_bootstrap_roles()
    }

    /// The bootstrap ClusterRoles kube-apiserver creates that kseal binds to:
    /// `system:monitoring` (the health and metrics endpoints).
    fn with_bootstrap_roles(mut self) -> Self {
        let role = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:monitoring", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [{"nonResourceURLs": ["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"], "verbs": ["get"]}]
        });
        if let Some(t) = self.find_type("rbac.authorization.k8s.io", "v1", "clusterroles") {
            let ctx = WriteCtx {
                manager: "kube-apiserver",
                subresource: None,
            };
            let _ = self.create(&t, role, &ctx);
        }
        self
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn type_for_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key_of(t, namespace, name))
    }

    /// Objects of a type in a namespace (or all namespaces), in key order.
    pub fn list(&self, t: &ResourceType, namespace: Option<&str>) -> Vec<&Value> {
        self.range(t, namespace, None).collect()
    }

    /// Objects of a type in key order (namespace, then name), optionally only in one
    /// namespace and only after a (namespace, name) position: a range query on the
    /// ordered store, so paging costs what the page costs.
    pub fn range<'a>(
        &'a self,
        t: &ResourceType,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        use std::ops::Bound::{Excluded, Included};
        let (g, p) = (t.group.clone(), t.plural.clone());
        let namespace = namespace.filter(|_| t.namespaced);
        let lower = match (after, namespace) {
            (Some((ns, name)), _) => {
                Excluded((g.clone(), p.clone(), ns.to_owned(), name.to_owned()))
            }
            (None, Some(ns)) => Included((g.clone(), p.clone(), ns.to_owned(), String::new())),
            (None, None) => Included((g.clone(), p.clone(), String::new(), String::new())),
        };
        // The successor of a string s in byte order is s + "\0": every key with plural (or
        // namespace) exactly s sorts below it.
        let upper = match namespace {
            Some(ns) => Excluded((g, p, format!("{ns}\0"), String::new())),
            None => Excluded((g, format!("{p}\0"), String::new(), String::new())),
        };
        self.objects.range((lower, upper)).map(|(_, v)| v)
    }

    fn record(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        kind: &'static str,
        object: Value,
        old: Option<Value>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            group: t.group.clone(),
            plural: t.plural.clone(),
            namespace: if t.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            kind,
            object,
            old,
        });
        self.history.push_back(event.clone());
        self.audit.push(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.oldest_rv = e.rv + 1;
            }
        }
        let _ = self.tx.send(Signal::Change(event));
    }

    /// Forgets all history: open watches end with 410 and must relist.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_rv = self.rv + 1;
        let _ = self.tx.send(Signal::Expire);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Fills in type-specific defaults and validations on every write.
    fn normalize(&self, t: &ResourceType, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if t.group.is_empty() && t.kind == "Secret" {
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine;
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default();
                    obj["data"][k.as_str()] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            if let Some(old) = old
                && old["immutable"] == json!(true)
                && (old["data"] != obj["data"] || obj["immutable"] != json!(true))
            {
                return Err(ApiError::invalid(
                    t,
                    &name,
                    "data",
                    "FieldValueForbidden",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        if t.kind == "Event" && t.group == "events.k8s.io" {
            for field in [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
            ] {
                if obj[field].as_str().is_none_or(str::is_empty) {
                    return Err(ApiError::invalid(
                        t,
                        &name,
                        field,
                        "FieldValueRequired",
                        "Required value",
                    ));
                }
            }
        }
        if t.kind == "Lease"
            && let Some(d) = obj["spec"]["leaseDurationSeconds"].as_i64()
            && d <= 0
        {
            return Err(ApiError::invalid(
                t,
                &name,
                "spec.leaseDurationSeconds",
                "FieldValueInvalid",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    /// Creates an object. `obj.metadata.namespace` must already be the URL namespace.
    pub fn create(&mut self, t: &ResourceType, mut obj: Value, ctx: &WriteCtx) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be an object"));
        }
        if obj["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::new(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let namespace = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if t.namespaced && namespace.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object is required",
            ));
        }
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let Some(base) = obj["metadata"]["generateName"]
                .as_str()
                .filter(|s| !s.is_empty())
            else {
                return Err(ApiError::invalid(
                    t,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                ));
            };
            let base: String = base.chars().take(58).collect();
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let mut rng = rand::rng();
            for _ in 0..8 {
                let suffix: String = (0..5)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                    .collect();
                let candidate = format!("{base}{suffix}");
                if self.get(t, &namespace, &candidate).is_none() {
                    name = candidate;
                    break;
                }
            }
            if name.is_empty() {
                return Err(ApiError::already_exists(t, base.as_str()));
            }
            obj["metadata"]["name"] = json!(name);
        }
        if self.get(t, &namespace, &name).is_some() {
            return Err(ApiError::already_exists(t, &name));
        }
        if t.kind == "CustomResourceDefinition" {
            self.prepare_crd(t, &mut obj)?;
        } else if t.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if !t.namespaced
            && let Some(m) = obj["metadata"].as_object_mut()
        {
            m.remove("namespace");
        }
        self.normalize(t, &mut obj, None)?;
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now());
        if t.has_generation() {
            meta["generation"] = json!(1);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("generation");
        }
        if let Some(m) = meta.as_object_mut() {
            m.remove("managedFields");
            m.remove("deletionTimestamp");
        }
        let time = now();
        let writer = Writer {
            manager: ctx.manager,
            api_version: &t.api_version(),
            time: &time,
            part: Part::Main {
                status_subresource: t.status_subresource,
            },
        };
        fields::record_update(None, &mut obj, &writer);
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.put(key_of(t, &namespace, &name), obj.clone());
        if t.kind == "CustomResourceDefinition" {
            self.types.extend(ResourceType::from_crd(&obj));
        }
        self.record(t, &namespace, "ADDED", obj.clone(), None);
        if !Self::owner_refs(&obj).is_empty() {
            self.collect_garbage(vec![key_of(t, &namespace, &name)]);
        }
        Ok(obj)
    }

    fn prepare_crd(&self, t: &ResourceType, obj: &mut Value) -> ApiResult<()> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let spec = &mut obj["spec"];
        let plural = spec["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let group = spec["group"].as_str().unwrap_or_default().to_owned();
        if name != format!("{plural}.{group}") {
            return Err(ApiError::invalid(
                t,
                &name,
                "metadata.name",
                "FieldValueInvalid",
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let kind = spec["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if spec["names"]["singular"].is_null() {
            spec["names"]["singular"] = json!(kind.to_lowercase());
        }
        if spec["names"]["listKind"].is_null() {
            spec["names"]["listKind"] = json!(format!("{kind}List"));
        }
        let names = spec["names"].clone();
        let stored: Vec<Value> = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == json!(true))
            .map(|v| v["name"].clone())
            .collect();
        let time = now();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
            ],
        });
        Ok(())
    }

    /// Replaces an object (PUT, and the result of every patch). `expect_rv` is the body's
    /// resourceVersion, checked when present.
    pub fn update(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        mut obj: Value,
        ctx: &WriteCtx,
        apply_result: bool,
    ) -> ApiResult<Value> {
        let key = key_of(t, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(t, name));
        };
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be an object"));
        }
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        match obj["metadata"]["resourceVersion"].as_str() {
            Some(rv)
                if !rv.is_empty() && old["metadata"]["resourceVersion"].as_str() != Some(rv) =>
            {
                return Err(ApiError::modified(t, name));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if t.custom && !apply_result => {
                return Err(ApiError::invalid(
                    t,
                    name,
                    "metadata.resourceVersion",
                    "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
            _ => {}
        }
        let status_write = ctx.subresource == Some("status");
        if status_write {
            // Only status changes through /status.
            let mut merged = old.clone();
            match obj.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            merged["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
            obj = merged;
        } else if t.status_subresource {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // Server-owned metadata comes from the stored object.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => obj["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        obj["metadata"]["name"] = json!(name);
        if t.namespaced {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        self.normalize(t, &mut obj, Some(&old))?;
        if !apply_result {
            let time = now();
            let part = if status_write {
                Part::Status
            } else {
                Part::Main {
                    status_subresource: t.status_subresource,
                }
            };
            let writer = Writer {
                manager: ctx.manager,
                api_version: &t.api_version(),
                time: &time,
                part,
            };
            fields::record_update(Some(&old), &mut obj, &writer);
        }
        if t.has_generation() && !status_write {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                    m.remove("status");
                }
                v
            };
            if strip(&old) != strip(&obj) {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(generation);
            }
        }
        // A write that changes nothing is not persisted: same RV, no event.
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if same_ignoring_times(&old, &obj) {
            return Ok(old);
        }
        // Removing the last finalizer of an object being deleted deletes it.
        let deleting = old["metadata"]["deletionTimestamp"].is_string();
        let finalizers_left = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if deleting && !finalizers_left {
            self.take(&key);
            self.record(t, namespace, "DELETED", obj.clone(), None);
            let uid = obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.collect_garbage(self.dependents_of(&uid));
            return Ok(obj);
        }
        let owners_changed = Self::owner_refs(&old) != Self::owner_refs(&obj);
        self.put(key.clone(), obj.clone());
        if owners_changed {
            self.collect_garbage(vec![key.clone()]);
        }
        if t.kind == "CustomResourceDefinition" {
            self.types
                .retain(|rt| !(rt.custom && format!("{}.{}", rt.plural, rt.group) == name));
            self.types.extend(ResourceType::from_crd(&obj));
        }
        self.record(t, namespace, "MODIFIED", obj.clone(), Some(old));
        Ok(obj)
    }

    /// Server-side apply: create if missing (returns `true` as the second value), else merge
    /// with ownership rules.
    pub fn apply(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        config: Value,
        ctx: &WriteCtx,
        force: bool,
    ) -> ApiResult<(Value, bool)> {
        if config["apiVersion"].as_str() != Some(t.api_version().as_str()) {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
                config["apiVersion"].as_str().unwrap_or_default(),
                t.api_version()
            )));
        }
        if !config["metadata"]["managedFields"].is_null() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let status_write = ctx.subresource == Some("status");
        let part = if status_write {
            Part::Status
        } else {
            Part::Main {
                status_subresource: t.status_subresource,
            }
        };
        let time = now();
        let writer = Writer {
            manager: ctx.manager,
            api_version: &t.api_version(),
            time: &time,
            part,
        };
        let existing = self.get(t, namespace, name).cloned();
        let Some(live) = existing else {
            if status_write {
                return Err(ApiError::not_found(t, name));
            }
            let mut base =
                json!({"apiVersion": t.api_version(), "kind": t.kind, "metadata": {"name": name}});
            if t.namespaced {
                base["metadata"]["namespace"] = json!(namespace);
            }
            let mut obj = fields::apply(&base, &config, &writer, force)
                .map_err(|c| self.conflict_error(t, name, &c))?;
            let entries = fields::read_entries(&obj);
            obj["metadata"]["name"] = json!(name);
            if t.namespaced {
                obj["metadata"]["namespace"] = json!(namespace);
            }
            let mut created = self.create(t, obj, ctx)?;
            // Keep the Apply ownership rather than the create's Update entry.
            let key = key_of(t, namespace, name);
            fields::write_entries(&mut created, &entries);
            self.put(key, created.clone());
            return Ok((created, true));
        };
        if let Some(rv) = config["metadata"]["resourceVersion"].as_str()
            && live["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::modified(t, name));
        }
        let mut obj = fields::apply(&live, &config, &writer, force)
            .map_err(|c| self.conflict_error(t, name, &c))?;
        obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
        Ok((self.update(t, namespace, name, obj, ctx, true)?, false))
    }

    fn conflict_error(&self, t: &ResourceType, name: &str, c: &fields::Conflicts) -> ApiError {
        ApiError::new(409, "Conflict", c.message()).with_details(json!({
            "name": name, "group": t.group, "kind": t.plural, "causes": c.causes(),
        }))
    }

    /// DELETE of one object. Returns the Status or the object (when finalizers keep it).
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> ApiResult<Value> {
        let key = key_of(t, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(t, name));
        };
        let pre = &options["preconditions"];
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(want) = pre[field].as_str()
                && old["metadata"][field].as_str() != Some(want)
            {
                return Err(ApiError::conflict(
                    t,
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {want}, {label} in object meta: {}",
                        old["metadata"][field].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
        let policy = options["propagationPolicy"]
            .as_str()
            .unwrap_or("Background");
        let uid = old["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match policy {
            "Orphan" => self.orphan_dependents(&uid),
            "Foreground" => self.delete_dependents(&uid),
            _ => {}
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Ok(old);
            }
            let mut obj = old.clone();
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if t.has_generation() {
                let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(g);
            }
            let rv = self.next_rv();
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.put(key, obj.clone());
            self.record(t, namespace, "MODIFIED", obj.clone(), Some(old));
            return Ok(obj);
        }
        self.remove(t, &key, old);
        self.collect_garbage(self.dependents_of(&uid));
        Ok(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": t.group, "kind": t.plural, "uid": uid},
        }))
    }

    fn remove(&mut self, t: &ResourceType, key: &Key, mut obj: Value) {
        self.take(key);
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if t.kind == "CustomResourceDefinition" {
            let name = key.3.clone();
            self.types
                .retain(|rt| !(rt.custom && format!("{}.{}", rt.plural, rt.group) == name));
        }
        let ns = key.2.clone();
        self.record(t, &ns, "DELETED", obj, None);
    }

    /// Stores an object, keeping the uid and owner indexes in step.
    fn put(&mut self, key: Key, obj: Value) {
        if let Some(old) = self.objects.remove(&key) {
            self.unindex(&key, &old);
        }
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_owned(), key.clone());
        }
        for owner in Self::owner_refs(&obj) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, obj);
    }

    fn take(&mut self, key: &Key) -> Option<Value> {
        let obj = self.objects.remove(key)?;
        self.unindex(key, &obj);
        Some(obj)
    }

    fn unindex(&mut self, key: &Key, obj: &Value) {
        if let Some(uid) = obj["metadata"]["uid"].as_str()
            && self.uids.get(uid) == Some(key)
        {
            self.uids.remove(uid);
        }
        for owner in Self::owner_refs(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<Key> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn owner_refs(obj: &Value) -> Vec<String> {
        obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uid"].as_str().map(str::to_owned))
            .collect()
    }

    fn type_of_key(&self, key: &Key) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == key.0 && t.plural == key.1)
            .cloned()
    }

    /// Whether the owner with `uid` is live and may own an object in `namespace`.
    fn owner_present(&self, uid: &str, namespace: &str) -> bool {
        self.uids
            .get(uid)
            .is_some_and(|k| k.2.is_empty() || k.2 == namespace)
    }

    /// Garbage collection, as kube-controller-manager does it in the background: deletes
    /// each candidate whose owners are all gone (or in another namespace), then looks at
    /// the dependents of what it deleted, so chains collapse.
    pub fn collect_garbage(&mut self, mut candidates: Vec<Key>) {
        while let Some(key) = candidates.pop() {
            let Some(obj) = self.objects.get(&key) else {
                continue;
            };
            let refs = Self::owner_refs(obj);
            if refs.is_empty() || refs.iter().any(|uid| self.owner_present(uid, &key.2)) {
                continue;
            }
            let obj = obj.clone();
            let uid = obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(t) = self.type_of_key(&key) {
                self.remove(&t, &key, obj);
                candidates.extend(self.dependents_of(&uid));
            }
        }
    }

    fn delete_dependents(&mut self, uid: &str) {
        for key in self.dependents_of(uid) {
            let Some(obj) = self.objects.get(&key).cloned() else {
                continue;
            };
            if let Some(t) = self.type_of_key(&key) {
                let dep_uid = obj["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.delete_dependents(&dep_uid);
                self.remove(&t, &key, obj);
            }
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for key in self.dependents_of(uid) {
            let Some(old) = self.objects.get(&key).cloned() else {
                continue;
            };
            let mut obj = old.clone();
            if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(uid));
            }
            let rv = self.next_rv();
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.put(key.clone(), obj.clone());
            if let Some(t) = self.type_of_key(&key) {
                self.record(&t, &key.2, "MODIFIED", obj, Some(old));
            }
        }
    }
}

/// Equal apart from managedFields timestamps.
fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(list) = v["metadata"]["managedFields"].as_array_mut() {
            for e in list {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// `{"kind":"PartialObjectMetadata",…}` for metadata-only clients.
pub fn partial(obj: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("PartialObjectMetadata"));
    out.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    out.insert("metadata".into(), obj["metadata"].clone());
    Value::Object(out)
}
