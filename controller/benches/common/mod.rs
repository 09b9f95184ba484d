//! What the controller benchmarks share: creating objects all at once, counting Secrets,
//! reading a process's memory.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::manifest::SecretInput;
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::SealedSecret;
use kseal_core::scope::Scope;
use kseal_core::sealing::seal_secret;
use kube::api::{Api, ListParams, PostParams};
use zeroize::Zeroizing;

/// Creates in flight at once.
pub const CONCURRENCY: usize = 32;

/// What can be created through an `Api` and sent between tasks.
pub trait Object:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Object for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Creates `objects`, [`CONCURRENCY`] at a time.
pub async fn create_all<K: Object>(api: &Api<K>, objects: Vec<K>) {
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

/// How many Secrets `api` holds: a one-item page and the apiserver's remaining count.
pub async fn count(api: &Api<Secret>) -> usize {
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(page) => page.items.len() + page.metadata.remaining_item_count.unwrap_or(0) as usize,
        Err(_) => 0,
    }
}

/// Waits until `api` holds `n` Secrets, or `limit` passes: (elapsed, how many).
pub async fn wait_count(api: &Api<Secret>, n: usize, limit: Duration) -> (Duration, usize) {
    let started = Instant::now();
    loop {
        let have = count(api).await;
        if have >= n || started.elapsed() >= limit {
            return (started.elapsed(), have);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `n` strict SealedSecrets `ss-00000`… in `namespace`, each with two items (`password`
/// different in each, `username`), sealed to `recipients`.
pub fn sealed_objects(recipients: &RecipientSet, namespace: &str, n: usize) -> Vec<SealedSecret> {
    (0..n)
        .map(|i| {
            let mut input = SecretInput {
                name: Some(format!("ss-{i:05}")),
                namespace: Some(namespace.into()),
                ..SecretInput::default()
            };
            input.data.insert(
                "password".into(),
                Zeroizing::new(format!("value-{i}").into_bytes()),
            );
            input
                .data
                .insert("username".into(), Zeroizing::new(b"admin".to_vec()));
            seal_secret(&input, Scope::Strict, recipients).unwrap()
        })
        .collect()
}
