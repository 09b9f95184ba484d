//! The verify and reseal services. Both read one SealedSecret (JSON or YAML) and never
//! return plaintext:
//! - verify: can this cluster unseal it where it claims to be? Decrypt-only: every item is
//!   opened and its binding checked; nothing is rendered or written.
//! - reseal: move every item to the newest key, each keeping the binding of its own
//!   authenticated envelope (never the template or annotations, so a reseal cannot widen
//!   a scope) and every recipient the cluster does not hold (escrow, other clusters).
//!
//! Both are rate limited per client address, charged by the items asked about (a
//! request's work grows with them: [`Limiter`]), and the decryptions run in the requests'
//! share of the bounded [`Crypto`] pool: when it is full the answer is 503 at once, never
//! a queue. Bodies are JSON or YAML without anchors or aliases, so what is parsed is never
//! larger than the body (2 MiB at most), and hold at most
//! [`MAX_ITEMS`](kseal_core::limits::MAX_ITEMS) items. The same answers are given to
//! `SealedSecretRequest` objects ([`crate::requests`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use kseal_core::limits::LimitError;
use kseal_core::manifest::{Aliases, parse_documents_with, sealed_from_value};
use kseal_core::reason::Reason;
use kseal_core::resource::{RequestOperation, SealedSecret};
use kseal_core::sealing::{reseal, unseal};
use serde_json::json;

use crate::crypto::Crypto;
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

#[derive(Clone)]
pub struct ServiceState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<Limiter<IpAddr>>,
    pub crypto: Arc<Crypto>,
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn read(
    state: &ServiceState,
    peer: SocketAddr,
    body: &[u8],
) -> Result<SealedSecret, Box<Response>> {
    let limited = || {
        let mut r = reply(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "rate limited; retry later"}),
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        Box::new(r)
    };
    // One token before parsing (parsing is bounded by the body's size), the rest by the
    // items once they are counted.
    if !state.limiter.charge(&peer.ip(), 1) {
        return Err(limited());
    }
    let bad = |m: String| Box::new(reply(StatusCode::BAD_REQUEST, json!({"error": m})));
    let (_, docs) = parse_documents_with(body, Aliases::Refuse).map_err(|e| bad(e.to_string()))?;
    if docs.len() != 1 {
        return Err(bad(format!(
            "expected one SealedSecret, got {} documents",
            docs.len()
        )));
    }
    let sealed = sealed_from_value(&docs[0]).map_err(|e| bad(e.to_string()))?;
    let items = sealed.spec.encrypted_data.len();
    if let Err(e) = kseal_core::limits::check_items(items) {
        return Err(Box::new(respond(too_much(e))));
    }
    let more = items.saturating_sub(ITEMS_PER_TOKEN);
    if more > 0 && !state.limiter.charge(&peer.ip(), more) {
        return Err(limited());
    }
    Ok(sealed)
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

fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Verified(items) => reply(StatusCode::OK, json!({"verified": true, "items": items})),
        Answer::Resealed(out) => reply(
            StatusCode::OK,
            serde_json::to_value(&out).unwrap_or_default(),
        ),
        Answer::Refused { reason, message } => reply(
            StatusCode::CONFLICT,
            json!({"reason": reason, "message": message}),
        ),
        Answer::Unavailable(e) => reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e})),
    }
}

/// Answers on a blocking thread if a decryption slot is free, else 503 at once.
async fn answer_now(
    state: ServiceState,
    operation: RequestOperation,
    sealed: SealedSecret,
) -> Response {
    let keys = state.keys.clone();
    match state
        .crypto
        .try_run_request(move || answer(&keys, operation, &sealed))
        .await
    {
        Ok(a) => respond(a),
        Err(busy) => {
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": busy.to_string()}),
            );
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            r
        }
    }
}

pub async fn verify(
    State(state): State<ServiceState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    match read(&state, peer, &body) {
        Ok(sealed) => answer_now(state, RequestOperation::Verify, sealed).await,
        Err(r) => *r,
    }
}

pub async fn reseal_handler(
    State(state): State<ServiceState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    match read(&state, peer, &body) {
        Ok(sealed) => answer_now(state, RequestOperation::Reseal, sealed).await,
        Err(r) => *r,
    }
}
