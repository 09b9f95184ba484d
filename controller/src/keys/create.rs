//! New key Secrets: their names, their contents (plaintext or wrapped), and rotation.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::contract::{
    FINGERPRINT_ANNOTATION, MANAGED_BY, MANAGER, RECIPIENT_ANNOTATION, WRAPPED_IDENTITY_KEY,
};
use kseal_core::keys::Key;
use kube::Client;
use kube::api::{Api, PostParams};
use time::OffsetDateTime;

use super::store::{
    ACTIVE, CREATED_ANNOTATION, IDENTITY_KEY, KEY_LABEL, KEY_TYPE, KeyStore, parse_key_secret,
    rfc3339, wipe_data,
};
use crate::custody::Custody;
use crate::flags::KeyType;

/// The Secret that stores `key`.
pub fn key_secret(key: &Key, name: &str, namespace: &str, created: OffsetDateTime) -> Secret {
    let created = rfc3339(created);
    let identity = key.to_identity_file(&created);
    let mut secret = Secret {
        type_: Some(KEY_TYPE.into()),
        data: Some(BTreeMap::from([(
            IDENTITY_KEY.to_owned(),
            ByteString(identity.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(namespace.to_owned());
    secret.metadata.labels = Some(BTreeMap::from([
        (KEY_LABEL.to_owned(), ACTIVE.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ]));
    secret.metadata.annotations = Some(BTreeMap::from([
        (CREATED_ANNOTATION.to_owned(), created),
        (
            FINGERPRINT_ANNOTATION.to_owned(),
            key.fingerprint().to_string(),
        ),
    ]));
    secret
}

/// The name of a key made at `now`: the start of the slot of length `slot` that `now`
/// falls in, `kseal-key-YYYYMMDD-HHMMSS`, the same on every replica that decides to make
/// one in that slot.
pub fn slot_name(now: OffsetDateTime, slot: Duration) -> String {
    let period = slot;
    let period = period.as_secs().max(1) as i64;
    let slot_start = now.unix_timestamp().div_euclid(period) * period;
    let start = OffsetDateTime::from_unix_timestamp(slot_start).unwrap_or(now);
    format!(
        "kseal-key-{:04}{:02}{:02}-{:02}{:02}{:02}",
        start.year(),
        u8::from(start.month()),
        start.day(),
        start.hour(),
        start.minute(),
        start.second()
    )
}

/// The name of a key of `key_type` made at `now` in a slot of length `slot`: post-quantum
/// keys are `kseal-key-pq-…`, so a move to them the day an X25519 key was made gets a
/// name of its own (and sorts after it).
pub fn key_name(now: OffsetDateTime, slot: Duration, key_type: KeyType) -> String {
    let name = slot_name(now, slot);
    match key_type {
        KeyType::X25519 => name,
        KeyType::Pq => name.replacen("kseal-key-", "kseal-key-pq-", 1),
    }
}

/// The Secret that stores `key` under custody: the identity wrapped by the custodian
/// for this Secret's place, and the recipient it publishes.
pub async fn wrapped_key_secret(
    key: &Key,
    name: &str,
    namespace: &str,
    created: OffsetDateTime,
    custody: &Custody,
) -> Result<Secret, kseal_custody::Error> {
    let mut secret = key_secret(key, name, namespace, created);
    let created = rfc3339(created);
    let wrapped = custody.wrap(key, namespace, name, &created).await?;
    secret.data = Some(BTreeMap::from([(
        WRAPPED_IDENTITY_KEY.to_owned(),
        ByteString(wrapped.to_json()),
    )]));
    secret
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(RECIPIENT_ANNOTATION.to_owned(), key.recipient().to_string());
    Ok(secret)
}

/// The key Secret for `key`: wrapped under custody, else in plaintext.
async fn new_key_secret(
    key: &Key,
    name: &str,
    namespace: &str,
    created: OffsetDateTime,
    custody: Option<&Custody>,
) -> anyhow::Result<Secret> {
    Ok(match custody {
        Some(custody) => wrapped_key_secret(key, name, namespace, created, custody).await?,
        None => key_secret(key, name, namespace, created),
    })
}

/// Creates a key Secret named `name` (its identity wrapped when `custody` is on: a key
/// that cannot be wrapped is not made). An existing key of that name means another
/// replica won the race: not an error. A name taken by anything else (a Secret someone
/// made to squat the next slot) does not stop rotation: the key gets a name of its own,
/// `name-` and a random suffix, instead.
pub async fn create_key(
    client: &Client,
    namespace: &str,
    name: &str,
    now: OffsetDateTime,
    key_type: KeyType,
    custody: Option<&Custody>,
) -> anyhow::Result<bool> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let key = match key_type {
        KeyType::X25519 => Key::generate(),
        KeyType::Pq => Key::generate_pq(),
    };
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let mut secret = new_key_secret(&key, name, namespace, now, custody).await?;
    let created = create_wiped(&api, &params, &mut secret, name).await;
    let mut made = name.to_owned();
    match created {
        Ok(()) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get_opt(name).await?;
            if existing.is_some_and(|s| parse_key_secret(&s, None).is_some()) {
                return Ok(false);
            }
            tracing::warn!(
                secret = name,
                "a Secret that is not a kseal key holds the key's name; creating the key under a name of its own"
            );
            made = format!("{name}-{}", random_suffix());
            let mut secret = new_key_secret(&key, &made, namespace, now, custody).await?;
            create_wiped(&api, &params, &mut secret, &made).await?;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(secret = made, fingerprint = %key.fingerprint(), wrapped = custody.is_some(), "created a new sealing key");
    Ok(true)
}

/// Eight hex digits from the system's random source (a name is bound into a wrapped key,
/// so it is chosen before the Secret is created, not generated by the API).
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `secret` and wipes the key material of both the request and the answer.
async fn create_wiped(
    api: &Api<Secret>,
    params: &PostParams,
    secret: &mut Secret,
    name: &str,
) -> Result<(), kube::Error> {
    let result = api.create(params, secret).await;
    wipe_data(secret);
    match result {
        Ok(mut answer) => {
            wipe_data(&mut answer);
            Ok(())
        }
        Err(e) => {
            tracing::debug!(secret = name, "key Secret not created");
            Err(e)
        }
    }
}

/// Ensures a usable key no older than `period` exists. Returns whether one was created.
/// A key under custody that could not be unwrapped counts as existing: a custodian that
/// is down or refusing is no reason to rotate.
pub async fn ensure_fresh_key(
    client: &Client,
    namespace: &str,
    store: &KeyStore,
    period: Duration,
    key_type: KeyType,
    custody: Option<&Custody>,
) -> anyhow::Result<bool> {
    let now = OffsetDateTime::now_utc();
    // A newest key of the other kind is due at once: that is how a cluster moves to
    // post-quantum keys (or back).
    let wanted = |created: OffsetDateTime, pq: bool| {
        now - created < period && pq == (key_type == KeyType::Pq)
    };
    let fresh = store
        .newest()
        .is_some_and(|k| wanted(k.created, k.key.is_pq()))
        || store
            .unavailable()
            .iter()
            .any(|k| wanted(k.created, k.recipient.starts_with("age1pq1")));
    if fresh {
        return Ok(false);
    }
    // Replicas that find the newest key too old within the same day (or the same period,
    // when it is shorter) agree on the name, so one key is made; the name is the day it
    // was made, not the start of a 30-day slot that looks weeks old.
    let slot = period.min(Duration::from_secs(86_400));
    create_key(
        client,
        namespace,
        &key_name(now, slot, key_type),
        now,
        key_type,
        custody,
    )
    .await
}
