//! A fault-injecting HTTPS proxy between a client (the controller) and the real
//! kube-apiserver, for the faults an apiserver does not produce on its own: a share of
//! requests answered `500` or `429` with `Retry-After`, added latency, and watches cut
//! mid-stream. It forwards everything else unchanged, the client's bearer token
//! included, so authorization is still the apiserver's. It also counts the `410 Gone`
//! answers that pass through it (those come from the apiserver, after a real etcd
//! compaction).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch as signal;

use crate::cluster::{ControlPlane, Credential, Error};

type Body = BoxBody<Bytes, hyper::Error>;

/// What the proxy does to the requests it forwards.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Per verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`; `*` for
    /// every verb): the share of requests answered `500 InternalError`.
    pub error_rate: HashMap<String, f64>,
    /// The share of requests answered `429 TooManyRequests` with `Retry-After: 1`.
    pub throttle_rate: f64,
    /// Added before each request is forwarded.
    pub latency: Duration,
    /// Each watch is cut this long after it starts.
    pub drop_watches_after: Option<Duration>,
    /// Updates (PUT) of these paths are answered `409 Conflict`, every time: an object
    /// someone else keeps editing, as a client that reads then writes sees it.
    pub conflicts_on: Vec<String>,
    /// Requests of these paths (any verb) are answered `500 InternalError`, every time:
    /// one kind of write failing while the rest work.
    pub errors_on: Vec<String>,
}

/// What the proxy has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub errors: u64,
    pub throttled: u64,
    pub cut_watches: u64,
    /// `410 Gone` from the apiserver: answers, and ERROR events inside watches.
    pub gone: u64,
}

#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    throttled: AtomicU64,
    cut_watches: AtomicU64,
    gone: AtomicU64,
}

struct Shared {
    upstream_port: u16,
    upstream_tls: tokio_rustls::TlsConnector,
    faults: Mutex<Faults>,
    counters: Counters,
    cut: signal::Sender<u64>,
}

/// A running proxy. Dropping it stops it.
pub struct FaultProxy {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: signal::Sender<bool>,
}

impl FaultProxy {
    /// A proxy in front of `plane`'s apiserver, serving a certificate from its CA.
    pub async fn start(plane: &ControlPlane) -> Result<FaultProxy, Error> {
        let (cert_pem, key_pem) = plane.serving_certificate()?;
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(
            plane.ca_pem.as_bytes(),
        )?)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, _) = signal::channel(0);
        let shared = Arc::new(Shared {
            upstream_port: plane.port,
            upstream_tls: tokio_rustls::TlsConnector::from(Arc::new(client)),
            faults: Mutex::new(Faults::default()),
            counters: Counters::default(),
            cut,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let (stop, stopped) = signal::channel(false);
        let serving = shared.clone();
        tokio::spawn(async move {
            let mut stopped_accepting = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped_accepting.changed() => return,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let (acceptor, shared, mut stopped) =
                    (acceptor.clone(), serving.clone(), stopped.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(forward(&shared, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(FaultProxy {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: plane.ca_pem.clone(),
            shared,
            stop,
        })
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Cuts every watch open now.
    pub fn drop_watches(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    pub fn injected(&self) -> Injected {
        let c = &self.shared.counters;
        Injected {
            errors: c.errors.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            cut_watches: c.cut_watches.load(Ordering::Relaxed),
            gone: c.gone.load(Ordering::Relaxed),
        }
    }

    /// A kubeconfig that reaches the apiserver through this proxy.
    pub fn kubeconfig(&self, plane: &ControlPlane, credential: &Credential, ns: &str) -> String {
        plane
            .kubeconfig(credential, ns)
            .replacen(&plane.url, &self.url, 1)
            .replacen(&b64(&plane.ca_pem), &b64(&self.ca_pem), 1)
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The Kubernetes verb of a request.
fn verb(req: &Request<Incoming>) -> &'static str {
    let query = req.uri().query().unwrap_or("");
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    match req.method().as_str() {
        "GET" if watch => "watch",
        "GET" => {
            // A named object ends the path; a collection ends it with a resource name.
            // `/api/v1/namespaces/x` is a get, `/api/v1/namespaces/x/secrets` a list.
            let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
            let base = if parts.first() == Some(&"api") { 2 } else { 3 };
            let rest = parts.len().saturating_sub(base);
            let namespaced = parts.get(base) == Some(&"namespaces") && rest >= 3;
            let named = if namespaced {
                rest % 2 == 0
            } else {
                rest % 2 == 0 && rest > 0
            };
            if named { "get" } else { "list" }
        }
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "other",
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or_default();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

async fn forward(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let verb = verb(&req);
    let faults = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let rate = faults
        .error_rate
        .get(verb)
        .or_else(|| faults.error_rate.get("*"))
        .copied()
        .unwrap_or(0.0);
    let (fail, throttle) = {
        let mut rng = rand::rng();
        (
            rng.random_bool(rate.clamp(0.0, 1.0)),
            rng.random_bool(faults.throttle_rate.clamp(0.0, 1.0)),
        )
    };
    if fail || faults.errors_on.iter().any(|p| p == req.uri().path()) {
        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        return status(500, "InternalError", &format!("injected fault on {verb}"));
    }
    if verb == "update" && faults.conflicts_on.iter().any(|p| p == req.uri().path()) {
        return status(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        );
    }
    if throttle {
        shared.counters.throttled.fetch_add(1, Ordering::Relaxed);
        let mut response = status(
            429,
            "TooManyRequests",
            "injected throttling, please try again later",
        );
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return response;
    }
    match send_upstream(shared, req).await {
        Ok(response) => {
            if response.status() == hyper::StatusCode::GONE {
                shared.counters.gone.fetch_add(1, Ordering::Relaxed);
            }
            if verb == "watch" {
                watch_body(shared, response, faults.drop_watches_after)
            } else {
                response.map(|b| b.boxed())
            }
        }
        Err(e) => status(502, "InternalError", &format!("proxy: {e}")),
    }
}

async fn send_upstream(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, Error> {
    let tcp = TcpStream::connect(("127.0.0.1", shared.upstream_port)).await?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let tls = shared.upstream_tls.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path.parse()?;
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_str(&format!("127.0.0.1:{}", shared.upstream_port))?,
    );
    Ok(sender
        .send_request(Request::from_parts(parts, body))
        .await?)
}

/// A watch's body, passed through until it ends or is cut (now, or `cut_after` after it
/// started); `410` ERROR events in it are counted.
fn watch_body(
    shared: &Arc<Shared>,
    response: Response<Incoming>,
    cut_after: Option<Duration>,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let deadline = cut_after.map(|d| tokio::time::Instant::now() + d);
    let state = (body, shared.cut.subscribe(), shared.clone());
    let stream = futures::stream::unfold(Some(state), move |state| async move {
        let (mut body, mut cut, shared) = state?;
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = body.frame() => {
                let frame = frame?;
                if let Ok(f) = &frame
                    && let Some(data) = f.data_ref()
                    && contains(data, b"\"code\":410")
                {
                    shared.counters.gone.fetch_add(1, Ordering::Relaxed);
                }
                Some((frame, Some((body, cut, shared))))
            }
            _ = cut.changed() => {
                shared.counters.cut_watches.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ = expired => {
                shared.counters.cut_watches.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    });
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(stream)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
