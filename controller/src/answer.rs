//! What the controller answers about one SealedSecret, asked over HTTP
//! ([`crate::services`]) or in a `SealedSecretRequest` ([`crate::requests`]): the one
//! place where verify, reseal and migrate are decided, and the rate limit both charge.
//! Nothing answered ever holds plaintext:
//! - verify: can this cluster unseal it where it claims to be? Decrypt-only: every item is
//!   opened and its binding checked; nothing is rendered or written.
//! - reseal: move every item to the newest key, each keeping the binding of its own
//!   authenticated envelope (never the template or annotations, so a reseal cannot widen
//!   a scope) and every recipient the cluster does not hold (escrow, other clusters).
//! - migrate: open a Bitnami SealedSecret's values with the imported Bitnami keys and
//!   seal them to the newest key.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use kseal_core::limits::LimitError;
use kseal_core::reason::Reason;
use kseal_core::resource::{RequestOperation, SealedSecret};
use kseal_core::sealing::{reseal, unseal};

use crate::keys::KeyStore;

/// Items one token of the rate limit pays for: a request about up to this many items
/// costs what any request cost before items were counted; one about
/// [`MAX_ITEMS`](kseal_core::limits::MAX_ITEMS) costs eight times that.
pub const ITEMS_PER_TOKEN: usize = 32;

/// A rate limit per client (an address here, a namespace for `SealedSecretRequest`s),
/// charged by the work asked for: `per_second` tokens a second, bursting to `burst`, and
/// a request about n items costs ⌈n / [`ITEMS_PER_TOKEN`]⌉ tokens (at most `burst`, so
/// the largest request still passes a full bucket).
pub struct Limiter<K: Clone + Eq + std::hash::Hash> {
    tokens: DefaultKeyedRateLimiter<K>,
    burst: NonZeroU32,
}

impl<K: Clone + Eq + std::hash::Hash> Limiter<K> {
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        let per_second = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(Limiter {
            tokens: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
            burst,
        })
    }

    /// The tokens a request about `items` items costs.
    pub fn cost(&self, items: usize) -> NonZeroU32 {
        let tokens = u32::try_from(items.div_ceil(ITEMS_PER_TOKEN)).unwrap_or(u32::MAX);
        NonZeroU32::new(tokens)
            .unwrap_or(NonZeroU32::MIN)
            .min(self.burst)
    }

    /// Charges `key` for a request about `items` items: false when over its limit.
    pub fn charge(&self, key: &K, items: usize) -> bool {
        matches!(self.tokens.check_key_n(key, self.cost(items)), Ok(Ok(())))
    }

    /// Forgets clients whose buckets are full again.
    pub fn retain_recent(&self) {
        self.tokens.retain_recent();
    }
}

/// The answer to an object over [`kseal_core::limits`]' bounds.
pub fn too_much(e: LimitError) -> Answer {
    Answer::Refused {
        reason: Reason::TooMuchWork,
        message: e.to_string(),
    }
}

/// What the controller answers about one SealedSecret, over HTTP or in a
/// `SealedSecretRequest`'s status.
pub enum Answer {
    /// Verify: every item opens where the object is; this many items.
    Verified(usize),
    /// Reseal: the object with every item re-encrypted to the newest key.
    Resealed(Box<SealedSecret>),
    /// An item cannot be opened: the reason (as in a Ready condition) and a message.
    Refused { reason: Reason, message: String },
    /// No key is loaded yet.
    Unavailable(String),
}

pub fn answer(keys: &KeyStore, operation: RequestOperation, sealed: &SealedSecret) -> Answer {
    let refused = |e: kseal_core::sealing::UnsealError| Answer::Refused {
        reason: e.reason(),
        message: e.message(),
    };
    match operation {
        RequestOperation::Verify => match unseal(sealed, &keys.keyring()) {
            Ok(items) => Answer::Verified(items.len()),
            Err(e) => refused(e),
        },
        RequestOperation::Reseal => {
            let Some(newest) = keys.newest() else {
                return Answer::Unavailable("no sealing keys loaded yet".into());
            };
            match reseal(sealed, &keys.keyring(), &newest.key) {
                Ok((out, _)) => Answer::Resealed(Box::new(out)),
                Err(e) => refused(e),
            }
        }
        RequestOperation::Migrate => migrate(keys, sealed),
    }
}

/// A Bitnami SealedSecret's values (in `sealed`'s items, for its scope, namespace and
/// name) opened with the imported Bitnami keys and sealed to the newest kseal key.
fn migrate(keys: &KeyStore, sealed: &SealedSecret) -> Answer {
    use kseal_core::bitnami::{label, open_items};
    let bitnami = keys.bitnami();
    if bitnami.is_empty() {
        return Answer::Refused {
            reason: Reason::NoMatchingKey,
            message: "this controller imported no Bitnami keys (--bitnami-keys-namespace)".into(),
        };
    }
    let Some(newest) = keys.newest() else {
        return Answer::Unavailable("no sealing keys loaded yet".into());
    };
    let scope = sealed.spec.scope;
    let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let label = label(scope, &namespace, &name);
    let mut items = match open_items(&bitnami, &label, &sealed.spec.encrypted_data) {
        Ok(items) => items,
        Err(e) => {
            return Answer::Refused {
                reason: e.reason(),
                message: e.to_string(),
            };
        }
    };
    let Ok(recipients) =
        kseal_core::recipients::RecipientSet::new([newest.key.recipient().clone()])
    else {
        return Answer::Unavailable("the newest key has no recipient".into());
    };
    let mut out = sealed.clone();
    out.spec.encrypted_data.clear();
    out.spec.recipients = recipients.fingerprints();
    out.spec.format_version = kseal_core::envelope::VERSION;
    let result = kseal_core::sealing::seal_items(
        &mut out,
        items.iter().map(|(k, v)| (k.as_str(), &v[..])),
        &recipients,
    );
    items.clear();
    match result {
        Ok(()) => Answer::Resealed(Box::new(out)),
        Err(e) => Answer::Refused {
            reason: Reason::InvalidSealedSecret,
            message: e.to_string(),
        },
    }
}
