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

/// Which kind of SealedSecret: `kseal` or `bitnami`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// How a request reached the controller: `request` (a SealedSecretRequest) or `http`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViaLabel {
    pub via: &'static str,
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
    /// When each key in use was made (its Secret's creation time, clamped as loaded).
    pub key_created: Family<KeyLabel, Gauge>,
    /// `--key-rotation-period`, in seconds (0: no scheduled rotation).
    pub rotation_period: Gauge,
    /// Requests answered `RateLimited`, by how they came.
    pub rate_limited: Family<ViaLabel, Counter>,
    /// The leader's census ([`crate::census`]): SealedSecrets by kind, not ready by
    /// reason, and sealed to each key in use.
    pub sealed_secrets: Family<KindLabel, Gauge>,
    pub not_ready: Family<Reason, Gauge>,
    pub sealed_to_key: Family<KeyLabel, Gauge>,
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
        let key_created = Family::<KeyLabel, Gauge>::default();
        let rotation_period = Gauge::default();
        let rate_limited = Family::<ViaLabel, Counter>::default();
        // Both series from the start, so that a rate over them starts at zero.
        for via in ["request", "http"] {
            rate_limited.get_or_create(&ViaLabel { via }).inc_by(0);
        }
        let sealed_secrets = Family::<KindLabel, Gauge>::default();
        let not_ready = Family::<Reason, Gauge>::default();
        let sealed_to_key = Family::<KeyLabel, Gauge>::default();
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
            "key_created_timestamp_seconds",
            "When each key in use was made",
            key_created.clone(),
        );
        registry.register(
            "key_rotation_period_seconds",
            "How old the newest key may get before a new one is made (0: no scheduled rotation)",
            rotation_period.clone(),
        );
        registry.register(
            "requests_rate_limited",
            "Verify, reseal and migrate requests answered RateLimited, by how they came (request, http)",
            rate_limited.clone(),
        );
        registry.register(
            "sealedsecrets",
            "SealedSecrets watched, by kind (kseal, bitnami); reported by the leader",
            sealed_secrets.clone(),
        );
        registry.register(
            "sealedsecrets_not_ready",
            "SealedSecrets whose status says they cannot be unsealed, by reason; reported by the leader",
            not_ready.clone(),
        );
        registry.register(
            "sealedsecrets_by_key",
            "SealedSecrets sealed to each key in use (their recipients hint); reported by the leader",
            sealed_to_key.clone(),
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
            key_created,
            rotation_period,
            rate_limited,
            sealed_secrets,
            not_ready,
            sealed_to_key,
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

    /// Counts one request answered `RateLimited`, that came `via` `request` or `http`.
    pub fn count_rate_limited(&self, via: &'static str) {
        self.rate_limited.get_or_create(&ViaLabel { via }).inc();
    }

    /// Drops the census's gauges: a replica that does not lead reports none.
    pub fn clear_census(&self) {
        self.sealed_secrets.clear();
        self.not_ready.clear();
        self.sealed_to_key.clear();
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
