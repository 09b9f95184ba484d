//! What the leader counts of the SealedSecrets its Controllers watch, for the metrics the
//! dashboard and alerts read: how many there are by kind, how many are not ready by
//! reason, and how many are sealed to each of the cluster's keys.
//!
//! Counted from the Controllers' own caches (the status the API holds, not the
//! reconciler's memory), every [`INTERVAL`] while this replica leads: a deleted object
//! stops counting with no bookkeeping, and a replica that stops leading reports nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kseal_core::recipients::Fingerprint;
use kube::runtime::reflector::Store;

use crate::cached::Cached;
use crate::keys::KeyStore;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{KeyLabel, KindLabel, Metrics, Reason};

/// How often the counts are taken.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// What a cached SealedSecret tells the census.
pub trait Counted {
    /// `kseal` or `bitnami`.
    const KIND: &'static str;
    /// The reason it is not ready, if its status says so for its current generation.
    fn not_ready(&self) -> Option<String>;
    /// The keys it says it is sealed to (the recipients hint; none for Bitnami's).
    fn sealed_to(&self) -> &[Fingerprint];
}

impl Counted for Cached {
    const KIND: &'static str = "kseal";

    fn not_ready(&self) -> Option<String> {
        let status = self.status.as_ref()?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "False"
            && status.observed_generation.is_some()
            && status.observed_generation == self.metadata.generation)
            .then(|| ready.reason.clone())
    }

    fn sealed_to(&self) -> &[Fingerprint] {
        self.recipients()
    }
}

impl Counted for kseal_core::bitnami::SealedSecret {
    const KIND: &'static str = "bitnami";

    fn not_ready(&self) -> Option<String> {
        let status = self.status.as_ref()?;
        let synced = status.conditions.iter().find(|c| c["type"] == "Synced")?;
        (synced["status"] == "False"
            && status.observed_generation.is_some()
            && status.observed_generation == self.metadata.generation)
            .then(|| synced["reason"].as_str().unwrap_or("Unknown").to_owned())
    }

    fn sealed_to(&self) -> &[Fingerprint] {
        &[]
    }
}

/// The counts of one pass.
#[derive(Default)]
struct Counts {
    by_kind: BTreeMap<&'static str, i64>,
    not_ready: BTreeMap<String, i64>,
    by_key: BTreeMap<String, i64>,
}

type Source = Box<dyn Fn(&mut Counts) + Send + Sync>;

/// The caches to count, registered by each Controller as it starts.
#[derive(Default)]
pub struct Census {
    sources: Mutex<Vec<Source>>,
}

impl Census {
    /// Counts the objects of `store` from now on.
    pub fn watch<K>(&self, store: Store<K>)
    where
        K: Counted + kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let source: Source = Box::new(move |counts: &mut Counts| {
            for object in store.state() {
                *counts.by_kind.entry(K::KIND).or_default() += 1;
                if let Some(reason) = object.not_ready() {
                    *counts.not_ready.entry(reason).or_default() += 1;
                }
                for key in object.sealed_to() {
                    *counts.by_key.entry(key.to_string()).or_default() += 1;
                }
            }
        });
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Sets the gauges from the caches every [`INTERVAL`] until the task is dropped
    /// (the leader's work ends; [`Metrics::clear_census`] then drops the gauges). Only
    /// the keys this cluster holds are counted for `sealedsecrets_by_key`. A series whose
    /// count is gone is removed, the others are set in place: a scrape never sees a
    /// half-written census.
    pub async fn run(self: Arc<Self>, metrics: Arc<Metrics>, keys: Arc<KeyStore>) {
        let mut previous = Counts::default();
        loop {
            let mut counts = Counts::default();
            for source in self
                .sources
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                source(&mut counts);
            }
            let held: BTreeMap<String, i64> = keys
                .snapshot()
                .iter()
                .map(|k| {
                    let fingerprint = k.key.fingerprint().to_string();
                    let n = counts.by_key.get(&fingerprint).copied().unwrap_or_default();
                    (fingerprint, n)
                })
                .collect();
            counts.by_key = held;
            set(
                &metrics.sealed_secrets,
                &counts.by_kind,
                &previous.by_kind,
                |kind| KindLabel { kind },
            );
            set(
                &metrics.not_ready,
                &counts.not_ready,
                &previous.not_ready,
                |reason| Reason { reason },
            );
            set(
                &metrics.sealed_to_key,
                &counts.by_key,
                &previous.by_key,
                |fingerprint| KeyLabel { fingerprint },
            );
            previous = counts;
            tokio::time::sleep(INTERVAL).await;
        }
    }
}

/// Sets `family` to `now` (one series per key), removing the series of `before` that
/// `now` lacks.
fn set<K, L>(
    family: &Family<L, Gauge>,
    now: &BTreeMap<K, i64>,
    before: &BTreeMap<K, i64>,
    label: impl Fn(K) -> L,
) where
    K: Clone + Ord,
    L: Clone + std::hash::Hash + Eq + prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug,
{
    for (name, n) in now {
        family.get_or_create(&label(name.clone())).set(*n);
    }
    for name in before.keys().filter(|k| !now.contains_key(*k)) {
        family.remove(&label(name.clone()));
    }
}
