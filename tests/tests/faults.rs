//! The fault controls themselves: a per-verb error rate hits only that verb, latency is
//! added, and the HTTP control API (for the binary) is for the admin identity only.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kseal_tests::apiserver::Faults;
use kube::api::{Api, ListParams, PostParams};

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

#[tokio::test]
async fn error_rate_applies_to_its_verb_only() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    server.set_faults(Faults {
        error_rate: [("create".to_string(), 1.0)].into(),
        ..Faults::default()
    });
    match api
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(
            (s.code, s.reason.as_str(), s.message.as_str()),
            (500, "InternalError", "injected fault on create")
        ),
        other => panic!("{other}"),
    }
    api.list(&ListParams::default()).await.unwrap();
    assert_eq!(server.faults_injected().0, 1);
    server.set_faults(Faults::default());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let server = server().await;
    let api: Api<ConfigMap> = Api::namespaced(admin(&server).await, "default");
    server.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the injected delay was applied"
    );
}

#[tokio::test]
async fn http_control_api_is_admin_only() {
    let server = server().await;
    let admin_client = admin(&server).await;
    let user = client_with(&server, &server.user_token("dev", &[])).await;
    let body = r#"{"errorRate": {"list": 1.0}}"#;
    assert_eq!(
        raw(
            &user,
            "POST",
            "/_kseal-test/faults",
            "application/json",
            body
        )
        .await
        .0,
        403
    );
    assert_eq!(
        raw(
            &admin_client,
            "POST",
            "/_kseal-test/faults",
            "application/json",
            body
        )
        .await
        .0,
        200
    );
    let (code, _) = raw(
        &admin_client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 500, "the fault set over HTTP is in force");
    let (code, body) = raw(
        &admin_client,
        "POST",
        "/_kseal-test/tokens",
        "application/json",
        r#"{"serviceAccount": {"namespace": "ns", "name": "sa"}}"#,
    )
    .await;
    assert_eq!(code, 200);
    let sa = client_with(&server, body["token"].as_str().unwrap()).await;
    let (code, status) = raw(
        &sa,
        "GET",
        "/api/v1/namespaces/ns/secrets/x",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("system:serviceaccount:ns:sa")
    );
}
