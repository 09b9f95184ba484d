//! Starting a real control plane and connecting an unmodified kube-rs client to it
//! through a kubeconfig, as a controller would.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use kseal_tests::cluster::{ControlPlane, Credential, Options};
use kseal_tests::faults::FaultProxy;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub async fn plane() -> ControlPlane {
    ControlPlane::start(Options::default()).await.unwrap()
}

pub async fn admin(plane: &ControlPlane) -> Client {
    plane.client(&plane.admin).await.unwrap()
}

/// A client whose requests go through `proxy`, as `who` (a token: a client certificate
/// does not pass a proxy that ends TLS).
pub async fn through(proxy: &FaultProxy, plane: &ControlPlane, who: &Credential) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&proxy.kubeconfig(plane, who, "default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Applies manifests/crd.yaml (the real SealedSecret and SealedSecretRequest CRDs)
/// through the API and waits until both are established.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/crd.yaml"
    ))
    .unwrap();
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let crds = serde_saphyr::from_multiple::<CustomResourceDefinition>(&text).unwrap();
    for crd in &crds {
        api.create(&Default::default(), crd).await.unwrap();
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap();
        let cond = kube::runtime::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(api.clone(), &name, cond),
        )
        .await
        .unwrap()
        .unwrap();
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
