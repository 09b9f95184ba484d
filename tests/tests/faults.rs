//! The fault-injecting proxy itself, in front of a real kube-apiserver: a per-verb error
//! rate hits only that verb, throttling answers 429 with Retry-After, latency is added,
//! cut watches end, and authorization stays the apiserver's (the caller's token is
//! forwarded, never replaced).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kseal_tests::cluster::ControlPlane;
use kseal_tests::faults::{FaultProxy, Faults};
use kube::api::{Api, ListParams, PostParams, WatchParams};

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

#[tokio::test]
async fn error_rate_applies_to_its_verb_only() {
    let plane = plane().await;
    let proxy = FaultProxy::start(&plane).await.unwrap();
    let token = plane.admin_token().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(through(&proxy, &plane, &token).await, "default");
    proxy.set_faults(Faults {
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
    api.get_opt("a").await.unwrap();
    assert_eq!(proxy.injected().errors, 1);
    proxy.set_faults(Faults::default());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let plane = plane().await;
    let proxy = FaultProxy::start(&plane).await.unwrap();
    proxy.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    // A raw request: kube's client would retry the 429 itself.
    let head = raw_get(&plane, &proxy, "/api/v1/namespaces/default/configmaps").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(proxy.injected().throttled, 1);

    // kube's client waits and retries: with half the requests throttled, a list gets
    // through.
    proxy.set_faults(Faults {
        throttle_rate: 0.5,
        ..Faults::default()
    });
    let token = plane.admin_token().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(through(&proxy, &plane, &token).await, "default");
    // Lists until one more was throttled (each list has even odds: 4 fixed lists went
    // unthrottled one run in 16).
    for _ in 0..40 {
        api.list(&ListParams::default()).await.unwrap();
        if proxy.injected().throttled > 1 {
            break;
        }
    }
    assert!(proxy.injected().throttled > 1);
}

/// `GET path` through the proxy over a bare TLS connection; the response's head.
async fn raw_get(plane: &ControlPlane, proxy: &FaultProxy, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(plane.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let port: u16 = proxy.url.rsplit(':').next().unwrap().parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    response.split("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let plane = plane().await;
    let proxy = FaultProxy::start(&plane).await.unwrap();
    let token = plane.admin_token().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(through(&proxy, &plane, &token).await, "default");
    proxy.set_faults(Faults {
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
async fn a_cut_watch_ends() {
    let plane = plane().await;
    let proxy = FaultProxy::start(&plane).await.unwrap();
    let token = plane.admin_token().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(through(&proxy, &plane, &token).await, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("seen"))
        .await
        .unwrap();
    assert!(
        stream.try_next().await.unwrap().is_some(),
        "the watch works"
    );
    proxy.drop_watches();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the cut watch ended");
    assert_eq!(proxy.injected().cut_watches, 1);
}

#[tokio::test]
async fn the_callers_identity_passes_through() {
    let plane = plane().await;
    let proxy = FaultProxy::start(&plane).await.unwrap();
    let sa = plane.service_account("default", "nobody").await.unwrap();
    let api: Api<Secret> = Api::namespaced(through(&proxy, &plane, &sa).await, "default");
    match api.get_opt("x").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("system:serviceaccount:default:nobody"),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
}
