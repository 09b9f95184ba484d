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
pub struct VerdictLabel {
    pub verdict: String,
}

/// What an API write by the reconciler was for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    pub object: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabel {
    /// `plaintext` or `wrapped`.
    pub storage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    pub version: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub unseals: Counter,
    /// Sealed items opened (one decryption each).
    pub items_opened: Counter,
    /// Reconciles that found the Secret and the status already as they would make them.
    pub up_to_date: Counter,
    /// API writes by the reconciler: `secret`, `status`, `event`.
    pub writes: Family<WriteLabel, Counter>,
    pub failures: Family<Reason, Counter>,
    pub reconcile_seconds: Histogram,
    pub keys: Gauge,
    pub key_age_seconds: Family<KeyLabel, Gauge>,
    /// Keys in use by how their Secret stores them: `plaintext` under custody is a key
    /// left behind (`kseal-controller custody wrap` wraps it).
    pub keys_stored: Family<StorageLabel, Gauge>,
    /// Key Secrets under custody that could not be unwrapped (custodian down or refusing).
    pub keys_unavailable: Gauge,
    pub leader: Gauge,
    /// 1 for the current at-rest verdict, 0 for the others.
    pub at_rest_verdict: Family<VerdictLabel, Gauge>,
    pub at_rest_checked: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kseal");
        let unseals = Counter::default();
        let items_opened = Counter::default();
        let up_to_date = Counter::default();
        let writes = Family::<WriteLabel, Counter>::default();
        let failures = Family::<Reason, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let keys = Gauge::default();
        let key_age_seconds = Family::<KeyLabel, Gauge>::default();
        let keys_stored = Family::<StorageLabel, Gauge>::default();
        for storage in ["plaintext", "wrapped"] {
            keys_stored.get_or_create(&StorageLabel { storage }).set(0);
        }
        let keys_unavailable = Gauge::default();
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
            "items_opened",
            "Sealed items decrypted",
            items_opened.clone(),
        );
        registry.register(
            "up_to_date",
            "Reconciles that found nothing to do: no decryption, no write",
            up_to_date.clone(),
        );
        registry.register(
            "api_writes",
            "API writes by the reconciler, by object (secret, status, event)",
            writes.clone(),
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
            "keys_stored",
            "Keys in use by how their Secret stores them (plaintext, wrapped by the custodian)",
            keys_stored.clone(),
        );
        registry.register(
            "keys_unavailable",
            "Key Secrets under custody that could not be unwrapped (the custodian down or refusing)",
            keys_unavailable.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        registry.register("build_info", "Build information", build);
        let at_rest_verdict = Family::<VerdictLabel, Gauge>::default();
        registry.register(
            "encryption_at_rest",
            "Whether the cluster stores Secrets encrypted: 1 for the current verdict (encrypted, plaintext, unknown)",
            at_rest_verdict.clone(),
        );
        let at_rest_checked = Gauge::default();
        registry.register(
            "encryption_at_rest_last_check_timestamp_seconds",
            "When the encryption-at-rest checks last ran",
            at_rest_checked.clone(),
        );
        Metrics {
            registry,
            unseals,
            items_opened,
            up_to_date,
            writes,
            failures,
            reconcile_seconds,
            keys,
            key_age_seconds,
            keys_stored,
            keys_unavailable,
            leader,
            at_rest_verdict,
            at_rest_checked,
        }
    }
}

impl Metrics {
    /// Counts one API write for `object` (`secret`, `status` or `event`).
    pub fn wrote(&self, object: &'static str) {
        self.writes.get_or_create(&WriteLabel { object }).inc();
    }

    pub fn failure(&self, reason: kseal_core::reason::Reason) {
        self.failures
            .get_or_create(&Reason {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// Records an at-rest verdict (`encrypted`, `plaintext` or `unknown`).
    pub fn at_rest(&self, verdict: &str) {
        for v in ["encrypted", "plaintext", "unknown"] {
            self.at_rest_verdict
                .get_or_create(&VerdictLabel { verdict: v.into() })
                .set(i64::from(v == verdict));
        }
        self.at_rest_checked.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
        );
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
