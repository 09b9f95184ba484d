//! What a key Secret holds (its identity in plaintext, or wrapped) and the [`KeyStore`]
//! of the keys the controller may use.

use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use kseal_core::keys::{Key, Keyring, parse_identity_file};
use kseal_core::recipients::{PublishedRecipient, RECIPIENTS_DOCUMENT_FORMAT, RecipientsDocument};
use kube::ResourceExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use kseal_core::contract::{ACTIVE, CREATED_ANNOTATION, KEY_LABEL, KEY_TYPE};
use kseal_core::contract::{RECIPIENT_ANNOTATION, WRAPPED_IDENTITY_KEY};
pub use kseal_core::keys::IDENTITY_KEY;

/// A key loaded from its Secret.
#[derive(Clone)]
pub struct LoadedKey {
    pub key: Key,
    pub secret_name: String,
    pub created: OffsetDateTime,
    pub held: Held,
}

/// How a key's Secret stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Held {
    /// The identity in plaintext.
    #[default]
    Plaintext,
    /// Wrapped by the custodian under KEK `kek`, as version `version` of the Secret.
    Wrapped { kek: String, version: String },
}

/// A key Secret as found in the watch, before its key is usable: the identity in
/// plaintext, or wrapped (unwrapped by [`watch`], once per version of the Secret).
pub enum Stored {
    Plain(LoadedKey),
    Wrapped(WrappedKey),
}

impl Stored {
    pub fn created(&self) -> OffsetDateTime {
        match self {
            Stored::Plain(key) => key.created,
            Stored::Wrapped(key) => key.created,
        }
    }
}

/// A key Secret under custody: what it publishes, and its wrapped identity (a JSON
/// document parsed when it is unwrapped; a malformed one is a reason then).
pub struct WrappedKey {
    pub secret_name: String,
    pub created: OffsetDateTime,
    /// The recipient the Secret says it holds the identity of.
    pub recipient: String,
    /// The Secret's `resourceVersion`: a key is unwrapped once per version.
    pub version: String,
    pub document: Vec<u8>,
}

/// A key Secret under custody whose key is not usable now, and why (no key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    pub secret_name: String,
    pub created: OffsetDateTime,
    pub recipient: String,
    pub why: String,
}

/// The keys the controller may use, rebuilt whenever key Secrets change. Readers take
/// the current set as one `Arc` (a reconcile, a request): nothing is copied per read.
#[derive(Default)]
pub struct KeyStore {
    keys: RwLock<Arc<Loaded>>,
    /// Bitnami sealed-secrets keys imported with `--bitnami-keys-namespace`.
    bitnami: RwLock<Arc<kseal_core::bitnami::BitnamiKeys>>,
}

/// One set of keys, newest first, the keyring built from them once, and the key
/// Secrets whose keys could not be unwrapped.
#[derive(Default)]
struct Loaded {
    keys: Vec<LoadedKey>,
    ring: Arc<Keyring>,
    unavailable: Vec<Unavailable>,
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Reads an active key Secret; `None` for anything else (retired, malformed, or not a
/// key at all). Its identity is in plaintext ([`Stored::Plain`], which a Secret holding
/// both forms counts as: it holds plaintext) or wrapped by a custodian.
///
/// A key is a Secret of type [`KEY_TYPE`], labelled `kseal.dev/key=active`, owned by
/// nothing (a Secret that unsealing wrote has its SealedSecret as owner). Its creation
/// time is the `kseal.dev/created` annotation (a restored backup keeps its original one)
/// but never later than the Secret's own creation: a key cannot claim to be newer than it
/// is, to be sealed to first or to stop rotation.
pub fn parse_key_secret(secret: &Secret, cutoff: Option<OffsetDateTime>) -> Option<Stored> {
    if secret.labels().get(KEY_LABEL).map(String::as_str) != Some(ACTIVE)
        || secret.type_.as_deref() != Some(KEY_TYPE)
        || !secret.owner_references().is_empty()
    {
        return None;
    }
    let created_at = secret
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok());
    let claimed = secret
        .annotations()
        .get(CREATED_ANNOTATION)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let created = match (claimed, created_at) {
        (Some(claimed), Some(at)) => claimed.min(at),
        (claimed, at) => claimed.or(at)?,
    };
    if cutoff.is_some_and(|c| created < c) {
        return None;
    }
    let data = secret.data.as_ref()?;
    if let Some(bytes) = data.get(IDENTITY_KEY) {
        let text = std::str::from_utf8(&bytes.0).ok()?;
        let key = parse_identity_file(text).ok()?.into_iter().next()?;
        return Some(Stored::Plain(LoadedKey {
            key,
            secret_name: secret.name_any(),
            created,
            held: Held::Plaintext,
        }));
    }
    let document = data.get(WRAPPED_IDENTITY_KEY)?;
    Some(Stored::Wrapped(WrappedKey {
        secret_name: secret.name_any(),
        created,
        recipient: secret.annotations().get(RECIPIENT_ANNOTATION)?.clone(),
        version: secret.resource_version().unwrap_or_default(),
        document: document.0.clone(),
    }))
}

impl KeyStore {
    /// Replaces the keys, keeping them newest first. Returns how many there are.
    /// Creation times are to the second (the API's `creationTimestamp` bounds them): for
    /// two keys made in the same second, the later name wins, and key names sort by time.
    pub fn set(&self, keys: Vec<LoadedKey>) -> usize {
        self.set_with_unavailable(keys, Vec::new())
    }

    /// [`Self::set`], with the key Secrets whose keys could not be unwrapped.
    pub fn set_with_unavailable(
        &self,
        mut keys: Vec<LoadedKey>,
        unavailable: Vec<Unavailable>,
    ) -> usize {
        keys.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then(b.secret_name.cmp(&a.secret_name))
        });
        let n = keys.len();
        let ring = Arc::new(Keyring::new(keys.iter().map(|k| k.key.clone())));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Loaded {
            keys,
            ring,
            unavailable,
        });
        n
    }

    /// The key Secrets under custody whose keys are not usable now.
    pub fn unavailable(&self) -> Vec<Unavailable> {
        self.loaded().unavailable.clone()
    }

    /// Why no key opens what a missing key sealed, when that may be the cause: one line
    /// naming each key Secret that could not be unwrapped and why.
    pub fn unavailable_reason(&self) -> Option<String> {
        let loaded = self.loaded();
        let first = loaded.unavailable.first()?;
        let more = match loaded.unavailable.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!(
            "key {} ({}) is under custody and could not be unwrapped: {}{more}",
            first.secret_name, first.recipient, first.why
        ))
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn snapshot(&self) -> Vec<LoadedKey> {
        self.loaded().keys.clone()
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.loaded().ring.clone()
    }

    pub fn newest(&self) -> Option<LoadedKey> {
        self.loaded().keys.first().cloned()
    }

    pub fn bitnami(&self) -> Arc<kseal_core::bitnami::BitnamiKeys> {
        self.bitnami
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_bitnami(&self, keys: kseal_core::bitnami::BitnamiKeys) -> usize {
        let n = keys.len();
        *self.bitnami.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        n
    }

    /// The recipients document: every usable key, newest first.
    pub fn document(&self) -> RecipientsDocument {
        RecipientsDocument {
            format: RECIPIENTS_DOCUMENT_FORMAT.into(),
            recipients: self
                .loaded()
                .keys
                .iter()
                .map(|k| PublishedRecipient {
                    recipient: k.key.recipient().to_string(),
                    fingerprint: k.key.fingerprint().clone(),
                    created: Some(rfc3339(k.created)),
                })
                .collect(),
        }
    }
}

/// Wipes a Secret's values in place (request bodies, answers, watch events that held
/// plaintext or key material).
pub(crate) fn wipe_data(secret: &mut Secret) {
    if let Some(data) = secret.data.as_mut() {
        for v in data.values_mut() {
            zeroize::Zeroize::zeroize(&mut v.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{key_secret, slot_name};
    use std::time::Duration;

    #[test]
    fn of_two_keys_made_in_the_same_second_the_later_name_seals() {
        let now = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
        // The scheduled rotation's name for the day, and rotate-key's a moment later.
        let (scheduled, manual) = (
            slot_name(now, Duration::from_secs(86_400)),
            slot_name(now, Duration::from_secs(1)),
        );
        assert!(scheduled < manual, "{scheduled} {manual}");
        let store = KeyStore::default();
        let loaded = |name: &str| LoadedKey {
            key: Key::generate(),
            secret_name: name.to_owned(),
            created: now,
            held: Held::Plaintext,
        };
        store.set(vec![loaded(&manual), loaded(&scheduled)]);
        assert_eq!(store.newest().unwrap().secret_name, manual);
        store.set(vec![loaded(&scheduled), loaded(&manual)]);
        assert_eq!(store.newest().unwrap().secret_name, manual);
    }

    #[test]
    fn replicas_starting_in_the_same_period_pick_the_same_name() {
        let period = Duration::from_secs(30 * 86_400);
        let a = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
        let b = a + Duration::from_secs(5);
        assert_eq!(slot_name(a, period), slot_name(b, period));
        assert_ne!(slot_name(a, period), slot_name(a + period, period));
    }

    #[test]
    fn only_active_keys_after_the_cutoff_load() {
        let key = Key::generate();
        let created = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
        let secret = key_secret(&key, "k", "ns", created);
        assert!(parse_key_secret(&secret, None).is_some());
        assert!(parse_key_secret(&secret, Some(created + Duration::from_secs(1))).is_none());
        let mut retired = secret.clone();
        retired
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(KEY_LABEL.into(), "compromised".into());
        assert!(parse_key_secret(&retired, None).is_none());
    }

    #[test]
    fn only_controller_made_keys_load_and_none_is_newer_than_its_secret() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
        let key = Key::generate();
        let made = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
        let mut secret = key_secret(&key, "k", "ns", made + Duration::from_secs(86_400 * 30_000));
        secret.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(made.unix_timestamp()).unwrap(),
        ));
        assert_eq!(parse_key_secret(&secret, None).unwrap().created(), made);

        let mut opaque = secret.clone();
        opaque.type_ = Some("Opaque".into());
        assert!(parse_key_secret(&opaque, None).is_none());

        let mut unsealed = secret.clone();
        unsealed.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "kseal.dev/v1alpha1".into(),
            kind: "SealedSecret".into(),
            name: "k".into(),
            uid: "u".into(),
            ..Default::default()
        }]);
        assert!(parse_key_secret(&unsealed, None).is_none());
    }
}
