//! Field ownership: `metadata.managedFields` in FieldsV1 form, and server-side apply
//! (conflicts, `force`, shared ownership, removal of fields a manager stopped applying).
//!
//! Simplifications, documented for test authors: lists are atomic (owned whole), maps and
//! objects are granular; ownership is tracked at leaves.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A path of object keys from the root, e.g. `["spec", "holderIdentity"]`.
pub type Path = Vec<String>;

/// Which part of an object a write touches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// The main endpoint; `status` excluded when the kind has a status subresource.
    Main { status_subresource: bool },
    /// `/status`: only `status`.
    Status,
}

const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

fn in_part(top: &str, part: Part) -> bool {
    match part {
        Part::Status => top == "status",
        Part::Main { status_subresource } => {
            !(matches!(top, "apiVersion" | "kind") || (status_subresource && top == "status"))
        }
    }
}

fn collect(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.clone());
                collect(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The leaf paths of `obj` that a manager can own in `part`.
pub fn field_paths(obj: &Value, part: Part) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (top, v) in map {
        if top == "metadata" {
            for key in OWNED_METADATA {
                if let Some(sub) = v.get(*key) {
                    if part == Part::Status {
                        continue;
                    }
                    let mut prefix = vec!["metadata".to_owned(), (*key).to_owned()];
                    collect(sub, &mut prefix, &mut out);
                }
            }
        } else if in_part(top, part) {
            let mut prefix = vec![top.clone()];
            collect(v, &mut prefix, &mut out);
        }
    }
    out
}

pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

pub fn set(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for k in &path[..path.len() - 1] {
        if !cur.get(k).is_some_and(Value::is_object) {
            cur[k.as_str()] = Value::Object(Map::new());
        }
        cur = &mut cur[k.as_str()];
    }
    cur[path[path.len() - 1].as_str()] = value;
}

/// Removes a leaf, then any objects it leaves empty.
pub fn remove(obj: &mut Value, path: &[String]) {
    if path.is_empty() {
        return;
    }
    if path.len() == 1 {
        if let Some(m) = obj.as_object_mut() {
            m.remove(&path[0]);
        }
        return;
    }
    if let Some(child) = obj.get_mut(&path[0]) {
        remove(child, &path[1..]);
        if child.as_object().is_some_and(Map::is_empty)
            && let Some(m) = obj.as_object_mut()
        {
            m.remove(&path[0]);
        }
    }
}

pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Value::Object(Map::new());
    for p in paths {
        let keyed: Vec<String> = p.iter().map(|k| format!("f:{k}")).collect();
        let mut cur = &mut root;
        for k in keyed {
            if !cur.get(&k).is_some_and(Value::is_object) {
                cur[k.as_str()] = Value::Object(Map::new());
            }
            cur = &mut cur[k.as_str()];
        }
    }
    root
}

pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(map) = v.as_object() else { return };
        let children: Vec<_> = map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if children.is_empty() && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in children {
            prefix.push(k[2..].to_owned());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn render(path: &Path) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub paths: BTreeSet<Path>,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn describe(&self) -> String {
        let sub = self
            .subresource
            .as_ref()
            .map(|s| format!(" with subresource \"{s}\""))
            .unwrap_or_default();
        if self.operation == "Update" {
            format!(
                "\"{}\" using {} at {}{sub}",
                self.manager, self.api_version, self.time
            )
        } else {
            format!("\"{}\"{sub}", self.manager)
        }
    }
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            subresource: e["subresource"].as_str().map(str::to_owned),
            paths: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.paths.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.paths),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Who is writing, and where.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub time: &'a str,
    pub part: Part,
}

impl Writer<'_> {
    fn subresource(&self) -> Option<&'static str> {
        (self.part == Part::Status).then_some("status")
    }
}

/// Records a non-apply write (create, update, merge/JSON/strategic patch): the writer
/// takes the fields it changed; nobody else keeps them. Never conflicts.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let empty = Value::Null;
    let old = old.unwrap_or(&empty);
    let new_paths = field_paths(new, w.part);
    let old_paths = field_paths(old, w.part);
    let changed: BTreeSet<Path> = new_paths
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = old_paths.difference(&new_paths).cloned().collect();
    for e in &mut entries {
        e.paths
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_owner(w.manager, "Update", w.subresource()))
        {
            Some(e) => {
                e.paths.extend(changed);
                e.time = w.time.to_owned();
            }
            None => entries.push(Entry {
                manager: w.manager.to_owned(),
                operation: "Update".into(),
                api_version: w.api_version.to_owned(),
                time: w.time.to_owned(),
                subresource: w.subresource().map(str::to_owned),
                paths: changed,
            }),
        }
    }
    write_entries(new, &entries);
}

/// A server-side apply conflict: who owns which field.
#[derive(Debug)]
pub struct Conflicts(pub Vec<(String, String)>);

impl Conflicts {
    pub fn message(&self) -> String {
        let n = self.0.len();
        let list: Vec<String> = self
            .0
            .iter()
            .map(|(m, p)| format!("conflict with {m}: {p}"))
            .collect();
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            list.join("; ")
        )
    }

    pub fn causes(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p}))
                .collect(),
        )
    }
}

/// Server-side apply of `config` onto `live` (an empty object when creating). Returns
/// the new object with its managedFields.
pub fn apply(live: &Value, config: &Value, w: &Writer, force: bool) -> Result<Value, Conflicts> {
    let mut entries = read_entries(live);
    let applied = field_paths(config, w.part);
    let mut conflicts = Vec::new();
    for e in &entries {
        if e.same_owner(w.manager, "Apply", w.subresource()) {
            continue;
        }
        for p in applied.intersection(&e.paths) {
            if get(live, p) != get(config, p) {
                conflicts.push((e.describe(), render(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    let mut new = live.clone();
    for p in &applied {
        if let Some(v) = get(config, p) {
            set(&mut new, p, v.clone());
        }
    }
    // Fields this manager applied before and leaves out now go, unless someone else owns them.
    let previous: BTreeSet<Path> = entries
        .iter()
        .filter(|e| e.same_owner(w.manager, "Apply", w.subresource()))
        .flat_map(|e| e.paths.iter().cloned())
        .collect();
    for p in previous.difference(&applied) {
        let owned_by_other = entries
            .iter()
            .any(|e| !e.same_owner(w.manager, "Apply", w.subresource()) && e.paths.contains(p));
        if !owned_by_other {
            remove(&mut new, p);
        }
    }
    // Others lose the fields whose value this apply changed (possible only with force or
    // when they did not own them); equal values stay shared.
    for e in &mut entries {
        if e.same_owner(w.manager, "Apply", w.subresource()) {
            continue;
        }
        e.paths
            .retain(|p| !applied.contains(p) || get(live, p) == get(config, p));
    }
    entries.retain(|e| !e.same_owner(w.manager, "Apply", w.subresource()));
    entries.push(Entry {
        manager: w.manager.to_owned(),
        operation: "Apply".into(),
        api_version: w.api_version.to_owned(),
        time: w.time.to_owned(),
        subresource: w.subresource().map(str::to_owned),
        paths: applied,
    });
    write_entries(&mut new, &entries);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            time: "2026-01-01T00:00:00Z",
            part: Part::Main {
                status_subresource: false,
            },
        }
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"h": "me", "l": [1]}});
        let paths = field_paths(
            &obj,
            Part::Main {
                status_subresource: false,
            },
        );
        assert_eq!(paths.len(), 3);
        assert_eq!(from_fields_v1(&to_fields_v1(&paths)), paths);
    }

    #[test]
    fn second_applier_conflicts_unless_forced_and_equal_values_share() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"holder": "a"}}),
            &writer("a"),
            false,
        )
        .unwrap();
        let err = apply(
            &live,
            &json!({"spec": {"holder": "b"}}),
            &writer("b"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.holder"
        );
        let shared = apply(
            &live,
            &json!({"spec": {"holder": "a"}}),
            &writer("b"),
            false,
        )
        .unwrap();
        assert_eq!(read_entries(&shared).len(), 2);
        let forced = apply(&live, &json!({"spec": {"holder": "b"}}), &writer("b"), true).unwrap();
        assert_eq!(forced["spec"]["holder"], "b");
        assert_eq!(
            read_entries(&forced)
                .iter()
                .filter(|e| !e.paths.is_empty())
                .count(),
            1
        );
    }

    #[test]
    fn dropped_fields_are_removed_unless_owned_elsewhere() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"a": 1, "b": 2}}),
            &writer("m"),
            false,
        )
        .unwrap();
        let after = apply(&live, &json!({"spec": {"a": 1}}), &writer("m"), false).unwrap();
        assert_eq!(after["spec"], json!({"a": 1}));
    }
}
