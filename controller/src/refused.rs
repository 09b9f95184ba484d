//! The Secrets a SealedSecret was refused on (`SecretNotOwned`: the Secret exists and is
//! not its to write), each watched on its own until its SealedSecret takes it or goes.
//!
//! The controller's Secret watch sees only the Secrets kseal wrote (by its label), so
//! without this a refused Secret's fate would go unseen until the backoff ran out. In a
//! GitOps migration from Bitnami sealed-secrets, Flux and Argo CD apply the kseal
//! SealedSecret and then prune the Bitnami one: garbage collection deletes the Secret
//! right after kseal was refused on it, and nothing would write it again for a minute or
//! more. Here a watch of that one Secret (a field selector on its name) reconciles the
//! SealedSecret at once when the Secret is deleted or replaced, or when its owners or the
//! annotations kseal reads change (a take-over annotation arrives, the old owner lets go).
//!
//! At most [`MAX_WATCHED`] Secrets are watched at a time; past that, a refusal waits out
//! its backoff as before. A watch ends when its SealedSecret unseals, is deleted, or when
//! the Secret it watched is deleted (the reconcile that follows watches again if it is
//! refused again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::broadcast;

use crate::owned::Owned;

/// How many refused Secrets are watched at once.
pub const MAX_WATCHED: usize = 64;

/// Which controller was refused: kseal's own SealedSecrets, or Bitnami's (drop-in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Kseal,
    Bitnami,
}

/// A refused SealedSecret, by kind, namespace and name (its Secret's name too).
type Key = (Kind, String, String);

pub struct Refused {
    client: Client,
    watched: Mutex<HashMap<Key, tokio::task::AbortHandle>>,
    changed: broadcast::Sender<Key>,
}

impl Refused {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Refused {
            client,
            watched: Mutex::default(),
            changed: broadcast::channel(MAX_WATCHED).0,
        })
    }

    /// Watches the Secret `namespace/name` that a SealedSecret of `kind` was refused on,
    /// as `seen` when it was refused (nothing when already watched, or when
    /// [`MAX_WATCHED`] are).
    pub fn watch(self: &Arc<Self>, kind: Kind, namespace: &str, name: &str, seen: Owned) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let mut watched = self.lock();
        if watched.contains_key(&key) || watched.len() >= MAX_WATCHED {
            return;
        }
        let task = tokio::spawn(Arc::clone(self).follow(key.clone(), seen));
        watched.insert(key, task.abort_handle());
    }

    /// Stops watching for the SealedSecret `namespace/name` of `kind` (it unsealed, or it
    /// is gone).
    pub fn forget(&self, kind: Kind, namespace: &str, name: &str) {
        let mut watched = self.lock();
        if watched.is_empty() {
            return;
        }
        if let Some(task) = watched.remove(&(kind, namespace.to_owned(), name.to_owned())) {
            task.abort();
        }
    }

    /// The SealedSecrets of `kind` to reconcile because their refused Secret changed.
    /// (A receiver that falls more than [`MAX_WATCHED`] behind loses the oldest: those
    /// wait out their backoff.)
    pub fn changes<K>(&self, kind: Kind) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        tokio_stream::wrappers::BroadcastStream::new(self.changed.subscribe()).filter_map(
            move |changed| {
                futures::future::ready(match changed {
                    Ok((k, namespace, name)) if k == kind => {
                        Some(ObjectRef::new(&name).within(&namespace))
                    }
                    _ => None,
                })
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, tokio::task::AbortHandle>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches one Secret from `seen` on, announcing every change of what ownership is
    /// decided from; ends after it is deleted.
    async fn follow(self: Arc<Self>, key: Key, seen: Owned) {
        let (_, namespace, name) = &key;
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(api, config).default_backoff().boxed();
        // What the SealedSecret was refused on, then what the watch last showed (`None`:
        // no Secret).
        let mut last = Some(seen);
        // A (re)list's view, compared once it is complete: a Secret deleted between the
        // refusal and the watch's start shows only as its absence there.
        let mut listed: Option<Option<Owned>> = None;
        while let Some(event) = events.next().await {
            // Errors are retried with backoff by the watcher itself.
            let Ok(event) = event else { continue };
            let now = match event {
                watcher::Event::Init => {
                    listed = Some(None);
                    continue;
                }
                watcher::Event::InitApply(s) => {
                    listed = Some(Some(Owned::from_meta(&s.metadata)));
                    continue;
                }
                watcher::Event::InitDone => listed.take().flatten(),
                watcher::Event::Apply(s) => Some(Owned::from_meta(&s.metadata)),
                watcher::Event::Delete(_) => None,
            };
            if now == last {
                continue;
            }
            tracing::debug!(secret = %format!("{namespace}/{name}"), gone = now.is_none(), "a refused Secret changed");
            if now.is_none() {
                // Let go first: the reconcile this announces may be refused again, and
                // then watches anew.
                self.lock().remove(&key);
                let _ = self.changed.send(key);
                return;
            }
            last = now;
            let _ = self.changed.send(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds against a flood of refusals, and each watch ends with its
    /// SealedSecret (the watches here reach no apiserver: they retry with backoff).
    #[tokio::test]
    async fn at_most_the_bound_are_watched_and_forgetting_ends_one() {
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let refused = Refused::new(Client::try_from(config).unwrap());
        for i in 0..MAX_WATCHED + 10 {
            refused.watch(Kind::Kseal, "shop", &format!("s{i}"), Owned::default());
        }
        // Again: no second watch of the same Secret.
        refused.watch(Kind::Kseal, "shop", "s0", Owned::default());
        assert_eq!(refused.lock().len(), MAX_WATCHED);
        refused.forget(Kind::Kseal, "shop", "s0");
        refused.forget(Kind::Bitnami, "shop", "s1");
        assert_eq!(refused.lock().len(), MAX_WATCHED - 1);
        refused.watch(Kind::Bitnami, "shop", "s1", Owned::default());
        assert_eq!(refused.lock().len(), MAX_WATCHED);
    }
}
