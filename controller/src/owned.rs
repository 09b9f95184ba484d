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
//! hold none), in an [`Owned`] of about a hundred bytes per Secret.
//!
//! Someone who applies as `kseal-controller` on purpose can hide an edit from this; they
//! already hold write access to the Secret.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
#[cfg(test)]
use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::Value;

use kseal_core::contract::{self, MANAGER};

/// A Secret as its metadata-only watch delivers it.
pub type Watched = PartialObjectMeta<Secret>;

/// Annotations of an existing Secret that ownership decisions read (kseal's and
/// Bitnami's take-over and merge annotations, and kseal's skip-owner-reference).
pub const READ_ANNOTATIONS: &[&str] = &[
    contract::MANAGED_ANNOTATION,
    contract::PATCH_ANNOTATION,
    kseal_core::policy::SKIP_OWNER_ANNOTATION,
    contract::BITNAMI_MANAGED_ANNOTATION,
    contract::BITNAMI_PATCH_ANNOTATION,
];

/// What the controller keeps of a Secret: its uid, its owners' uids, which of
/// [`READ_ANNOTATIONS`] it sets to `"true"`, and a digest of the field names kseal's
/// apply entry holds. About a hundred bytes; labels, values, other annotations, other
/// managers' entries and timestamps are never kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub uid: String,
    pub owners: Vec<String>,
    /// Bit `i` set: `READ_ANNOTATIONS[i]` is `"true"`.
    annotations: u8,
    /// `None` when kseal's apply entry is absent.
    applied: Option<[u8; 16]>,
}

impl Owned {
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let annotations = READ_ANNOTATIONS
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(**k))
                    .is_some_and(|v| v == "true")
            })
            .fold(0u8, |bits, (i, _)| bits | (1 << i));
        Owned {
            uid: meta.uid.clone().unwrap_or_default(),
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
            annotations,
            applied: meta
                .managed_fields
                .iter()
                .flatten()
                .find(|e| is_kseal_apply(e))
                .map(|e| digest(&e.fields_v1.as_ref().map(|f| held(&f.0)).unwrap_or_default())),
        }
    }

    /// Whether the annotation `key` (one of [`READ_ANNOTATIONS`]) is `"true"`.
    pub fn annotated(&self, key: &str) -> bool {
        READ_ANNOTATIONS
            .iter()
            .position(|k| *k == key)
            .is_some_and(|i| self.annotations & (1 << i) != 0)
    }

    /// Whether kseal's apply entry exists on this Secret (kseal wrote it).
    pub fn written_by_kseal(&self) -> bool {
        self.applied.is_some()
    }

    /// Whether kseal's apply entry holds exactly `fields`.
    pub fn holds(&self, fields: &BTreeSet<String>) -> bool {
        self.applied == Some(digest(fields))
    }
}

fn is_kseal_apply(entry: &ManagedFieldsEntry) -> bool {
    entry.manager.as_deref() == Some(MANAGER) && entry.operation.as_deref() == Some("Apply")
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

fn digest(fields: &BTreeSet<String>) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in fields {
        ctx.update(f.as_bytes());
        ctx.update(b"\n");
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}

type Key = (String, String);

/// One watch's view (one namespace, or all): the Secrets it listed and saw since.
#[derive(Default)]
struct View {
    live: HashMap<Key, Owned>,
    /// A relist in progress: it replaces `live` when it completes.
    relist: Option<HashMap<Key, Owned>>,
    listed: bool,
}

/// The caches of the Secrets kseal wrote: one view per watched namespace (or one for
/// all), each fed by that namespace's Secret watch through [`OwnedSecrets::record`].
pub struct OwnedSecrets {
    views: Vec<Arc<RwLock<View>>>,
    ready: tokio::sync::watch::Sender<usize>,
}

fn key_of(secret: &Watched) -> Key {
    (
        secret.metadata.namespace.clone().unwrap_or_default(),
        secret.metadata.name.clone().unwrap_or_default(),
    )
}

impl OwnedSecrets {
    /// Caches for `watches` Secret watches.
    pub fn new(watches: usize) -> Self {
        OwnedSecrets {
            views: (0..watches).map(|_| Default::default()).collect(),
            ready: tokio::sync::watch::channel(0).0,
        }
    }

    /// Records an event of watch number `watch`.
    pub fn record(&self, watch: usize, event: &watcher::Event<Watched>) {
        let Some(view) = self.views.get(watch) else {
            return;
        };
        let mut view = view.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Init => view.relist = Some(HashMap::new()),
            watcher::Event::InitApply(s) => {
                if let Some(relist) = view.relist.as_mut() {
                    relist.insert(key_of(s), Owned::from_meta(&s.metadata));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = view.relist.take() {
                    view.live = relist;
                }
                if !view.listed {
                    view.listed = true;
                    self.ready.send_modify(|n| *n += 1);
                }
            }
            watcher::Event::Apply(s) => {
                view.live.insert(key_of(s), Owned::from_meta(&s.metadata));
            }
            watcher::Event::Delete(s) => {
                view.live.remove(&key_of(s));
            }
        }
    }

    /// Waits until every watch has completed its first list (before then, a missing
    /// Secret means nothing).
    pub async fn ready(&self) {
        let want = self.views.len();
        let _ = self.ready.subscribe().wait_for(|n| *n >= want).await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Owned> {
        let key = (namespace.to_owned(), name.to_owned());
        self.views.iter().find_map(|v| {
            v.read()
                .unwrap_or_else(|p| p.into_inner())
                .live
                .get(&key)
                .cloned()
        })
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

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    #[test]
    fn an_untouched_secret_holds_what_kseal_wrote() {
        let desired = desired_fields(&written());
        let owned = Owned::from_meta(&meta(vec![
            entry(
                "kubectl-label",
                "Update",
                serde_json::json!({"f:metadata": {}}),
            ),
            entry(MANAGER, "Apply", applied_fields()),
        ]));
        assert!(owned.written_by_kseal());
        assert!(owned.holds(&desired));
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
        let owned = Owned::from_meta(&meta(vec![entry(MANAGER, "Apply", edited)]));
        assert!(!owned.holds(&desired));
        // An Update by kseal's manager name is not its apply.
        let owned = Owned::from_meta(&meta(vec![entry(MANAGER, "Update", applied_fields())]));
        assert!(!owned.written_by_kseal());
        assert!(!owned.holds(&desired));
        // A new item in the SealedSecret is a field kseal does not hold yet.
        let mut more = written();
        more.data
            .as_mut()
            .unwrap()
            .insert("token".into(), k8s_openapi::ByteString(b"t".to_vec()));
        let owned = Owned::from_meta(&meta(vec![entry(MANAGER, "Apply", applied_fields())]));
        assert!(!owned.holds(&desired_fields(&more)));
    }

    /// A relist replaces the view only when it completes: a Secret deleted while the
    /// watch was down leaves it, and until the first list completes nothing is ready.
    #[tokio::test]
    async fn a_relist_replaces_the_view_when_it_completes() {
        let secret = |name: &str| {
            let mut s = Watched::default();
            s.metadata.name = Some(name.into());
            s.metadata.namespace = Some("shop".into());
            s.metadata.uid = Some(format!("uid-{name}"));
            s
        };
        let cache = OwnedSecrets::new(1);
        cache.record(0, &watcher::Event::Init);
        cache.record(0, &watcher::Event::InitApply(secret("a")));
        cache.record(0, &watcher::Event::InitApply(secret("b")));
        assert!(
            cache.get("shop", "a").is_none(),
            "not before the list completes"
        );
        let ready = tokio::time::timeout(std::time::Duration::from_millis(50), cache.ready());
        assert!(
            ready.await.is_err(),
            "not ready before the first list completes"
        );
        cache.record(0, &watcher::Event::InitDone);
        cache.ready().await;
        assert_eq!(cache.get("shop", "a").unwrap().uid, "uid-a");
        cache.record(0, &watcher::Event::Init);
        cache.record(0, &watcher::Event::InitApply(secret("a")));
        assert!(
            cache.get("shop", "b").is_some(),
            "the old view serves meanwhile"
        );
        cache.record(0, &watcher::Event::InitDone);
        assert!(
            cache.get("shop", "b").is_none(),
            "deleted while the watch was down"
        );
        cache.record(0, &watcher::Event::Delete(secret("a")));
        assert!(cache.get("shop", "a").is_none());
    }
}
