//! Why a SealedSecret is or is not unsealed: one vocabulary for the `Ready` condition's
//! reason, the `UnsealFailed` Event, the `kseal_unseal_failures_total{reason}` metric, the
//! answers to verify and reseal (SealedSecretRequest status and `/v1/verify`), and what
//! the CLI prints. docs/controller.md has a row for each, and a test holds it to that.

use std::fmt;

/// A reason, written CamelCase as Kubernetes condition reasons are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The Secret holds every item.
    Unsealed,
    /// An item was sealed for another namespace, name, item key or scope.
    ScopeMismatch,
    /// No key the controller holds opens an item.
    NoMatchingKey,
    /// No key the controller holds opens an item, and a key under custody could not be
    /// unwrapped (the custodian down or refusing): the message names the key and why.
    KeyUnavailable,
    /// An item was modified or damaged: its age file fails to decrypt.
    DecryptionFailed,
    /// An item is not a sealed value at all: not base64, not an age file, or no envelope.
    MalformedSealedValue,
    /// An envelope version this controller does not read.
    UnsupportedFormat,
    /// An item over the bounds, refused before any decryption.
    SealedValueTooLarge,
    /// More items, or more key trials to open them, than one object may cost
    /// (`kseal_core::limits`): refused before any decryption.
    TooMuchWork,
    /// The object is not a SealedSecret the controller can work on (no namespace, no
    /// items, a Bitnami object it cannot read).
    InvalidSealedSecret,
    /// In the controller's namespace, or one it is told to leave alone.
    ForbiddenNamespace,
    /// The template sets a refused type, label or annotation.
    ForbiddenTemplate,
    /// A Secret of that name exists and is not managed by this SealedSecret.
    SecretNotOwned,
    /// kube-apiserver refused the Secret as invalid.
    SecretRejected,
    /// Under `--require-encryption-at-rest=enforce`, the cluster stores Secrets in plaintext.
    EncryptionAtRestNotConfigured,
    /// The API server refused or failed a request: transient.
    ApiError,
    /// A SealedSecretRequest over its namespace's rate limit (answers only).
    RateLimited,
    /// Resealing would put post-quantum and classic recipients in one value (reseal only).
    MixedRecipients,
}

impl Reason {
    /// Every reason, in the order docs/controller.md lists them.
    pub const ALL: [Reason; 18] = [
        Reason::Unsealed,
        Reason::ScopeMismatch,
        Reason::NoMatchingKey,
        Reason::KeyUnavailable,
        Reason::DecryptionFailed,
        Reason::MalformedSealedValue,
        Reason::UnsupportedFormat,
        Reason::SealedValueTooLarge,
        Reason::TooMuchWork,
        Reason::InvalidSealedSecret,
        Reason::ForbiddenNamespace,
        Reason::ForbiddenTemplate,
        Reason::SecretNotOwned,
        Reason::SecretRejected,
        Reason::EncryptionAtRestNotConfigured,
        Reason::ApiError,
        Reason::RateLimited,
        Reason::MixedRecipients,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsealed => "Unsealed",
            Reason::ScopeMismatch => "ScopeMismatch",
            Reason::NoMatchingKey => "NoMatchingKey",
            Reason::KeyUnavailable => "KeyUnavailable",
            Reason::DecryptionFailed => "DecryptionFailed",
            Reason::MalformedSealedValue => "MalformedSealedValue",
            Reason::UnsupportedFormat => "UnsupportedFormat",
            Reason::SealedValueTooLarge => "SealedValueTooLarge",
            Reason::TooMuchWork => "TooMuchWork",
            Reason::InvalidSealedSecret => "InvalidSealedSecret",
            Reason::ForbiddenNamespace => "ForbiddenNamespace",
            Reason::ForbiddenTemplate => "ForbiddenTemplate",
            Reason::SecretNotOwned => "SecretNotOwned",
            Reason::SecretRejected => "SecretRejected",
            Reason::EncryptionAtRestNotConfigured => "EncryptionAtRestNotConfigured",
            Reason::ApiError => "ApiError",
            Reason::RateLimited => "RateLimited",
            Reason::MixedRecipients => "MixedRecipients",
        }
    }

    /// What to do about it, in a few words (the CLI adds this after an answer's message).
    pub fn remedy(self) -> Option<&'static str> {
        Some(match self {
            Reason::Unsealed => return None,
            Reason::ScopeMismatch => {
                "seal it again for where it is (kseal seal with the right -n, --name or --scope)"
            }
            Reason::NoMatchingKey => {
                "it was sealed to another cluster's key or a retired one: seal it again against this cluster"
            }
            Reason::KeyUnavailable => {
                "bring the custodian back (kseal status names it); the controller tries again by itself"
            }
            Reason::DecryptionFailed => {
                "restore the file from Git, or seal the item again (kseal merge)"
            }
            Reason::MalformedSealedValue => {
                "this is not a value kseal sealed: seal the item again (kseal merge)"
            }
            Reason::UnsupportedFormat => "upgrade the controller",
            Reason::SealedValueTooLarge => {
                "seal it again with kseal seal; a value like this was not made by kseal"
            }
            Reason::TooMuchWork => {
                "split it into SealedSecrets of at most 256 items, each sealed with kseal seal"
            }
            Reason::InvalidSealedSecret => "check the object with kseal validate",
            Reason::ForbiddenNamespace => "SealedSecrets are never unsealed there: move it",
            Reason::ForbiddenTemplate => "remove it from the template",
            Reason::SecretNotOwned => {
                "annotate the Secret kseal.dev/managed: \"true\" (take over) or kseal.dev/patch: \"true\" (merge)"
            }
            Reason::SecretRejected => {
                "delete the Secret (kseal writes it again), or seal with the existing type"
            }
            Reason::EncryptionAtRestNotConfigured => {
                "turn encryption at rest on (kseal at-rest check)"
            }
            Reason::ApiError => "transient: retried with backoff",
            Reason::RateLimited => "ask more slowly; the controller's --rate-limit sets the pace",
            Reason::MixedRecipients => {
                "seal it again to recipients of one kind: all post-quantum (age1pq1…) or all classic"
            }
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::str::FromStr for Reason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/controller.md's table of reasons has a row for every reason, in this order.
    #[test]
    fn the_docs_list_every_reason() {
        let doc = include_str!("../../docs/controller.md");
        let rows: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(name, _)| name))
            .filter(|name| name.parse::<Reason>().is_ok())
            .collect();
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(rows, all);
    }

    #[test]
    fn names_read_back() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
        }
        assert_eq!("Nonsense".parse::<Reason>(), Err(()));
    }
}
