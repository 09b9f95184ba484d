//! The verify and reseal HTTP services (with `--http-services`): one handler, taking
//! the operation, answers a SealedSecret (JSON or YAML) as [`crate::answer`] decides,
//! and never returns plaintext.
//!
//! Both are rate limited per client address, charged by the items asked about (a
//! request's work grows with them: [`Limiter`]), and the decryptions run in the requests'
//! share of the bounded [`Crypto`] pool: when it is full the answer is 503 at once, never
//! a queue. Bodies are JSON or YAML without anchors or aliases, so what is parsed is never
//! larger than the body (2 MiB at most), and hold at most
//! [`MAX_ITEMS`](kseal_core::limits::MAX_ITEMS) items.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kseal_core::manifest::{Aliases, parse_documents_with, sealed_from_value};
use kseal_core::resource::{RequestOperation, SealedSecret};
use serde_json::json;

use crate::answer::{Answer, ITEMS_PER_TOKEN, Limiter, answer, too_much};
use crate::crypto::Crypto;
use crate::keys::KeyStore;

#[derive(Clone)]
pub struct ServiceState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<Limiter<IpAddr>>,
    pub crypto: Arc<Crypto>,
    pub metrics: Arc<crate::metrics::Metrics>,
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
        state.metrics.count_rate_limited("http");
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

/// The one handler: `operation` (verify or reseal) about the SealedSecret in `body`.
pub async fn service(
    operation: RequestOperation,
    State(state): State<ServiceState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    match read(&state, peer, &body) {
        Ok(sealed) => answer_now(state, operation, sealed).await,
        Err(r) => *r,
    }
}
