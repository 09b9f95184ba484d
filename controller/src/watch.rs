//! The watch plumbing of the leader's Controllers: which APIs they watch, and one
//! Controller unsealing the objects of one API into the Secrets it owns.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use crate::reconcile::Context;
use crate::refused;

/// One pair of APIs per namespace in `namespaces`, or one pair for all namespaces when it
/// is empty.
pub(crate) fn api_pairs<A, B>(client: &Client, namespaces: &[String]) -> Vec<(Api<A>, Api<B>)>
where
    A: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    A::DynamicType: Default,
    B: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    B::DynamicType: Default,
{
    if namespaces.is_empty() {
        return vec![(Api::all(client.clone()), Api::all(client.clone()))];
    }
    namespaces
        .iter()
        .map(|ns| {
            (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            )
        })
        .collect()
}

/// How a Controller watches the Secrets it owns: their API, the label filter, and the
/// number of its view in `Context::owned` to record them in (kseal's own SealedSecrets),
/// if any.
type OwnedWatch = (
    Api<PartialObjectMeta<Secret>>,
    watcher::Config,
    Option<usize>,
);

/// A Controller unsealing the objects of `sealed` (kseal's SealedSecrets, or Bitnami's
/// in drop-in mode) into the Secrets it owns, reconciling everything again on `trigger`.
///
/// `compact` shrinks each object before it is cached (at least: managedFields dropped),
/// so memory grows with what the reconciler reads. Owned Secrets are watched
/// metadata-only and label-filtered (`owned`), so memory does not grow with other
/// Secrets; with a view number, each is recorded there as an [`owned::Owned`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn unsealing_controller<K, Fut>(
    kind: refused::Kind,
    sealed: Api<K>,
    compact: impl Fn(&mut K) + Send + Sync + 'static,
    (secrets, owned, view): OwnedWatch,
    trigger: impl futures::Stream<Item = ()> + Send + Sync + 'static,
    concurrency: u16,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    error_policy: impl Fn(
        Arc<K>,
        &crate::failure::Error,
        Arc<Context>,
    ) -> kube::runtime::controller::Action,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()>
where
    K: kube::Resource<DynamicType = ()>
        + crate::census::Counted
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action, Error = crate::failure::Error>
        + Send
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    ctx.census.watch(reader.clone());
    let refused = ctx.refused.clone();
    let sealed_stream = watcher(sealed, watcher::Config::default())
        .default_backoff()
        .modify(compact)
        .reflect(writer)
        .inspect_ok(move |event| {
            // A deleted SealedSecret's refused Secret is of no more interest.
            if let watcher::Event::Delete(ss) = event {
                refused.forget(kind, &ss.namespace().unwrap_or_default(), &ss.name_any());
            }
        })
        .applied_objects();
    let owned_events = watcher(secrets, owned).default_backoff();
    let owned_stream = match view {
        Some(view) => {
            let ctx = ctx.clone();
            owned_events
                .inspect_ok(move |event| {
                    ctx.owned.record(view, event);
                    // Deleted: whatever kseal wrote last is gone, so a reconcile of its
                    // owner stops waiting for that write to show and writes it again.
                    // (Any other change still waits: until the status echoes too, it
                    // cannot tell an edit from its own write on its way.)
                    if let watcher::Event::Delete(s) = event {
                        for owner in s.metadata.owner_references.iter().flatten() {
                            ctx.settled(&owner.uid);
                        }
                    }
                })
                .touched_objects()
                .boxed()
        }
        None => owned_events.touched_objects().boxed(),
    };
    Controller::for_stream(sealed_stream, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_stream(owned_stream)
        .reconcile_on(ctx.refused.changes(kind))
        .reconcile_all_on(trigger)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
}
