//! Prometheus metrics with a fixed label set: never a value, a name of a Secret item or
//! anything user-controlled beyond the reason enum.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub fingerprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    pub version: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub unseals: Counter,
    pub failures: Family<Reason, Counter>,
    pub reconcile_seconds: Histogram,
    pub keys: Gauge,
    pub key_age_seconds: Family<KeyLabel, Gauge>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kseal");
        let unseals = Counter::default();
        let failures = Family::<Reason, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let keys = Gauge::default();
        let key_age_seconds = Family::<KeyLabel, Gauge>::default();
        let leader = Gauge::default();
        let build = Family::<BuildLabel, Gauge>::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "unseals",
            "SealedSecrets unsealed into Secrets",
            unseals.clone(),
        );
        registry.register(
            "unseal_failures",
            "SealedSecrets that could not be unsealed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one SealedSecret",
            reconcile_seconds.clone(),
        );
        registry.register("keys", "Sealing keys in use", keys.clone());
        registry.register(
            "key_age_seconds",
            "Age of each key in use",
            key_age_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        registry.register("build_info", "Build information", build);
        Metrics {
            registry,
            unseals,
            failures,
            reconcile_seconds,
            keys,
            key_age_seconds,
            leader,
        }
    }
}

impl Metrics {
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
