//! The key watches: kseal's key Secrets (unwrapping those under custody) and, in drop-in
//! mode, Bitnami's; each rebuilds the [`KeyStore`] whenever its view changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::keys::Key;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use time::OffsetDateTime;

use super::store::{
    ACTIVE, Held, KEY_LABEL, KeyStore, LoadedKey, Stored, Unavailable, WrappedKey,
    parse_key_secret, wipe_data,
};
use crate::custody::Custody;
use crate::metrics::{Metrics, StorageLabel};

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
        metrics.key_created.clear();
        let mut plaintext = 0;
        for k in keys.snapshot() {
            plaintext += i64::from(k.held == Held::Plaintext);
            let label = crate::metrics::KeyLabel {
                fingerprint: k.key.fingerprint().to_string(),
            };
            metrics
                .key_age_seconds
                .get_or_create(&label)
                .set((now - k.created).whole_seconds());
            metrics
                .key_created
                .get_or_create(&label)
                .set(k.created.unix_timestamp());
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
