//! Starting the server (HTTPS with its own CA), writing kubeconfigs, identities, and the
//! control surface tests use: in-process methods, and the same over HTTP under
//! `/_kseal-test/` for the binary (admin identity only).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use super::http::{Faults, Programmed, Shared, handle, json_response, lock};
use super::rbac::User;
use super::status::ApiError;
use super::store::{Signal, Store};

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// How many change events watches can resume from before 410.
    pub history_limit: usize,
    pub bookmark_interval: Duration,
    /// Used when a watch gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// A running test API server. Dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    pub ca_pem: String,
    /// A token for `admin` (group `system:masters`: every request is allowed).
    pub admin_token: String,
    shared: Arc<Shared>,
    tls_config: Arc<rustls::ServerConfig>,
    stop: signal::Sender<bool>,
}

fn token() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

struct Tls {
    ca_pem: String,
    config: rustls::ServerConfig,
}

fn tls() -> Result<Tls, Box<dyn std::error::Error + Send + Sync>> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kseal test apiserver CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kseal-test-apiserver");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca.pem(),
        config,
    })
}

impl TestServer {
    pub async fn start(config: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let tls = tls()?;
        let admin_token = token();
        let mut tokens = HashMap::new();
        tokens.insert(
            admin_token.clone(),
            User {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        );
        let store = Arc::new(Mutex::new(Store::new(config.history_limit)));
        let tokens = Arc::new(Mutex::new(tokens));
        Self::serve(
            config,
            tls.ca_pem,
            Arc::new(tls.config),
            store,
            tokens,
            admin_token,
        )
        .await
    }

    /// A second apiserver in front of the same store (one etcd, as in an HA control
    /// plane), with the same CA, certificate and tokens, but its own address, storage
    /// model, programmed endpoints and faults.
    pub async fn start_peer(&self) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let config = Config {
            bookmark_interval: self.shared.bookmark_interval,
            default_watch_timeout: self.shared.default_watch_timeout,
            ..Config::default()
        };
        Self::serve(
            config,
            self.ca_pem.clone(),
            self.tls_config.clone(),
            self.shared.store.clone(),
            self.shared.tokens.clone(),
            self.admin_token.clone(),
        )
        .await
    }

    async fn serve(
        config: Config,
        ca_pem: String,
        tls_config: Arc<rustls::ServerConfig>,
        store: Arc<Mutex<Store>>,
        tokens: Arc<Mutex<HashMap<String, User>>>,
        admin_token: String,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let shared = Arc::new(Shared {
            store,
            tokens,
            storage: Mutex::default(),
            faults: Mutex::new(Faults::default()),
            programmed: Mutex::new(HashMap::new()),
            bookmark_interval: config.bookmark_interval,
            default_watch_timeout: config.default_watch_timeout,
            injected: Default::default(),
        });
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.clone());
        let (stop, mut stopped) = signal::channel(false);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(app);
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
        Ok(TestServer {
            url: format!("https://127.0.0.1:{}", addr.port()),
            addr,
            ca_pem,
            admin_token,
            shared,
            tls_config,
            stop,
        })
    }

    /// What this apiserver's modelled encryption config does to Secrets; counters keep
    /// running across changes, as they do across a config reload.
    pub fn set_secret_storage(&self, storage: super::storage::SecretStorage) {
        lock(&self.shared.storage).secrets = storage;
    }

    /// Before Kubernetes 1.32 the transformation metrics have no `resource` label.
    pub fn set_metrics_resource_label(&self, on: bool) {
        lock(&self.shared.storage).resource_label = on;
    }

    /// A kubeconfig that authenticates with `token`, namespace `namespace`.
    pub fn kubeconfig(&self, token: &str, namespace: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kseal-test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: kseal-test\n  user:\n    token: {token}\ncontexts:\n- name: kseal-test\n  context:\n    cluster: kseal-test\n    user: kseal-test\n    namespace: {namespace}\ncurrent-context: kseal-test\n",
            url = self.url
        )
    }

    pub fn write_kubeconfig(
        &self,
        path: &Path,
        token: &str,
        namespace: &str,
    ) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(token, namespace))
    }

    /// A token that authenticates as the ServiceAccount `namespace/name`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let t = token();
        lock(&self.shared.tokens).insert(t.clone(), User::service_account(namespace, name));
        t
    }

    /// A token for an arbitrary user and groups (`system:authenticated` is added).
    pub fn user_token(&self, name: &str, groups: &[&str]) -> String {
        let t = token();
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        groups.push("system:authenticated".into());
        lock(&self.shared.tokens).insert(
            t.clone(),
            User {
                name: name.into(),
                groups,
            },
        );
        t
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Forgets the watch history: every open watch gets a 410 ERROR event and must relist.
    pub fn force_gone(&self) {
        lock(&self.shared.store).compact();
        self.shared
            .injected
            .forced_gone
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// (injected errors, watches cut, 410s forced) so far.
    pub fn faults_injected(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.injected;
        (
            c.errors.load(Relaxed),
            c.dropped_watches.load(Relaxed),
            c.forced_gone.load(Relaxed),
        )
    }

    /// Cuts every open watch connection.
    pub fn drop_watches(&self) {
        let _ = lock(&self.shared.store).tx.send(Signal::Drop);
        self.shared
            .injected
            .dropped_watches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Programs the answer for a non-resource path (`/metrics`, `/readyz`, …).
    pub fn program(&self, path: &str, answer: Programmed) {
        lock(&self.shared.programmed).insert(path.to_owned(), answer);
    }

    /// Number of objects of a plural resource in one namespace.
    pub fn count_in(&self, plural: &str, namespace: &str) -> usize {
        lock(&self.shared.store)
            .objects
            .keys()
            .filter(|k| k.1 == plural && k.2 == namespace)
            .count()
    }

    /// Number of objects of a plural resource (in any group).
    pub fn count(&self, plural: &str) -> usize {
        lock(&self.shared.store)
            .objects
            .keys()
            .filter(|k| k.1 == plural)
            .count()
    }

    /// Every state ever written for a plural resource (ADDED and MODIFIED objects), in order.
    pub fn written_states(&self, plural: &str) -> Vec<Value> {
        lock(&self.shared.store)
            .audit
            .iter()
            .filter(|e| e.plural == plural && e.kind != "DELETED")
            .map(|e| e.object.clone())
            .collect()
    }

    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `/_kseal-test/<what>` for the binary and scripts.
pub fn control(shared: &Shared, method: &Method, what: &str, body: &[u8]) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(json!({}));
    match (method.as_str(), what) {
        ("POST", "faults") => {
            let mut faults = Faults::default();
            if let Some(rates) = body["errorRate"].as_object() {
                for (verb, rate) in rates {
                    faults
                        .error_rate
                        .insert(verb.clone(), rate.as_f64().unwrap_or(0.0));
                }
            }
            faults.latency = Duration::from_millis(body["latencyMs"].as_u64().unwrap_or(0));
            faults.drop_watches_after = body["dropWatchesAfterMs"]
                .as_u64()
                .map(Duration::from_millis);
            *lock(&shared.faults) = faults;
            json_response(200, &json!({"ok": true}))
        }
        ("POST", "force-gone") => {
            lock(&shared.store).compact();
            json_response(200, &json!({"ok": true}))
        }
        ("POST", "drop-watches") => {
            let _ = lock(&shared.store).tx.send(Signal::Drop);
            json_response(200, &json!({"ok": true}))
        }
        ("POST", "program") => {
            let Some(path) = body["path"].as_str() else {
                return ApiError::bad_request("path is required").into_response();
            };
            lock(&shared.programmed).insert(
                path.to_owned(),
                Programmed {
                    status: body["status"].as_u64().unwrap_or(200) as u16,
                    body: body["body"].as_str().unwrap_or_default().to_owned(),
                    verbose_body: body["verboseBody"].as_str().map(str::to_owned),
                    content_type: body["contentType"]
                        .as_str()
                        .unwrap_or("text/plain")
                        .to_owned(),
                },
            );
            json_response(200, &json!({"ok": true}))
        }
        ("POST", "tokens") => {
            let user = match (
                body["serviceAccount"]["namespace"].as_str(),
                body["serviceAccount"]["name"].as_str(),
            ) {
                (Some(ns), Some(name)) => User::service_account(ns, name),
                _ => User {
                    name: body["user"].as_str().unwrap_or("user").to_owned(),
                    groups: vec!["system:authenticated".into()],
                },
            };
            let t = token();
            lock(&shared.tokens).insert(t.clone(), user);
            json_response(200, &json!({"token": t}))
        }
        _ => ApiError::unknown_path().into_response(),
    }
}
