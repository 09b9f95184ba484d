//! Reconciling one SealedSecret: open every item with the retained keys (checking each
//! binding against the object's real namespace and name), then server-side apply the
//! whole Secret at once. Nothing is written unless every item opened, so a Secret never
//! holds partial data, and a broken SealedSecret leaves its existing Secret untouched.
//!
//! Steady state costs nothing: a SealedSecret whose status records its generation as
//! unsealed, and whose Secret (in the watch cache) still holds every field kseal's last
//! apply set ([`crate::owned`]), is neither decrypted nor written, after a restart, a
//! failover, a key change or a resync alike. Otherwise a reconcile makes at most one
//! write for the Secret and one for the status, and reads nothing beyond the watches: the
//! apply carries the cache's view as a precondition (the cached Secret's uid, or "create
//! only" when the cache knows none), so a Secret the cache did not know makes the apply
//! fail, and only then is it read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kseal_core::policy;
use kseal_core::reason::Reason;
use kseal_core::resource::{SealedSecret, SealedSecretStatus, SecretTemplate};
use kseal_core::sealing::unseal;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

use crate::cached::Cached;
use crate::events::{self, Happened};
use crate::failure::{Error, Failures};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::owned::{self, Owned, OwnedSecrets};
use crate::refused::Kind;

use kseal_core::contract::{MANAGED_BY, MANAGER, MERGE_INTO, TAKE_OVER};
pub use kseal_core::policy::SKIP_OWNER_ANNOTATION;

pub struct Context {
    pub client: Client,
    pub keys: Arc<KeyStore>,
    pub metrics: Arc<Metrics>,
    /// Where decryption runs.
    pub crypto: Arc<crate::crypto::Crypto>,
    /// This replica's name, reported in Events.
    pub identity: String,
    /// Consecutive failures per object, for backoff.
    pub failures: Failures,
    pub at_rest_policy: crate::flags::AtRestPolicy,
    /// The latest encryption-at-rest verdict (`None` before the first check, or when
    /// checks are off).
    pub at_rest: tokio::sync::watch::Receiver<Option<kseal_atrest::verdict::Verdict>>,
    /// The controller's own namespace (its keys): never unsealed into.
    pub namespace: String,
    /// Where unsealing may write: not the controller's namespace, the Bitnami keys', the
    /// denied ones, nor kube-system unless allowed.
    pub namespaces: policy::Namespaces,
    /// Label and annotation prefixes the operator allows in templates
    /// (`--allow-template-metadata`).
    pub allow_template_metadata: Vec<String>,
    /// The Secrets kseal wrote, as its watch caches them.
    pub owned: OwnedSecrets,
    /// What the leader counts of the watched SealedSecrets, for the metrics.
    pub census: Arc<crate::census::Census>,
    /// SealedSecrets written in the last moments: their own watch events may not have
    /// reached the caches yet.
    pub recent: Mutex<Recent>,
    /// The Secrets SealedSecrets were refused on, watched for a change.
    pub refused: Arc<crate::refused::Refused>,
}

/// A SealedSecret being deleted is left to garbage collection, which deletes its Secret
/// with it or, when the deletion orphans dependents (`--cascade=orphan`, a GitOps prune
/// that keeps them), takes the owner reference off the Secret. Writing the Secret then
/// would put that owner reference back, and once the owner is gone garbage collection
/// would delete the Secret the deletion meant to keep (seen in the drop-in test).
pub fn being_deleted(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// How often everything is reconciled again, with nothing changed: one timer for all
/// objects, not one per object.
pub const RESYNC: Duration = Duration::from_secs(3600);

/// How long after a write the caches are given to show it: until then a reconcile that
/// does not find it there looks again shortly instead of decrypting and writing again.
const SETTLE: Duration = Duration::from_secs(30);

/// The resourceVersion sent as the apply's precondition when the cache knows no Secret:
/// "create only". etcd numbers revisions from 1 and its first write already makes 2, so
/// no stored object has resourceVersion 1: an existing Secret makes the apply conflict
/// (kube-apiserver checks a resourceVersion in an update), while an absent one is
/// created (a create ignores it). A uid cannot serve: kube-apiserver refuses a create
/// that names one.
const ABSENT_RESOURCE_VERSION: &str = "1";

/// SealedSecrets (by uid) written in the last [`SETTLE`]. An entry leaves when the
/// caches show the write, or at the next sweep after it expires (its object deleted
/// meanwhile, say).
#[derive(Default)]
pub struct Recent {
    written: HashMap<String, Written>,
    swept: Option<Instant>,
}

/// One SealedSecret's Secret write.
struct Written {
    generation: Option<i64>,
    at: Instant,
    /// Whether the status of that write was recorded too.
    status: bool,
}

impl Context {
    /// Whether `uid`'s Secret was written at `generation` a moment ago: `None` if not,
    /// else whether its status was recorded too.
    fn just_written(&self, uid: &str, generation: Option<i64>) -> Option<bool> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match recent.written.get(uid) {
            Some(w) if w.generation == generation && w.at.elapsed() < SETTLE => Some(w.status),
            Some(_) => {
                recent.written.remove(uid);
                None
            }
            None => None,
        }
    }

    fn wrote(&self, uid: String, generation: Option<i64>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if recent
            .swept
            .is_none_or(|at| now.duration_since(at) >= SETTLE)
        {
            recent.written.retain(|_, w| w.at.elapsed() < SETTLE);
            recent.swept = Some(now);
        }
        recent.written.insert(
            uid,
            Written {
                generation,
                at: now,
                status: false,
            },
        );
    }

    /// The status of `uid`'s last write is recorded: what is left is for the caches to
    /// show it.
    fn status_recorded(&self, uid: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = recent.written.get_mut(uid) {
            w.status = true;
        }
    }

    /// The caches show `uid`'s Secret as it is now: no write of it is on its way.
    pub(crate) fn settled(&self, uid: &str) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written
            .remove(uid);
    }
}

/// What a successful reconcile did.
pub(crate) enum Outcome {
    /// Unsealed and written.
    Written,
    /// Nothing to do: the Secret and the status are as this reconcile would make them.
    UpToDate,
    /// Written a moment ago, and the caches do not show it yet: looked at again shortly.
    Settling,
    /// Written a moment ago, and the status write that followed failed: the status is
    /// what is left to write (not a second unseal once the settle time is over).
    StatusLeft,
}

fn key_of(ss: &Cached) -> String {
    format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any())
}

pub async fn reconcile(ss: Arc<Cached>, ctx: Arc<Context>) -> Result<Action, Error> {
    if being_deleted(&ss.metadata) {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = apply(&ss, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    let forget_failures = || {
        ctx.failures.forget(&key_of(&ss));
        ctx.refused.forget(
            Kind::Kseal,
            &ss.namespace().unwrap_or_default(),
            &ss.name_any(),
        );
    };
    match result {
        Ok(Outcome::Settling) => Ok(Action::requeue(Duration::from_secs(1))),
        Ok(Outcome::UpToDate) => {
            ctx.metrics.up_to_date.inc();
            forget_failures();
            // The hourly resync reconciles everything at once (`RESYNC`): no timer per
            // object.
            Ok(Action::await_change())
        }
        Ok(outcome @ (Outcome::Written | Outcome::StatusLeft)) => {
            if matches!(outcome, Outcome::Written) {
                ctx.metrics.unseals.inc();
                // The Secret is written: whatever failed before it is over.
                forget_failures();
            }
            let changed = set_status(
                &ss,
                &ctx,
                "True",
                Reason::Unsealed,
                "all items unsealed into the Secret",
            )
            .await?;
            // A status write refused again and again backs off like any failure, rather
            // than being tried every second.
            forget_failures();
            ctx.status_recorded(&ss.uid().unwrap_or_default());
            if changed {
                publish_event(
                    &ss,
                    &ctx,
                    false,
                    "Unsealed",
                    format!("unsealed {} items", ss.item_count()),
                )
                .await;
            }
            // The hourly resync reconciles everything at once (`RESYNC`): no timer per
            // object.
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.metrics.failure(e.reason());
            if let Error::SecretNotOwned(name, found) = &e {
                let namespace = ss.namespace().unwrap_or_default();
                ctx.refused
                    .watch(Kind::Kseal, &namespace, name, (**found).clone());
            }
            if e.permanent() {
                tracing::warn!(sealedsecret = %key_of(&ss), reason = %e.reason(), error = %e, "cannot unseal");
                let changed = set_status(&ss, &ctx, "False", e.reason(), &e.to_string()).await?;
                if changed {
                    publish_event(&ss, &ctx, true, "UnsealFailed", e.to_string()).await;
                }
            }
            Err(e)
        }
    }
}

/// Retries with [`crate::failure::Failures::backoff`]; one object's failures never delay another's.
pub fn error_policy(ss: Arc<Cached>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.failures.backoff(key_of(&ss), error.permanent());
    if !error.permanent() {
        tracing::debug!(sealedsecret = %key_of(&ss), error = %error, retry_in_s = delay.as_secs(), "transient failure");
    }
    Action::requeue(delay)
}

async fn apply(ss: &Cached, ctx: &Context) -> Result<Outcome, Error> {
    if crate::atrest::blocks(ctx.at_rest_policy, ctx.at_rest.borrow().as_ref()) {
        // Existing Secrets are left alone: only new plaintext is refused.
        return Err(Error::EncryptionAtRestNotConfigured);
    }
    let namespace = ss.namespace().ok_or(Error::NoNamespace)?;
    ctx.namespaces.check(&namespace)?;
    policy::check_template(ss.template(), &ctx.allow_template_metadata)?;
    let keyring = ctx.keys.keyring();
    if keyring.is_empty() {
        return Err(match ctx.keys.unavailable_reason() {
            Some(why) => Error::KeyUnavailable(why),
            None => Error::NoKeys,
        });
    }
    // Before its first complete list, the cache's silence about a Secret means nothing.
    ctx.owned.ready().await;
    let uid = ss.uid().unwrap_or_default();
    let name = ss.name_any();
    let template = ss.template().cloned().unwrap_or_default();
    let cached = ctx.owned.get(&namespace, &name);
    let ours = |found: &Owned| ownership_of(&name, found, &uid, TAKE_OVER, MERGE_INTO);
    let patch_mode = match &cached {
        Some(found) => ours(found)?,
        None => false,
    };
    if let Some(secret) = &cached
        && ss.unsealed()
        && hint_held(ss, &keyring)
    {
        // The Secret this reconcile would write, less its values: kseal's apply entry
        // must still hold its every field.
        let shape: BTreeMap<String, zeroize::Zeroizing<Vec<u8>>> = ss
            .keys()
            .map(|k| (k.to_owned(), Default::default()))
            .collect();
        let desired = desired_secret(
            &name,
            &namespace,
            &template,
            &shape,
            patch_mode,
            owner_of(ss),
        );
        if secret.holds(&owned::desired_fields(&desired)) {
            tracing::debug!(sealedsecret = %key_of(ss), "up to date");
            ctx.settled(&uid);
            return Ok(Outcome::UpToDate);
        }
    }
    match ctx.just_written(&uid, ss.metadata.generation) {
        // The watch events of that write are on their way.
        Some(true) => return Ok(Outcome::Settling),
        Some(false) => return Ok(Outcome::StatusLeft),
        None => {}
    }
    tracing::debug!(sealedsecret = %key_of(ss), cached = cached.is_some(), unsealed = ss.unsealed(), "not up to date: unsealing");
    // Work to do. The cache drops an unsealed object's ciphertexts: read them back.
    let full = match ss.whole() {
        Some(whole) => whole,
        None => {
            let api: Api<SealedSecret> = Api::namespaced(ctx.client.clone(), &namespace);
            let full = api.get(&name).await?;
            if full.uid() != ss.uid() {
                // Replaced meanwhile: the new one's own watch event reconciles it.
                return Err(Error::SecretChanged(name));
            }
            full
        }
    };
    let opened = full.spec.encrypted_data.len() as u64;
    let items = ctx
        .crypto
        .run(move || unseal(&full, &keyring))
        .await
        .map_err(|e| match ctx.keys.unavailable_reason() {
            Some(why) if e.reason() == Reason::NoMatchingKey => Error::KeyUnavailable(why),
            _ => Error::Unseal(e),
        })?;
    ctx.metrics.items_opened.inc_by(opened);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let write = |patch_mode, uid: Option<String>| {
        let mut secret = desired_secret(
            &name,
            &namespace,
            &template,
            &items,
            patch_mode,
            owner_of(ss),
        );
        match uid {
            Some(uid) => secret.metadata.uid = Some(uid),
            None => secret.metadata.resource_version = Some(ABSENT_RESOURCE_VERSION.into()),
        }
        write_secret(&secrets, &name, secret, &ctx.metrics)
    };
    match write(patch_mode, cached.map(|found| found.uid)).await {
        Err(Error::SecretChanged(_)) => {
            // A Secret the cache did not know (one kseal did not write, or one its watch
            // has not delivered yet), or one replaced since: decided from the API's view.
            let (patch_mode, existing) =
                ownership(&secrets, &name, &uid, TAKE_OVER, MERGE_INTO).await?;
            write(patch_mode, existing.map(|found| found.uid)).await?;
        }
        other => other?,
    }
    // At once, before the status: a watch event of this Secret from now on (its deletion,
    // say) shows at least this write, and ends the wait for it ([`Context::settled`]).
    ctx.wrote(uid, ss.metadata.generation);
    Ok(Outcome::Written)
}

/// The owner reference the Secret gets, unless the template asks for none
/// (`kseal.dev/skip-owner-reference: "true"`).
fn owner_of(ss: &Cached) -> Option<OwnerReference> {
    let skip = ss
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.get(SKIP_OWNER_ANNOTATION))
        .is_some_and(|v| v == "true");
    (!skip).then(|| ss.controller_owner_ref(&())).flatten()
}

/// Whether a key the recipients hint names is still held: after a key is retired, an
/// object sealed only to it fails again, as decrypting it would. An empty hint names
/// none and is not held against the object.
fn hint_held(ss: &Cached, keyring: &kseal_core::keys::Keyring) -> bool {
    ss.recipients().is_empty() || ss.recipients().iter().any(|f| keyring.get(f).is_some())
}

/// Whether the Secret `name` may be written for the owner `uid`, and how, read from the
/// API (see [`ownership_of`]); with what the existing Secret's metadata holds, `None`
/// when there is none.
pub(crate) async fn ownership(
    secrets: &Api<Secret>,
    name: &str,
    uid: &str,
    managed: &[&str],
    patch: &[&str],
) -> Result<(bool, Option<Owned>), Error> {
    // Metadata only: ownership is decided from it, and the Secret's values never need to
    // be read.
    match secrets.get_metadata_opt(name).await? {
        Some(existing) => {
            let found = Owned::from_meta(&existing.metadata);
            let patch_mode = ownership_of(name, &found, uid, managed, patch)?;
            Ok((patch_mode, Some(found)))
        }
        None => Ok((false, None)),
    }
}

/// Removes the owner reference to `uid` from the Secret `name`. A server-side apply
/// without it does not remove one another field manager also set (the Bitnami
/// controller, which created the Secret with it); a strategic merge patch deleting the
/// list entry by its key does.
pub(crate) async fn release(secrets: &Api<Secret>, name: &str, uid: &str) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": { "ownerReferences": [{ "uid": uid, "$patch": "delete" }] }
    });
    secrets
        .patch_metadata(
            name,
            &PatchParams::apply(MANAGER),
            &Patch::Strategic(&patch),
        )
        .await?;
    Ok(())
}

/// Whether the existing Secret `name` may be written for the owner `uid`, and how:
/// `Ok(false)` to own it (owned by `uid`, annotated with one of `managed`, or written by
/// kseal for a template that asked for no owner reference), `Ok(true)` to merge into it
/// without owning it (annotated with one of `patch`).
pub(crate) fn ownership_of(
    name: &str,
    existing: &Owned,
    uid: &str,
    managed: &[&str],
    patch: &[&str],
) -> Result<bool, Error> {
    let owned = existing.owners.iter().any(|o| o == uid)
        || (existing.owners.is_empty()
            && existing.annotated(SKIP_OWNER_ANNOTATION)
            && existing.written_by_kseal());
    let managed = managed.iter().any(|k| existing.annotated(k));
    let patch_mode = patch.iter().any(|k| existing.annotated(k));
    if !owned && !managed && !patch_mode {
        return Err(Error::SecretNotOwned(
            name.to_owned(),
            Box::new(existing.clone()),
        ));
    }
    Ok(patch_mode && !owned && !managed)
}

/// Server-side applies `secret` (and wipes its values once sent). A uid or a
/// resourceVersion in `secret` is a precondition: the apply fails with
/// [`Error::SecretChanged`] when the Secret does not match it.
pub(crate) async fn write_secret(
    secrets: &Api<Secret>,
    name: &str,
    mut secret: Secret,
    metrics: &Metrics,
) -> Result<(), Error> {
    // Every write is a server-side apply by one manager, so items removed from the
    // SealedSecret leave the Secret. (Creating with POST first would record a separate
    // Update owner that keeps removed items alive.) The answer is asked for as metadata
    // only, so the written values do not come back.
    let result = secrets
        .patch_metadata(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await;
    metrics.wrote("secret");
    // Request bodies hold plaintext: wiped as soon as they are sent.
    crate::keys::wipe_data(&mut secret);
    match result {
        // A forced apply has no field conflicts: a conflict is a failed precondition (a
        // resourceVersion that differs, a uid and no object). Another uid than the
        // object's is refused as invalid, since the uid is immutable.
        Err(kube::Error::Api(status))
            if status.code == 409
                || (status.code == 422 && status.message.contains("metadata.uid")) =>
        {
            Err(Error::SecretChanged(name.to_owned()))
        }
        Err(kube::Error::Api(status)) if status.code == 422 => {
            Err(Error::SecretRejected(status.message))
        }
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// The Secret a template and its opened items describe. In patch mode (an existing
/// Secret annotated to be merged into), only items, labels and annotations, and no owner
/// reference.
pub(crate) fn desired_secret(
    name: &str,
    namespace: &str,
    template: &SecretTemplate,
    items: &BTreeMap<String, zeroize::Zeroizing<Vec<u8>>>,
    patch_mode: bool,
    owner: Option<OwnerReference>,
) -> Secret {
    let mut secret = kseal_core::sealing::secret_of(Some(name), Some(namespace), template, items);
    let mut labels = secret.metadata.labels.take().unwrap_or_default();
    if patch_mode {
        // Merged into a Secret someone else owns: only the items.
        secret.type_ = None;
    } else {
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        secret.type_.get_or_insert_with(|| "Opaque".into());
        secret.metadata.owner_references = owner.map(|o| vec![o]);
    }
    secret.metadata.labels = Some(labels);
    secret
}

/// Writes the status when it changes: `Ready` with `status`, `reason` and `message`, and
/// on a failure also `Stalled=True` with the same reason. kstatus (Flux, Argo CD) reads
/// `Stalled=True` as `Failed`, a lagging `observedGeneration` as `InProgress`, and
/// neither as `Current`. Returns whether it wrote.
async fn set_status(
    ss: &Cached,
    ctx: &Context,
    status: &str,
    reason: Reason,
    message: &str,
) -> Result<bool, Error> {
    let generation = ss.metadata.generation;
    let existing = ss
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, status: &str| {
        let transition = match existing.iter().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: transition,
        }
    };
    let mut conditions = vec![condition("Ready", status)];
    if status == "False" {
        conditions.push(condition("Stalled", "True"));
    }
    let same = ss.status.as_ref().and_then(|s| s.observed_generation) == generation
        && existing.len() == conditions.len()
        && existing.iter().zip(&conditions).all(|(a, b)| {
            (
                &a.type_,
                &a.status,
                &a.reason,
                &a.message,
                a.observed_generation,
            ) == (
                &b.type_,
                &b.status,
                &b.reason,
                &b.message,
                b.observed_generation,
            )
        });
    if same {
        return Ok(false);
    }
    let new = SealedSecretStatus {
        observed_generation: generation,
        conditions,
    };
    let api: Api<SealedSecret> =
        Api::namespaced(ctx.client.clone(), &ss.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": new});
    api.patch_status(
        &ss.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.wrote("status");
    Ok(true)
}

/// Publishes an `events.k8s.io/v1` Event about the SealedSecret without waiting for it:
/// Events are only sent on transitions, and a slow Event never slows a reconcile.
async fn publish_event(ss: &Cached, ctx: &Context, warning: bool, reason: &str, note: String) {
    let happened = Happened {
        action: "Unseal",
        reason,
        warning,
        note,
    };
    let event = events::event(ss.object_ref(&()), &ctx.identity, happened);
    ctx.metrics.wrote("event");
    tokio::spawn(events::publish(ctx.client.clone(), event));
}
