//! HTTP endpoints: `/healthz`, `/readyz`, `/v1/recipients` on the main address (and the
//! verify and reseal services with `--http-services`), `/metrics` on the metrics address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kseal_core::resource::RequestOperation;

use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::services::service;

#[derive(Clone)]
pub struct HttpState {
    pub keys: Arc<KeyStore>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<crate::answer::Limiter<std::net::IpAddr>>,
    pub crypto: Arc<crate::crypto::Crypto>,
    /// Serve `/v1/verify` and `/v1/reseal`.
    pub services: bool,
    /// The custodian's name, when custody is on (for the readiness reason).
    pub custody: Option<String>,
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once keys are loaded: a replica without keys can neither unseal nor verify.
/// Under custody, the reason names the custodian and why no key could be unwrapped.
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.keys.newest().is_some() {
        return (StatusCode::OK, "ok".to_owned());
    }
    let why = match (s.keys.unavailable_reason(), &s.custody) {
        (Some(why), _) => format!("no usable sealing key: {why}"),
        (None, Some(custodian)) => {
            format!("no sealing keys loaded yet (keys under custody of {custodian})")
        }
        (None, None) => "no sealing keys loaded yet".to_owned(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, why)
}

async fn recipients(State(s): State<HttpState>) -> impl IntoResponse {
    let doc = s.keys.document();
    if doc.recipients.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            "no sealing keys loaded yet".to_owned(),
        );
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    )
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// The two listening sockets, bound before anything else starts: a controller without
/// health, metrics or recipients endpoints is one nobody can see, so a port that cannot be
/// bound stops it at once.
pub struct Listeners {
    main: tokio::net::TcpListener,
    metrics: tokio::net::TcpListener,
}

/// Binds `--listen-addr` and `--metrics-addr`; the error names the flag and address.
pub async fn bind(addr: SocketAddr, metrics_addr: SocketAddr) -> anyhow::Result<Listeners> {
    use anyhow::Context;
    let main = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --listen-addr {addr}"))?;
    let metrics = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-addr {metrics_addr}"))?;
    Ok(Listeners { main, metrics })
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listeners: Listeners,
    state: HttpState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let services = Router::new()
        .route(
            "/v1/verify",
            post(|s, p, b| service(RequestOperation::Verify, s, p, b)),
        )
        .route(
            "/v1/reseal",
            post(|s, p, b| service(RequestOperation::Reseal, s, p, b)),
        )
        .with_state(crate::services::ServiceState {
            keys: state.keys.clone(),
            limiter: state.limiter.clone(),
            crypto: state.crypto.clone(),
            metrics: state.metrics.clone(),
        });
    let mut main = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/recipients", get(recipients))
        .with_state(state.clone());
    if state.services {
        main = main.merge(services);
    }
    let metrics_router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    let Listeners {
        main: main_listener,
        metrics: metrics_listener,
    } = listeners;
    tracing::info!(
        addr = %main_listener.local_addr()?,
        metrics = %metrics_listener.local_addr()?,
        "serving HTTP"
    );
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let a = axum::serve(
        main_listener,
        main.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop(shutdown.clone()));
    let b = axum::serve(metrics_listener, metrics_router).with_graceful_shutdown(stop(shutdown));
    let (ra, rb) = tokio::join!(a, b);
    ra.and(rb)
}
