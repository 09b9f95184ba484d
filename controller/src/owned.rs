//! The Secrets the controller wrote, as its watch sees them (metadata only, filtered by
//! its label), reduced before they are cached to what deciding "nothing to do" needs.
//!
//! Whether a Secret still holds what kseal applied is read from its managedFields:
//! server-side apply records, under the manager `kseal-controller` with operation
//! `Apply`, exactly the fields kseal's last apply set. When anyone else changes or removes
//! one of them (`kubectl edit`, a patch, another manager's apply of a different value),
//! the field leaves that entry. So the entry still holding every field kseal would set
//! now means nobody changed them since, and the values are the ones kseal wrote. The
//! cache keeps that entry as a digest of its field names (never values: managedFields
//! hold none).
//!
//! Someone who applies as `kseal-controller` on purpose can hide an edit from this; they
//! already hold write access to the Secret.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use crate::reconcile::MANAGER;

/// A cached Secret: metadata only, compacted by [`compact`].
pub type Cached = PartialObjectMeta<Secret>;

/// Annotations of an existing Secret that ownership decisions read (kseal's and
/// Bitnami's take-over and merge annotations, and kseal's skip-owner-reference).
const READ_ANNOTATIONS: &[&str] = &[
    crate::reconcile::MANAGED_ANNOTATION,
    crate::reconcile::PATCH_ANNOTATION,
    kseal_core::policy::SKIP_OWNER_ANNOTATION,
    "sealedsecrets.bitnami.com/managed",
    "sealedsecrets.bitnami.com/patch",
];

/// Shrinks a watched Secret to what the reconciler reads: its name, namespace, uid and
/// owner references, the ownership annotations, and kseal's own apply entry with its
/// fields reduced to a digest. Everything else (labels, other annotations, other
/// managers' entries, timestamps) is dropped before caching.
pub fn compact(secret: &mut Cached) {
    let meta = &mut secret.metadata;
    let applied = meta
        .managed_fields
        .take()
        .unwrap_or_default()
        .into_iter()
        .find(is_kseal_apply)
        .map(|mut entry| {
            let digest = entry.fields_v1.as_ref().map(|f| digest(&held(&f.0)));
            entry.fields_v1 = digest.map(|d| FieldsV1(Value::String(d)));
            entry.time = None;
            entry.api_version = None;
            entry.fields_type = None;
            entry
        });
    meta.managed_fields = applied.map(|e| vec![e]);
    meta.labels = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| READ_ANNOTATIONS.contains(&k.as_str()));
    }
    meta.creation_timestamp = None;
    meta.generation = None;
    meta.finalizers = None;
}

fn is_kseal_apply(entry: &ManagedFieldsEntry) -> bool {
    entry.manager.as_deref() == Some(MANAGER) && entry.operation.as_deref() == Some("Apply")
}

/// Whether kseal's apply entry exists on this Secret (kseal wrote it).
pub fn written_by_kseal(meta: &ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(is_kseal_apply)
}

/// Whether kseal's apply entry on a (compacted or full) Secret holds exactly `fields`.
pub fn holds(meta: &ObjectMeta, fields: &BTreeSet<String>) -> bool {
    let want = digest(fields);
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| is_kseal_apply(e))
        .filter_map(|e| e.fields_v1.as_ref())
        .any(|f| match &f.0 {
            Value::String(d) => *d == want,
            full => digest(&held(full)) == want,
        })
}

/// The fields of a managedFields `fieldsV1` set that kseal's decisions cover, as
/// [`desired_fields`] names them: data items, labels, annotations, owner references,
/// `type` and `immutable`.
fn held(fields: &Value) -> BTreeSet<String> {
    let names = |v: Option<&Value>, prefix: &str, kind: &str| -> Vec<String> {
        v.and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix(prefix).map(|k| format!("{kind}/{k}")))
            .collect()
    };
    let meta = fields.get("f:metadata");
    let mut out: BTreeSet<String> = names(fields.get("f:data"), "f:", "data")
        .into_iter()
        .chain(names(meta.and_then(|m| m.get("f:labels")), "f:", "label"))
        .chain(names(
            meta.and_then(|m| m.get("f:annotations")),
            "f:",
            "annotation",
        ))
        .collect();
    // Owner references are a list keyed by uid: `k:{"uid":"…"}`.
    for key in names(meta.and_then(|m| m.get("f:ownerReferences")), "k:", "owner") {
        let uid = serde_json::from_str::<Value>(&key["owner/".len()..])
            .ok()
            .and_then(|v| v.get("uid").and_then(Value::as_str).map(str::to_owned));
        if let Some(uid) = uid {
            out.insert(format!("owner/{uid}"));
        }
    }
    for field in ["type", "immutable"] {
        if fields.get(format!("f:{field}")).is_some() {
            out.insert(field.to_owned());
        }
    }
    out
}

/// The fields a write of `secret` sets, named as [`held`] reads them from managedFields.
pub fn desired_fields(secret: &Secret) -> BTreeSet<String> {
    let meta = &secret.metadata;
    let keys = |kind: &str, map: Option<&std::collections::BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(move |(k, _)| format!("{kind}/{k}"))
            .collect::<Vec<_>>()
    };
    let mut out: BTreeSet<String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| format!("data/{k}"))
        .chain(keys("label", meta.labels.as_ref()))
        .chain(keys("annotation", meta.annotations.as_ref()))
        .chain(
            meta.owner_references
                .iter()
                .flatten()
                .map(|o| format!("owner/{}", o.uid)),
        )
        .collect();
    if secret.type_.is_some() {
        out.insert("type".into());
    }
    if secret.immutable.is_some() {
        out.insert("immutable".into());
    }
    out
}

fn digest(fields: &BTreeSet<String>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in fields {
        ctx.update(f.as_bytes());
        ctx.update(b"\n");
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The caches of the Secrets kseal wrote: one per watched namespace (or one for all).
pub struct OwnedSecrets {
    stores: Vec<Store<Cached>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl OwnedSecrets {
    /// Starts a task that marks the caches ready once each holds its first list. (kube's
    /// own `Store::wait_until_ready` wakes only the last of several waiters.)
    pub fn new(stores: Vec<Store<Cached>>) -> Self {
        let (tx, ready) = tokio::sync::watch::channel(false);
        let waiting = stores.clone();
        tokio::spawn(async move {
            for store in &waiting {
                let _ = store.wait_until_ready().await;
            }
            let _ = tx.send(true);
        });
        OwnedSecrets { stores, ready }
    }

    /// Waits until every cache holds its first complete list (before then, a missing
    /// Secret means nothing).
    pub async fn ready(&self) {
        let _ = self.ready.clone().wait_for(|r| *r).await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Cached>> {
        let key = ObjectRef::<Cached>::new_with(name, ()).within(namespace);
        self.stores.iter().find_map(|s| s.get(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn written() -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "db", "namespace": "shop",
                "labels": {"app": "db", "app.kubernetes.io/managed-by": "kseal"},
                "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "kseal.dev/v1alpha1", "kind": "SealedSecret", "name": "db", "uid": "u-1"}],
            },
            "type": "Opaque",
            "data": {"password": "cA==", "user": "dQ=="},
        }))
        .unwrap()
    }

    /// What kube-apiserver records for that apply.
    fn applied_fields() -> Value {
        serde_json::json!({
            "f:data": {".": {}, "f:password": {}, "f:user": {}},
            "f:metadata": {
                "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/managed-by": {}},
                "f:annotations": {".": {}, "f:note": {}},
                "f:ownerReferences": {".": {}, "k:{\"uid\":\"u-1\"}": {}},
            },
            "f:type": {},
        })
    }

    #[test]
    fn an_untouched_secret_holds_what_kseal_wrote_before_and_after_compaction() {
        let desired = desired_fields(&written());
        let mut cached = Cached::default();
        cached.metadata.managed_fields = Some(vec![
            entry(
                "kubectl-label",
                "Update",
                serde_json::json!({"f:metadata": {}}),
            ),
            entry(MANAGER, "Apply", applied_fields()),
        ]);
        assert!(holds(&cached.metadata, &desired));
        compact(&mut cached);
        assert_eq!(cached.metadata.managed_fields.as_ref().unwrap().len(), 1);
        assert!(holds(&cached.metadata, &desired));
    }

    #[test]
    fn an_edited_or_removed_item_or_another_desired_field_is_noticed() {
        let desired = desired_fields(&written());
        // `kubectl edit` of the password moved it to kubectl's entry.
        let mut edited = applied_fields();
        edited["f:data"]
            .as_object_mut()
            .unwrap()
            .remove("f:password");
        let mut cached = Cached::default();
        cached.metadata.managed_fields = Some(vec![entry(MANAGER, "Apply", edited)]);
        compact(&mut cached);
        assert!(!holds(&cached.metadata, &desired));
        // An Update by kseal's manager name is not its apply.
        let mut cached = Cached::default();
        cached.metadata.managed_fields = Some(vec![entry(MANAGER, "Update", applied_fields())]);
        assert!(!holds(&cached.metadata, &desired));
        // A new item in the SealedSecret is a field kseal does not hold yet.
        let mut more = written();
        more.data
            .as_mut()
            .unwrap()
            .insert("token".into(), k8s_openapi::ByteString(b"t".to_vec()));
        let mut cached = Cached::default();
        cached.metadata.managed_fields = Some(vec![entry(MANAGER, "Apply", applied_fields())]);
        assert!(!holds(&cached.metadata, &desired_fields(&more)));
    }
}
