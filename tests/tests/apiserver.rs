//! Conformance of the test API server, each test naming the API convention it checks
//! (numbers refer to the checklist in shared/reference/k8s-api-wire.md §7). Every call
//! goes through an unmodified kube-rs client configured from the server's kubeconfig.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kseal_core::resource::SealedSecret;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ObjectMeta, PartialObjectMeta};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

fn sealed(name: &str) -> SealedSecret {
    serde_json::from_value(json!({
        "apiVersion": "kseal.dev/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": {"encryptedData": {"a": "x"}},
        "status": {"observedGeneration": 7},
    }))
    .unwrap()
}

/// 2, 20: a LIST has kind, RV and items; a create gets uid, creationTimestamp and RV; a
/// duplicate name is 409 AlreadyExists.
#[tokio::test]
async fn list_and_create_conventions() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    let empty = api.list(&ListParams::default()).await.unwrap();
    assert!(empty.items.is_empty());
    assert!(!empty.metadata.resource_version.unwrap().is_empty());
    let created = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let (code, reason, message) = api_error(
        api.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (409, "AlreadyExists", "configmaps \"a\" already exists")
    );
}

/// 3, 4, 5: paging with limit/continue, one RV for every page, and a bad token is 400.
#[tokio::test]
async fn paging_with_continue_tokens() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    assert_eq!(first.items.len(), 3);
    let second = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let third = api
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(second.metadata.continue_.as_ref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.as_deref().unwrap_or("").is_empty());
    assert_eq!(
        first.metadata.resource_version,
        third.metadata.resource_version
    );
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage!",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 400);
}

/// 6, 8, 10, 11: a watch from a LIST's RV sees every later change, including those made
/// before it opened; DELETED carries the deletion RV; RVs increase.
#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("early", &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "early",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    api.delete("early", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let mut last = 0u64;
    while seen.len() < 3 {
        let (kind, obj) = match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last, "RVs increase");
        last = rv;
        seen.push(kind);
    }
    assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(
        last,
        server.resource_version(),
        "DELETED carries the deletion RV"
    );
}

/// 9: a watch from an RV the history no longer covers gets 200 and one ERROR 410 event.
#[tokio::test]
async fn too_old_resource_version_is_an_error_event() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    server.force_gone();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream closes"
    );
}

/// 12, 14: rv=0 starts with synthetic ADDED; bookmarks carry kind, apiVersion and an RV.
#[tokio::test]
async fn synthetic_added_and_bookmarks() {
    let server = kseal_tests::apiserver::TestServer::start(kseal_tests::apiserver::Config {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        stream.try_next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert!(!b.metadata.resource_version.is_empty()),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

/// 15: sendInitialEvents streams the state, then the annotated end bookmark.
#[tokio::test]
async fn streaming_initial_events() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    let stream = kube::runtime::watcher(
        api.clone(),
        kube::runtime::watcher::Config::default().streaming_lists(),
    );
    let events: Vec<_> = stream.take(3).try_collect().await.unwrap();
    assert!(matches!(events[0], kube::runtime::watcher::Event::Init));
    assert!(matches!(
        events[1],
        kube::runtime::watcher::Event::InitApply(_)
    ));
    assert!(matches!(events[2], kube::runtime::watcher::Event::InitDone));
}

/// 16, 17: label-selector transitions become ADDED/DELETED; field selectors filter, and an
/// unsupported field is 400.
#[tokio::test]
async fn selectors_and_transitions() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    api.create(&PostParams::default(), &cm("a", &[("app", "x")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[("app", "y")]))
        .await
        .unwrap();
    let only_b = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(only_b.items.len(), 1);
    let (code, _, message) = api_error(
        api.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (400, "field label not supported: data.k")
    );
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=x").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
}

/// 18, 19: metadata-only LIST and WATCH.
#[tokio::test]
async fn metadata_only_list_and_watch() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s", "labels": {"a": "b"}}, "stringData": {"k": "v"}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["a"], "b");
    let (_, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        "",
    )
    .await;
    assert!(body["items"][0]["data"].is_object());
    let mut stream = api
        .watch_metadata(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => {
            let o: PartialObjectMeta<Secret> = o;
            assert_eq!(o.metadata.name.as_deref(), Some("s"));
        }
        other => panic!("{other:?}"),
    }
}

/// 21, 45: generateName; Secrets fold stringData into data and default their type.
#[tokio::test]
async fn generate_name_and_secret_defaults() {
    let server = server().await;
    let api: Api<Secret> = Api::namespaced(admin(&server).await, "default");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"generateName": "key-"}, "stringData": {"k": "v"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("key-") && name.len() == 9, "{name}");
    assert!(
        name[4..]
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
    );
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(created.data.unwrap()["k"].0, b"v");
    assert!(created.string_data.is_none());
}

/// 22, 26: a stale PUT is 409; a custom resource PUT without RV is 422; a no-op write keeps
/// the RV.
#[tokio::test]
async fn optimistic_concurrency() {
    let server = server().await;
    let client = admin(&server).await;
    install_crd(&client).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let mut changed = first.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let second = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let (code, reason, message) = api_error(
        api.replace("a", &PostParams::default(), &first)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("the object has been modified"));
    let same = api
        .replace("a", &PostParams::default(), &second)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, second.metadata.resource_version,
        "no-op keeps the RV"
    );

    let sealed_api: Api<SealedSecret> = Api::namespaced(client, "default");
    let mut obj = sealed_api
        .create(&PostParams::default(), &sealed("s"))
        .await
        .unwrap();
    obj.metadata.resource_version = None;
    let (code, reason, _) = api_error(
        sealed_api
            .replace("s", &PostParams::default(), &obj)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
}

/// 23, 24, 25: patches on a missing object are 404; JSON-patch `test` of null on a missing
/// path passes and a failing test is 422; merge `null` deletes; strategic on a CR is 415.
#[tokio::test]
async fn patch_types() {
    let server = server().await;
    let client = admin(&server).await;
    install_crd(&client).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (code, reason, _) = api_error(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    api.create(&PostParams::default(), &cm("a", &[("x", "1")]))
        .await
        .unwrap();
    let add_finalizer: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["kseal.dev/test"]},
    ]))
    .unwrap();
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(add_finalizer.clone()),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.finalizers.unwrap(), ["kseal.dev/test"]);
    let (code, reason, _) = api_error(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(add_finalizer),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    let cleared = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": null}}})),
        )
        .await
        .unwrap();
    assert!(cleared.metadata.labels.unwrap_or_default().is_empty());
    let strategic = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"s": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.data.unwrap()["s"], "1");
    let sealed_api: Api<SealedSecret> = Api::namespaced(client, "default");
    sealed_api
        .create(&PostParams::default(), &sealed("s"))
        .await
        .unwrap();
    let (code, reason, _) = api_error(
        sealed_api
            .patch("s", &PatchParams::default(), &Patch::Strategic(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
}

/// 27, 28, 42: a CRD becomes Established and served; CR generation starts at 1 and moves
/// only with spec; status on create or the main endpoint is ignored; /status changes only
/// status.
#[tokio::test]
async fn custom_resources_generation_and_status() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = server().await;
    let client = admin(&server).await;
    install_crd(&client).await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("sealedsecrets.kseal.dev")
        .await
        .unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let api: Api<SealedSecret> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &sealed("s"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status dropped on create");
    let labelled = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let respec = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scope": "cluster-wide"}})),
        )
        .await
        .unwrap();
    assert_eq!(respec.metadata.generation, Some(2));
    let status = json!({"status": {"observedGeneration": 2}, "metadata": {"labels": {"ignored": "yes"}}, "spec": {"scope": "strict"}});
    let after = api
        .patch_status("s", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(after.status.unwrap().observed_generation, Some(2));
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "/status never bumps generation"
    );
    assert!(!after.metadata.labels.unwrap().contains_key("ignored"));
    assert_eq!(
        after.spec.scope,
        kseal_core::scope::Scope::ClusterWide,
        "spec unchanged through /status"
    );
    let main = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().observed_generation,
        Some(2),
        "status ignored on the main endpoint"
    );
}

/// 29–33: server-side apply: fieldManager required, creation with 201, conflicts between
/// managers unless forced, shared ownership, removal of dropped fields, RV preconditions,
/// managedFields in responses.
#[tokio::test]
async fn server_side_apply() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let body = |holder: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}});
    let (code, _) = raw(
        &client,
        "PATCH",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/l",
        "application/apply-patch+yaml",
        &body("a").to_string(),
    )
    .await;
    assert_eq!(code, 422, "fieldManager is required");
    let (code, _) = raw(
        &client,
        "PATCH",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/l?fieldManager=a",
        "application/apply-patch+yaml",
        &body("a").to_string(),
    )
    .await;
    assert_eq!(code, 201, "apply creates");
    let lease = api.get("l").await.unwrap();
    let managed = lease.metadata.managed_fields.unwrap();
    assert_eq!(
        (
            managed[0].manager.as_deref(),
            managed[0].operation.as_deref()
        ),
        (Some("a"), Some("Apply"))
    );
    let (code, reason, message) = api_error(
        api.patch("l", &PatchParams::apply("b"), &Patch::Apply(body("b")))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        "Apply failed with 1 conflict: conflict with \"a\": .spec.holderIdentity"
    );
    api.patch("l", &PatchParams::apply("b"), &Patch::Apply(body("a")))
        .await
        .unwrap();
    let forced = api
        .patch(
            "l",
            &PatchParams::apply("b").force(),
            &Patch::Apply(body("b")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let dropped = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "b"}});
    let after = api
        .patch(
            "l",
            &PatchParams::apply("b").force(),
            &Patch::Apply(dropped.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        after.spec.unwrap().lease_duration_seconds,
        Some(15),
        "still owned by a, so it stays"
    );
    api.patch("m", &PatchParams::apply("b"), &Patch::Apply(body("b")))
        .await
        .unwrap();
    let after = api
        .patch("m", &PatchParams::apply("b"), &Patch::Apply(dropped))
        .await
        .unwrap();
    assert_eq!(
        after.spec.unwrap().lease_duration_seconds,
        None,
        "a field only b applied goes when b drops it"
    );
    let stale = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": "c"}});
    let (code, _, _) = api_error(
        api.patch("l", &PatchParams::apply("c").force(), &Patch::Apply(stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    let wrong = json!({"apiVersion": "coordination.k8s.io/v2", "kind": "Lease", "spec": {}});
    let (code, _, _) = api_error(
        api.patch("l", &PatchParams::apply("c"), &Patch::Apply(wrong))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
}

/// 34–38: delete returns Status; finalizers hold an object until removed; background GC of
/// dependents (a cross-namespace owner counts as absent); foreground; preconditions.
#[tokio::test]
async fn deletion_finalizers_and_garbage_collection() {
    let server = server().await;
    let client = admin(&server).await;
    install_crd(&client).await;
    let owners: Api<SealedSecret> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owner = owners
        .create(&PostParams::default(), &sealed("o"))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let child: Secret = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [
        {"apiVersion": "kseal.dev/v1alpha1", "kind": "SealedSecret", "name": "o", "uid": uid, "controller": true}]}})).unwrap();
    secrets
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    let elsewhere: Secret = serde_json::from_value(
        json!({"metadata": {"name": "orphan", "namespace": "other", "ownerReferences": [
        {"apiVersion": "kseal.dev/v1alpha1", "kind": "SealedSecret", "name": "o", "uid": uid}]}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    assert_eq!(
        server.count("secrets"),
        1,
        "a cross-namespace owner counts as absent"
    );
    assert!(secrets.get_opt("child").await.unwrap().is_some());

    let bad = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_error(owners.delete("o", &bad).await.unwrap_err()).0,
        409
    );
    let status = owners.delete("o", &DeleteParams::default()).await.unwrap();
    assert!(status.is_right(), "a Status, not the object");
    assert!(
        secrets.get_opt("child").await.unwrap().is_none(),
        "collected"
    );

    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["kseal.dev/hold".into()]);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &held).await.unwrap();
    let deleting = cms
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "gone with its last finalizer"
    );

    let owner = owners
        .create(&PostParams::default(), &sealed("f"))
        .await
        .unwrap();
    let dep: Secret = serde_json::from_value(json!({"metadata": {"name": "fdep", "ownerReferences": [
        {"apiVersion": "kseal.dev/v1alpha1", "kind": "SealedSecret", "name": "f", "uid": owner.metadata.uid.unwrap(), "blockOwnerDeletion": true}]}})).unwrap();
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    owners
        .delete("f", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(secrets.get_opt("fdep").await.unwrap().is_none());
    assert!(owners.get_opt("f").await.unwrap().is_none());
}

/// 39, 40: Status bodies and discovery shapes.
#[tokio::test]
async fn discovery_and_status_bodies() {
    let server = server().await;
    let client = admin(&server).await;
    install_crd(&client).await;
    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/secrets/missing",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "secrets \"missing\" not found", "reason": "NotFound", "code": 404,
        "details": {"name": "missing", "group": "", "kind": "secrets"}})
    );
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.kind == "SealedSecret")
        .unwrap();
    assert_eq!(resource.plural, "sealedsecrets");
    assert_eq!(
        caps.subresources.len(),
        1,
        "the status subresource is discovered"
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

/// 46–49: 401 for a bad token, 403 with the real message, `/status` and `resourceNames`
/// rules, non-resource URLs through ClusterRoles only.
#[tokio::test]
async fn authentication_and_rbac() {
    let server = server().await;
    let admin_client = admin(&server).await;
    install_crd(&admin_client).await;
    let bad = client_with(&server, "not-a-token").await;
    let (code, reason, _) = api_error(
        Api::<Secret>::namespaced(bad, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));

    let token = server.service_account_token("kseal-system", "kseal");
    let sa = client_with(&server, &token).await;
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), "default");
    let (code, reason, message) =
        api_error(secrets.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "secrets is forbidden: User \"system:serviceaccount:kseal-system:kseal\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );

    for v in [
        json!({"path": "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", "body": {"metadata": {"name": "r"}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"], "resourceNames": ["one"]},
        {"apiGroups": ["kseal.dev"], "resources": ["sealedsecrets"], "verbs": ["get", "patch"]}]}}),
        json!({"path": "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", "body": {"metadata": {"name": "rb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "kseal", "namespace": "kseal-system"}]}}),
    ] {
        let (code, body) = raw(
            &admin_client,
            "POST",
            v["path"].as_str().unwrap(),
            "application/json",
            &v["body"].to_string(),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(
        api_error(err).0,
        403,
        "resourceNames never allow an unfiltered list"
    );
    secrets
        .list(&ListParams::default().fields("metadata.name=one"))
        .await
        .unwrap();
    assert_eq!(api_error(secrets.get("two").await.unwrap_err()).0, 403);

    let admin_sealed: Api<SealedSecret> = Api::namespaced(admin_client.clone(), "default");
    admin_sealed
        .create(&PostParams::default(), &sealed("s"))
        .await
        .unwrap();
    let sa_sealed: Api<SealedSecret> = Api::namespaced(sa.clone(), "default");
    sa_sealed
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scope": "strict"}})),
        )
        .await
        .unwrap();
    let (code, _, message) = api_error(
        sa_sealed
            .patch_status(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        code, 403,
        "sealedsecrets does not cover sealedsecrets/status"
    );
    assert!(
        message
            .contains("cannot patch resource \"sealedsecrets/status\" in API group \"kseal.dev\""),
        "{message}"
    );

    let (code, _) = raw(&sa, "GET", "/metrics", "application/json", "").await;
    assert_eq!(code, 403);
    let (code, _) = raw(&sa, "GET", "/version", "application/json", "").await;
    assert_eq!(code, 200, "discovery is public to authenticated users");
}

/// 50: events.k8s.io/v1 Events need eventTime, reportingController, reportingInstance,
/// action and reason.
#[tokio::test]
async fn events_are_validated() {
    let server = server().await;
    let client = admin(&server).await;
    let path = "/apis/events.k8s.io/v1/namespaces/default/events";
    let (code, body) = raw(
        &client,
        "POST",
        path,
        "application/json",
        &json!({"metadata": {"name": "e"}, "reason": "Unsealed"}).to_string(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    let full = json!({"metadata": {"name": "e"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "kseal.dev/controller",
        "reportingInstance": "kseal-0", "action": "Unseal", "reason": "Unsealed", "type": "Normal", "note": "ok"});
    let (code, _) = raw(&client, "POST", path, "application/json", &full.to_string()).await;
    assert_eq!(code, 201);
}

/// Programmed non-resource endpoints, as the at-rest checks read them.
#[tokio::test]
async fn programmed_health_and_metrics() {
    let server = server().await;
    server.program(
        "/readyz",
        kseal_tests::apiserver::Programmed {
            status: 200,
            body: "ok".into(),
            verbose_body: Some("[+]ping ok\n[+]kms-providers ok\nreadyz check passed".into()),
            content_type: "text/plain".into(),
        },
    );
    let client = admin(&server).await;
    let req = http::Request::get("/readyz?verbose")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    assert!(text.contains("kms-providers"));
}

/// 5: a continue token older than the history is 410 Expired.
#[tokio::test]
async fn expired_continue_token() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    for i in 0..4 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    api.create(&PostParams::default(), &cm("late", &[]))
        .await
        .unwrap();
    server.force_gone();
    let (code, reason, _) = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (410, "Expired"));
}

/// 1, 2: `?&` query strings, `+` for spaces and percent-encoded set selectors, the List
/// kind and an `items` array even when empty.
#[tokio::test]
async fn query_strings_and_list_shape() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("a", &[("env", "prod")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[("env", "dev")]))
        .await
        .unwrap();
    let both = api
        .list(&ListParams::default().labels("env in (prod,dev)"))
        .await
        .unwrap();
    assert_eq!(both.items.len(), 2);
    let path = "/api/v1/namespaces/default/configmaps?&labelSelector=env+notin+%28prod%29&";
    let (_, body) = raw(&client, "GET", path, "application/json", "").await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (_, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/empty/secrets?",
        "application/json",
        "",
    )
    .await;
    assert_eq!(
        (body["kind"].as_str(), body["items"].clone()),
        (Some("SecretList"), json!([]))
    );
}

/// 13: a watch ends by itself after timeoutSeconds.
#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = std::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    while stream.try_next().await.unwrap().is_some() {}
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// 30, 32: the conflict body names FieldManagerConflict causes; managedFields in an apply
/// body is 400.
#[tokio::test]
async fn apply_conflict_causes_and_managed_fields() {
    let server = server().await;
    let client = admin(&server).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let body = |holder: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": holder}});
    api.patch("l", &PatchParams::apply("a"), &Patch::Apply(body("a")))
        .await
        .unwrap();
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/l?fieldManager=b";
    let (code, status) = raw(
        &client,
        "PATCH",
        path,
        "application/apply-patch+yaml",
        &body("b").to_string(),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    assert_eq!(
        status["details"]["causes"][0]["field"],
        ".spec.holderIdentity"
    );
    let managed = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"managedFields": [{"manager": "x"}]}, "spec": {}});
    let (code, _, message) = api_error(
        api.patch("l", &PatchParams::apply("c"), &Patch::Apply(managed))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (400, "metadata.managedFields must be nil")
    );
}

/// 49: non-resource URLs are granted through a ClusterRole + ClusterRoleBinding.
#[tokio::test]
async fn non_resource_urls_through_cluster_roles() {
    let server = server().await;
    let admin_client = admin(&server).await;
    let token = server.user_token("scraper", &[]);
    let scraper = client_with(&server, &token).await;
    assert_eq!(
        raw(&scraper, "GET", "/metrics", "application/json", "")
            .await
            .0,
        403
    );
    let role = json!({"metadata": {"name": "metrics"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]});
    let binding = json!({"metadata": {"name": "metrics"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics"},
        "subjects": [{"kind": "User", "name": "scraper"}]});
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    assert_eq!(
        raw(
            &admin_client,
            "POST",
            &format!("{rbac}/clusterroles"),
            "application/json",
            &role.to_string()
        )
        .await
        .0,
        201
    );
    assert_eq!(
        raw(
            &admin_client,
            "POST",
            &format!("{rbac}/clusterrolebindings"),
            "application/json",
            &binding.to_string()
        )
        .await
        .0,
        201
    );
    server.program("/metrics", kseal_tests::apiserver::Programmed {
        status: 200,
        body: "apiserver_storage_transformation_operations_total{transformation_type=\"to_storage\"} 1\n".into(),
        verbose_body: None,
        content_type: "text/plain; version=0.0.4".into(),
    });
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    assert!(
        scraper
            .request_text(req)
            .await
            .unwrap()
            .contains("transformation")
    );
}

/// dryRun is refused, never silently persisted.
#[tokio::test]
async fn dry_run_is_refused() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(
        api_error(api.create(&pp, &cm("a", &[])).await.unwrap_err()).0,
        400
    );
    assert_eq!(server.count("configmaps"), 0);
}
