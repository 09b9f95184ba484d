//! Capacity of the real control plane the tests use (kube-apiserver v1.37 and etcd 3.7
//! from `tests/cluster/`), so benchmarks of kseal can be read against it: start-up time,
//! the raw Secret create rate from a plain kube-rs client (the figure the controller
//! benchmark compares against), and listing 50,000 Secrets.
//! Run: `cargo bench -p kseal-tests --bench capacity`. Prints its figures.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Secret;
use kseal_tests::cluster::{ControlPlane, Options};
use kube::api::{Api, ListParams, PostParams};

const SECRETS: usize = 50_000;
const CONCURRENCY: usize = 32;

fn secret(i: usize) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s-{i:05}"), "labels": {"app": "bench"}},
        "data": {"password": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk=", "username": "YWRtaW4="},
    }))
    .unwrap()
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let startup = started.elapsed();
    let client = plane.client(&plane.admin).await.unwrap();
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some("bench".into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), "bench");

    let started = Instant::now();
    futures::stream::iter(0..SECRETS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &secret(i))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    let create = started.elapsed();

    let mut list_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), SECRETS);
        list_times.push(started.elapsed());
    }
    let mut raw_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let req = http::Request::get("/api/v1/namespaces/bench/secrets")
            .body(Vec::new())
            .unwrap();
        let text = client.request_text(req).await.unwrap();
        assert!(text.len() > SECRETS * 100);
        raw_times.push(started.elapsed());
    }
    let started = Instant::now();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let paged = started.elapsed();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let best = |times: &[Duration]| times.iter().map(|d| ms(*d)).fold(f64::MAX, f64::min);
    println!(
        "real kube-apiserver capacity on this machine (release client, {CONCURRENCY} concurrent requests over HTTPS)"
    );
    println!(
        "  start-up (etcd, apiserver, ready):          {:.1} ms",
        ms(startup)
    );
    println!(
        "  create {SECRETS} Secrets:                     {:.0} ms = {:.0} creates/s",
        ms(create),
        SECRETS as f64 / create.as_secs_f64()
    );
    println!(
        "  list {SECRETS}, one request, bytes only:      best of 3 {:.0} ms",
        best(&raw_times)
    );
    println!(
        "  list {SECRETS}, one request, typed (kube-rs): best of 3 {:.0} ms",
        best(&list_times)
    );
    println!(
        "  list {SECRETS}, {pages} pages of 500, typed:     {:.0} ms",
        ms(paged)
    );
}
