//! The cluster's keys: age identities stored as Secrets in the controller namespace.
//!
//! - A key Secret is labelled `kseal.dev/key`; value `active` means in use, any other
//!   value (say `compromised`) retires it. Added, relabelled or removed key Secrets are
//!   picked up from a watch, without a restart.
//! - The first key is named after the rotation period it belongs to, so replicas that
//!   start together create the *same* name and exactly one create succeeds.
//! - The public recipients (newest first) are published in the `kseal-recipients`
//!   ConfigMap, which every authenticated user may read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kseal_core::keys::{Key, Keyring, parse_identity_file};
use kseal_core::recipients::{PublishedRecipient, RECIPIENTS_DOCUMENT_FORMAT, RecipientsDocument};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::custody::Custody;
use crate::flags::KeyType;
use crate::metrics::{Metrics, StorageLabel};

pub use kseal_core::contract::{ACTIVE, CREATED_ANNOTATION, KEY_LABEL, KEY_TYPE};
use kseal_core::contract::{
    FINGERPRINT_ANNOTATION, MANAGED_BY, MANAGER, RECIPIENT_ANNOTATION, RECIPIENTS_CONFIGMAP,
    RECIPIENTS_KEY, WRAPPED_IDENTITY_KEY,
};
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

fn rfc3339(t: OffsetDateTime) -> String {
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

    fn set_bitnami(&self, keys: kseal_core::bitnami::BitnamiKeys) -> usize {
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

/// Watches the key Secrets of the controller namespace and rebuilds `keys` every time the
/// watch's view of them changes, until the stream ends. `loaded` counts the rebuilds: 0
/// means the existing keys are not known yet.
///
/// Each Secret is parsed as it arrives and its data is wiped: no copy of the key material
/// stays in a cache of Secrets. A key under custody is unwrapped once per version of its
/// Secret; one that cannot be unwrapped is [`Unavailable`] (and tried again, from 2 s
/// to a minute apart), except that a new version of a key already in memory (re-wrapped
/// under a new KEK) keeps the key in memory until it opens.
pub async fn watch(
    api: Api<Secret>,
    keys: Arc<KeyStore>,
    metrics: Arc<Metrics>,
    cutoff: Option<OffsetDateTime>,
    custody: Option<Arc<Custody>>,
    loaded: tokio::sync::watch::Sender<u64>,
) {
    let namespace = api.namespace().unwrap_or_default().to_owned();
    let rebuild = KeyRebuild {
        keys,
        metrics,
        custody,
        namespace,
        loaded: HashMap::new(),
    };
    watch_secrets(
        api,
        KEY_LABEL,
        |secret| parse_key_secret(secret, cutoff),
        rebuild,
        loaded,
    )
    .await;
}

/// What a key watch does with its view of the key Secrets whenever it changes. Answers
/// whether to be called again soon (some could not be used yet).
trait Rebuild<T> {
    fn rebuild(&mut self, current: &BTreeMap<String, T>) -> impl Future<Output = bool> + Send;
}

/// kseal's keys: unwrapped as needed ([`resolve`]), then the store and metrics rebuilt.
struct KeyRebuild {
    keys: Arc<KeyStore>,
    metrics: Arc<Metrics>,
    custody: Option<Arc<Custody>>,
    namespace: String,
    /// The keys last loaded, by Secret name (a wrapped one at the version it was read at).
    loaded: HashMap<String, LoadedKey>,
}

impl Rebuild<Stored> for KeyRebuild {
    async fn rebuild(&mut self, current: &BTreeMap<String, Stored>) -> bool {
        let (found, unavailable) = resolve(
            current,
            &mut self.loaded,
            self.custody.as_deref(),
            &self.namespace,
        )
        .await;
        let (keys, metrics) = (&self.keys, &self.metrics);
        let retry = !unavailable.is_empty();
        metrics.keys_unavailable.set(unavailable.len() as i64);
        let n = keys.set_with_unavailable(found, unavailable);
        metrics.keys.set(n as i64);
        let now = OffsetDateTime::now_utc();
        metrics.key_age_seconds.clear();
        let mut plaintext = 0;
        for k in keys.snapshot() {
            plaintext += i64::from(k.held == Held::Plaintext);
            metrics
                .key_age_seconds
                .get_or_create(&crate::metrics::KeyLabel {
                    fingerprint: k.key.fingerprint().to_string(),
                })
                .set((now - k.created).whole_seconds());
        }
        let stored = |storage| StorageLabel { storage };
        metrics
            .keys_stored
            .get_or_create(&stored("plaintext"))
            .set(plaintext);
        metrics
            .keys_stored
            .get_or_create(&stored("wrapped"))
            .set(n as i64 - plaintext);
        retry
    }
}

/// The Bitnami keys imported, rebuilt from their PEM.
struct BitnamiRebuild {
    keys: Arc<KeyStore>,
}

impl Rebuild<zeroize::Zeroizing<Vec<u8>>> for BitnamiRebuild {
    async fn rebuild(&mut self, current: &BTreeMap<String, zeroize::Zeroizing<Vec<u8>>>) -> bool {
        let mut imported = kseal_core::bitnami::BitnamiKeys::default();
        for (name, pem) in current {
            if let Err(e) = imported.add(pem) {
                tracing::warn!(secret = %name, error = %e, "not a usable Bitnami key");
            }
        }
        let n = self.keys.set_bitnami(imported);
        tracing::info!(keys = n, "Bitnami keys imported");
        false
    }
}

/// The usable keys among `current`, unwrapping those under custody that `loaded` (the
/// keys last loaded, by Secret name) does not hold at their version, and the ones that
/// could not be. A key Secret that changed to a form that does not open (re-wrapped
/// under a KEK not reachable yet, or wrapped by `custody wrap` before this controller had
/// `--custody`) keeps the key last loaded from it, if it publishes the same recipient.
async fn resolve(
    current: &BTreeMap<String, Stored>,
    loaded: &mut HashMap<String, LoadedKey>,
    custody: Option<&Custody>,
    namespace: &str,
) -> (Vec<LoadedKey>, Vec<Unavailable>) {
    let mut found = Vec::new();
    let mut pending = Vec::new();
    for stored in current.values() {
        match stored {
            Stored::Plain(key) => {
                loaded.insert(key.secret_name.clone(), key.clone());
                found.push(key.clone())
            }
            Stored::Wrapped(wrapped) => match loaded.get(&wrapped.secret_name) {
                Some(key) if matches!(&key.held, Held::Wrapped { version, .. } if *version == wrapped.version) => {
                    found.push(key.clone())
                }
                _ => pending.push(wrapped),
            },
        }
    }
    let opened = futures::future::join_all(
        pending
            .iter()
            .map(|wrapped| unwrap_stored(custody, wrapped, namespace)),
    )
    .await;
    let mut unavailable = Vec::new();
    for (wrapped, result) in pending.into_iter().zip(opened) {
        match result {
            Ok((key, kek)) => {
                let key = LoadedKey {
                    key,
                    secret_name: wrapped.secret_name.clone(),
                    created: wrapped.created,
                    held: Held::Wrapped {
                        kek,
                        version: wrapped.version.clone(),
                    },
                };
                loaded.insert(wrapped.secret_name.clone(), key.clone());
                found.push(key);
            }
            Err(why) => match loaded.get(&wrapped.secret_name) {
                Some(key) if key.key.recipient().to_string() == wrapped.recipient => {
                    tracing::warn!(secret = %wrapped.secret_name, error = %why, "a new version of a key under custody does not unwrap; the key already in memory stays in use");
                    found.push(key.clone());
                }
                _ => {
                    tracing::warn!(secret = %wrapped.secret_name, error = %why, "a key under custody could not be unwrapped");
                    unavailable.push(Unavailable {
                        secret_name: wrapped.secret_name.clone(),
                        created: wrapped.created,
                        recipient: wrapped.recipient.clone(),
                        why,
                    });
                }
            },
        }
    }
    loaded.retain(|name, _| current.contains_key(name));
    (found, unavailable)
}

/// Unwraps one key Secret's identity: the key and the KEK that wrapped it, or why not.
pub async fn unwrap_stored(
    custody: Option<&Custody>,
    wrapped: &WrappedKey,
    namespace: &str,
) -> Result<(Key, String), String> {
    let document =
        kseal_custody::WrappedIdentity::from_json(&wrapped.document).map_err(|e| e.to_string())?;
    let Some(custody) = custody else {
        return Err(format!(
            "it is wrapped by custodian {}, and this controller runs with --custody none",
            document.custodian
        ));
    };
    let key = custody
        .unwrap(
            &document,
            namespace,
            &wrapped.secret_name,
            &wrapped.recipient,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((key, document.kek_id))
}

/// Watches the Bitnami sealed-secrets key Secrets in `api`'s namespace (opt-in:
/// `--bitnami-keys-namespace`) and rebuilds the imported Bitnami keys whenever they
/// change, as [`watch`] does for kseal's own. A key is a `kubernetes.io/tls` Secret
/// labelled `sealedsecrets.bitnami.com/sealed-secrets-key=active` and owned by nothing (an
/// unsealed Secret has its SealedSecret as owner), holding a PEM RSA key in `tls.key`.
pub async fn watch_bitnami(
    api: Api<Secret>,
    keys: Arc<KeyStore>,
    loaded: tokio::sync::watch::Sender<u64>,
) {
    use kseal_core::bitnami::KEY_LABEL as BITNAMI_KEY_LABEL;
    let selector = format!("{BITNAMI_KEY_LABEL}={ACTIVE}");
    let pem = |secret: &Secret| -> Option<zeroize::Zeroizing<Vec<u8>>> {
        if secret.type_.as_deref() != Some("kubernetes.io/tls")
            || !secret.owner_references().is_empty()
        {
            return None;
        }
        Some(zeroize::Zeroizing::new(
            secret.data.as_ref()?.get("tls.key")?.0.clone(),
        ))
    };
    watch_secrets(api, &selector, pem, BitnamiRebuild { keys }, loaded).await;
}

/// The watch loop behind [`watch`] and [`watch_bitnami`]: Secrets matching `selector`
/// are each turned into a `T` by `parse` as they arrive (`None`: not a usable key) and
/// their data is wiped; `rebuild` gets the usable ones by name whenever the view changes
/// (and again, backing off from 2 s to a minute, while it answers that some could not be
/// used yet), and `loaded` counts the rebuilds.
///
/// The initial list (`Init`, `InitApply`…) is gathered apart and takes effect at
/// `InitDone`, as a reflector does; rebuilding on `InitDone` is what a restarted or
/// standby replica needs (reading a reflector's store before it, as this once did, sees
/// no keys at all).
async fn watch_secrets<T>(
    api: Api<Secret>,
    selector: &str,
    parse: impl Fn(&Secret) -> Option<T>,
    mut rebuild: impl Rebuild<T>,
    loaded: tokio::sync::watch::Sender<u64>,
) {
    const FIRST_RETRY: Duration = Duration::from_secs(2);
    let events = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
    futures::pin_mut!(events);
    let mut current: BTreeMap<String, T> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, T>> = None;
    let mut generation = 0u64;
    let mut retry: Option<Duration> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => Some(event),
                None => break,
            },
            _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => None,
        };
        match event {
            // A rebuild that asked to be tried again.
            None => {}
            Some(event) => match event {
                Ok(watcher::Event::Init) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Ok(watcher::Event::InitApply(mut secret)) => {
                    if let Some(parsed) = parse(&secret) {
                        listing
                            .get_or_insert_with(BTreeMap::new)
                            .insert(secret.name_any(), parsed);
                    }
                    wipe_data(&mut secret);
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listing.take() {
                        current = listed;
                    }
                }
                Ok(watcher::Event::Apply(mut secret)) => {
                    match parse(&secret) {
                        Some(parsed) => current.insert(secret.name_any(), parsed),
                        None => current.remove(&secret.name_any()),
                    };
                    wipe_data(&mut secret);
                }
                Ok(watcher::Event::Delete(mut secret)) => {
                    current.remove(&secret.name_any());
                    wipe_data(&mut secret);
                }
                Err(e) => {
                    tracing::warn!(error = %e, selector, "key watch");
                    continue;
                }
            },
        }
        retry = match (rebuild.rebuild(&current).await, retry) {
            (false, _) => None,
            (true, None) => Some(FIRST_RETRY),
            (true, Some(after)) => Some((after * 2).min(Duration::from_secs(60))),
        };
        generation += 1;
        let _ = loaded.send(generation);
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

/// Sets `annotations` on the recipients ConfigMap, as field manager `manager` (each
/// reporter its own, so that none removes another's): where `kseal status` reads the
/// at-rest verdict and the imported Bitnami keys.
pub async fn annotate_recipients(
    client: &Client,
    namespace: &str,
    manager: &str,
    annotations: &BTreeMap<&str, String>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECIPIENTS_CONFIGMAP, "annotations": annotations},
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            RECIPIENTS_CONFIGMAP,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// The leader's recipients publisher: publishes the document whenever the keys change
/// (looking again every 30 s, and retrying a publish that failed), until the key watch
/// ends.
pub async fn publish_loop(
    client: Client,
    namespace: String,
    keys: Arc<KeyStore>,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    let mut last = None;
    loop {
        let doc = keys.document();
        if !doc.recipients.is_empty() && last.as_ref() != Some(&doc) {
            match publish(&client, &namespace, &doc).await {
                Ok(()) => last = Some(doc),
                Err(e) => tracing::warn!(error = %e, "could not publish recipients"),
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Publishes the recipients document in the `kseal-recipients` ConfigMap.
pub async fn publish(
    client: &Client,
    namespace: &str,
    document: &RecipientsDocument,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::to_string_pretty(document).unwrap_or_default();
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECIPIENTS_CONFIGMAP, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "data": {RECIPIENTS_KEY: body},
    });
    api.patch(
        RECIPIENTS_CONFIGMAP,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
