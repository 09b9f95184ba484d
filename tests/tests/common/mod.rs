//! Starting a test server and connecting an unmodified kube-rs client to it through a
//! kubeconfig, as a controller would.
#![allow(dead_code, clippy::unwrap_used)]

use kseal_tests::apiserver::{Config, TestServer};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub async fn server() -> TestServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    TestServer::start(Config::default()).await.unwrap()
}

pub async fn client_with(server: &TestServer, token: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig(token, "default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn admin(server: &TestServer) -> Client {
    client_with(server, &server.admin_token).await
}

/// Applies manifests/crd.yaml (the real SealedSecret and SealedSecretRequest CRDs)
/// through the API.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/crd.yaml"
    ))
    .unwrap();
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in serde_saphyr::from_multiple::<CustomResourceDefinition>(&text).unwrap() {
        api.create(&Default::default(), &crd).await.unwrap();
    }
}

/// Sends a raw request; returns (status code, JSON body).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body.as_bytes().to_vec())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
