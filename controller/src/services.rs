//! The verify and reseal services. Both read one SealedSecret (JSON or YAML) and never
//! return plaintext:
//! - verify: can this cluster unseal it where it claims to be? Decrypt-only: every item is
//!   opened and its binding checked; nothing is rendered or written.
//! - reseal: move every item to the newest key, each keeping the binding of its own
//!   authenticated envelope (never the template or annotations, so a reseal cannot widen
//!   a scope) and every recipient the cluster does not hold (escrow, other clusters).
//!
//! Both are rate limited per client address, since each request costs decryptions, and
//! the decryptions run in the bounded [`Crypto`] pool: when it is full the answer is 503
//! at once, never a queue. Bodies are JSON or YAML without anchors or aliases, so what is
//! parsed is never larger than the body (2 MiB at most). The same answers are given to
//! `SealedSecretRequest` objects ([`crate::requests`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use kseal_core::manifest::{Aliases, parse_documents_with, sealed_from_value};
use kseal_core::reason::Reason;
use kseal_core::resource::{RequestOperation, SealedSecret};
use kseal_core::sealing::{reseal, unseal};
use serde_json::json;

use crate::crypto::Crypto;
use crate::keys::KeyStore;

pub type Limiter = DefaultKeyedRateLimiter<IpAddr>;

/// A limiter allowing `per_second` requests per client, bursting to `burst`.
/// Keyed by anything: a client address here, a namespace for `SealedSecretRequest`s.
pub fn limiter<K: Clone + Eq + std::hash::Hash>(
    per_second: u32,
    burst: u32,
) -> Arc<DefaultKeyedRateLimiter<K>> {
    let per_second = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Arc::new(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

#[derive(Clone)]
pub struct ServiceState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<Limiter>,
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
    if state.limiter.check_key(&peer.ip()).is_err() {
        let mut r = reply(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "rate limited; retry later"}),
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return Err(Box::new(r));
    }
    let bad = |m: String| Box::new(reply(StatusCode::BAD_REQUEST, json!({"error": m})));
    let (_, docs) = parse_documents_with(body, Aliases::Refuse).map_err(|e| bad(e.to_string()))?;
    if docs.len() != 1 {
        return Err(bad(format!(
            "expected one SealedSecret, got {} documents",
            docs.len()
        )));
    }
    sealed_from_value(&docs[0]).map_err(|e| bad(e.to_string()))
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
    let refused = |e: kseal_core::sealing::ItemError| Answer::Refused {
        reason: e.source.reason(),
        message: format!("item {:?}: {}", e.item, e.source),
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
        .try_run(move || answer(&keys, operation, &sealed))
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
