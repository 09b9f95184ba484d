//! Why a reconcile failed ([`Error`]: its condition reason, and whether it waits for a
//! change or retries soon), and how long each object waits before its next try
//! ([`Failures`]), for kseal's SealedSecrets and Bitnami's alike.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kseal_core::reason::Reason;
use kseal_core::sealing::UnsealError;

use crate::owned::Owned;

/// Why a reconcile failed. Permanent ones wait for a change (or a new key); transient
/// ones retry soon with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Names the item and why (`OpenError` messages carry no ciphertext or plaintext), or
    /// the bound the object is over, so the condition Flux and Argo CD show says what to
    /// fix.
    #[error("cannot unseal: {}", .0.message())]
    Unseal(#[source] UnsealError),
    #[error("no sealing keys are loaded")]
    NoKeys,
    /// No loaded key opens it, and keys under custody could not be unwrapped: names the
    /// first such key, its custodian and why.
    #[error("no loaded key opens it; {0}")]
    KeyUnavailable(String),
    /// A Bitnami SealedSecret (drop-in mode) that cannot be unsealed.
    #[error("cannot unseal: {0}")]
    Bitnami(#[source] kseal_core::bitnami::UnsealError),
    /// With the Secret as it was found, which [`crate::refused`] watches for a change.
    #[error(
        "Secret {0:?} exists and is not managed by this SealedSecret; annotate it with kseal.dev/managed: \"true\" to let kseal take it over"
    )]
    SecretNotOwned(String, Box<Owned>),
    /// kube-apiserver refused the Secret as invalid (422), for example a template `type`
    /// that differs from the existing Secret's, which is immutable. Its message names
    /// fields, never values.
    #[error("the API refused the Secret: {0}")]
    SecretRejected(String),
    /// The Secret changed between the cache's view and the write (created, deleted or
    /// replaced): retried at once from the API's view.
    #[error("the Secret {0:?} changed while it was written")]
    SecretChanged(String),
    #[error("the SealedSecret has no namespace")]
    NoNamespace,
    #[error(transparent)]
    Policy(#[from] kseal_core::policy::PolicyError),
    #[error(
        "the cluster stores Secrets in plaintext (see kseal at-rest check); nothing is unsealed under --require-encryption-at-rest=enforce until encryption at rest is configured"
    )]
    EncryptionAtRestNotConfigured,
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The condition reason, also the metric label.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Unseal(e) => e.reason(),
            Error::NoKeys => Reason::NoMatchingKey,
            Error::KeyUnavailable(_) => Reason::KeyUnavailable,
            Error::Bitnami(e) => e.reason(),
            Error::SecretNotOwned(..) => Reason::SecretNotOwned,
            Error::SecretRejected(_) => Reason::SecretRejected,
            Error::SecretChanged(_) | Error::Kube(_) => Reason::ApiError,
            Error::NoNamespace => Reason::InvalidSealedSecret,
            Error::Policy(e) => e.reason(),
            Error::EncryptionAtRestNotConfigured => Reason::EncryptionAtRestNotConfigured,
        }
    }

    pub(crate) fn permanent(&self) -> bool {
        !matches!(self, Error::Kube(_) | Error::SecretChanged(_))
    }
}

/// Consecutive failures per object (kseal's and Bitnami's SealedSecrets), for backoff.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// How long object `key` waits before its next try, one failure more: transient
    /// errors from 1 s doubling to 5 min, permanent ones from 1 min doubling to 1 h. A
    /// change to the object, or a new key, reconciles it sooner.
    pub fn backoff(&self, key: String, permanent: bool) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let (base, cap) = if permanent { (60, 3600) } else { (1, 300) };
        Duration::from_secs((base as u64).saturating_mul(1 << (*n - 1).min(12)).min(cap))
    }

    /// Object `key` succeeded: its next failure starts the backoff again.
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The third review's N1: a Bitnami object that could not be unsealed was retried
    /// every 60 s forever. kseal's and Bitnami's objects now share one backoff: doubling
    /// from a minute to an hour, per object, reset by a success.
    #[test]
    fn failures_back_off_per_object_and_reset_on_success() {
        let failures = Failures::default();
        let minutes: Vec<u64> = (0..8)
            .map(|_| {
                failures
                    .backoff("bitnami.com/shop/big".into(), true)
                    .as_secs()
                    / 60
            })
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
        // another object starts at the beginning
        assert_eq!(
            failures.backoff("shop/db".into(), true),
            Duration::from_secs(60)
        );
        let seconds: Vec<u64> = (0..3)
            .map(|_| failures.backoff("shop/api".into(), false).as_secs())
            .collect();
        assert_eq!(seconds, [1, 2, 4]);
        failures.forget("bitnami.com/shop/big");
        assert_eq!(
            failures.backoff("bitnami.com/shop/big".into(), true),
            Duration::from_secs(60)
        );
    }
}
