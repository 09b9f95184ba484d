//! Asking kseal-controller, which holds the private keys, to verify, reseal or migrate a
//! SealedSecret: one client for `kseal verify`, `kseal reseal` and `kseal migrate`, over
//! either transport. Plaintext never leaves the controller.
//!
//! By default the question is a `SealedSecretRequest` object created through the
//! kubeconfig and answered by the controller in its status ([`request`]):
//! only the Kubernetes API is needed, so it works on private clusters whose API server
//! cannot reach pods. With `--controller-url` the controller's HTTP services are asked
//! instead (e.g. through `kubectl port-forward -n kseal-system
//! deployment/kseal-controller 8080`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::reason::Reason;
use kseal_core::resource::{
    RequestOperation, RequestTarget, SealedSecret, SealedSecretRequestSpec,
};
use kube::api::Api;
use serde::Serialize;

use crate::cluster::Cluster;

/// Where the questions go.
pub enum Asker {
    /// `--controller-url`: the controller's HTTP services.
    Http(String),
    /// SealedSecretRequests in `namespace` (a migration's, in its target's own namespace).
    Api {
        cluster: Box<Cluster>,
        namespace: String,
        timeout: Duration,
        /// Shared by the requests in flight: a `RateLimited` answer slows them all.
        pacing: Pacing,
    },
}

/// The controller's answer when it did what was asked.
pub enum Answer {
    /// It opened every item (a verification): how many.
    Verified { items: u64 },
    /// The object moved to the cluster's newest key (a reseal, a migration).
    Resealed(Box<SealedSecret>),
}

/// The controller's refusal: a reason of kseal's vocabulary and a message that names the
/// item and the cause.
#[derive(Serialize)]
pub struct Refusal {
    pub reason: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    /// The reason, the message, and what to do about it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = self.reason.as_deref();
        let remedy = reason
            .and_then(|r| r.parse::<Reason>().ok())
            .and_then(Reason::remedy);
        write!(f, "{} ({})", reason.unwrap_or("refused"), self.message)?;
        match remedy {
            Some(remedy) => write!(f, ": {remedy}"),
            None => Ok(()),
        }
    }
}

impl Asker {
    /// SealedSecretRequests through `cluster`, in `namespace` (`-n`; else the
    /// kubeconfig's), each answered within `timeout`.
    pub fn api(cluster: Cluster, namespace: Option<String>, timeout: Duration) -> Asker {
        let namespace = namespace.unwrap_or_else(|| cluster.default_namespace.clone());
        Asker::Api {
            cluster: Box::new(cluster),
            namespace,
            timeout,
            pacing: Pacing::default(),
        }
    }

    /// The answer to `operation` about `sealed`: `Ok(Ok(answer))`, `Ok(Err(refusal))`
    /// when the controller refused, `Err` when it could not be asked.
    pub async fn ask(
        &self,
        operation: RequestOperation,
        sealed: &SealedSecret,
    ) -> Result<std::result::Result<Answer, Refusal>> {
        match self {
            Asker::Http(url) => {
                let path = match operation {
                    RequestOperation::Verify => "/v1/verify",
                    RequestOperation::Reseal => "/v1/reseal",
                    RequestOperation::Migrate => {
                        bail!(
                            "migrating goes through SealedSecretRequest objects, not --controller-url"
                        )
                    }
                };
                let (code, body) = post(url, path, &serde_json::to_vec(sealed)?)?;
                if code != 200 {
                    return Ok(Err(service_error(code, &body)));
                }
                Ok(Ok(match operation {
                    RequestOperation::Verify => Answer::Verified {
                        items: body["items"].as_u64().unwrap_or(0),
                    },
                    _ => Answer::Resealed(Box::new(
                        serde_json::from_value(body).context("the controller's answer")?,
                    )),
                }))
            }
            Asker::Api {
                cluster,
                namespace,
                timeout,
                pacing,
            } => {
                let target = RequestTarget {
                    namespace: sealed
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.clone()),
                    name: sealed.metadata.name.clone().unwrap_or_default(),
                };
                // The controller answers a migration only in the target's own namespace:
                // who may create requests there may move its values.
                let asked_in = match operation {
                    RequestOperation::Migrate => target.namespace.clone(),
                    _ => namespace.clone(),
                };
                let spec = SealedSecretRequestSpec {
                    operation,
                    target,
                    sealed_secret: sealed.spec.clone(),
                };
                let status = request(cluster, &asked_in, spec, *timeout, pacing).await?;
                if status.phase.as_deref() != Some("Succeeded") {
                    return Ok(Err(Refusal {
                        reason: status.reason,
                        message: status.message.unwrap_or_default(),
                    }));
                }
                Ok(Ok(match (operation, status.resealed) {
                    (RequestOperation::Verify, _) => Answer::Verified {
                        items: status.items.map(u64::from).unwrap_or(0),
                    },
                    (_, Some(spec)) => {
                        let mut out = sealed.clone();
                        out.spec = spec;
                        Answer::Resealed(Box::new(out))
                    }
                    (_, None) => bail!("the controller's answer carries no resealed object"),
                }))
            }
        }
    }

    /// [`Asker::ask`], waited for: on the cluster's runtime, or a runtime of its own for
    /// HTTP.
    pub fn ask_blocking(
        &self,
        operation: RequestOperation,
        sealed: &SealedSecret,
    ) -> Result<std::result::Result<Answer, Refusal>> {
        let asked = self.ask(operation, sealed);
        match self {
            Asker::Api { cluster, .. } => cluster.runtime.block_on(asked),
            Asker::Http(_) => tokio::runtime::Builder::new_current_thread()
                .build()
                .context("starting a runtime")?
                .block_on(asked),
        }
    }
}

/// POSTs a JSON body to the controller's HTTP services: the status code and the answer
/// (JSON, or the text as a JSON string).
fn post(url: &str, path: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let endpoint = format!("{}{path}", url.trim_end_matches('/'));
    let mut response = agent
        .post(&endpoint)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| anyhow!("{endpoint}: cannot reach the controller: {e}"))?;
    let code = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| anyhow!("{endpoint}: cannot read the answer: {e}"))?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((code, value))
}

fn service_error(code: u16, body: &serde_json::Value) -> Refusal {
    let reason = body["reason"].as_str().map(str::to_owned);
    let message = match (body["message"].as_str(), body["error"].as_str()) {
        (Some(m), _) => m.to_owned(),
        (None, Some(e)) => format!("{e} (HTTP {code})"),
        _ => format!("HTTP {code}"),
    };
    Refusal { reason, message }
}

/// Creates a SealedSecretRequest in `namespace`, waits for the controller's answer,
/// deletes the request, and returns the answer; several may be in flight at once on the
/// cluster's runtime. A `RateLimited` answer (the namespace asked too often) is asked again, a little
/// later each time, until `timeout`; `pacing`, shared by the requests in flight,
/// holds every one of them back for that pause, so a throttled run slows down as a
/// whole instead of each request spending more of the limit to be refused again.
async fn request(
    cluster: &Cluster,
    namespace: &str,
    spec: kseal_core::resource::SealedSecretRequestSpec,
    timeout: std::time::Duration,
    pacing: &Pacing,
) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        pacing.wait().await;
        let answer = request_once(cluster, namespace, spec.clone(), timeout).await?;
        let limited = answer.reason.as_deref() == Some("RateLimited");
        if !limited || tokio::time::Instant::now() + pause > deadline {
            return Ok(answer);
        }
        // Once per run: a slow run should say why.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "note: the controller's rate limit for namespace {namespace} (--rate-limit, requests per second per namespace) throttles these requests: asking again, more slowly"
            );
        });
        pacing.hold(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(4));
    }
}

async fn request_once(
    cluster: &Cluster,
    namespace: &str,
    spec: kseal_core::resource::SealedSecretRequestSpec,
    timeout: std::time::Duration,
) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
    use kseal_core::resource::SealedSecretRequest;
    use kube::api::{DeleteParams, PostParams};
    let api: Api<SealedSecretRequest> = Api::namespaced(cluster.client.clone(), namespace);
    let mut request = SealedSecretRequest::new("", spec);
    request.metadata.name = None;
    request.metadata.generate_name = Some("kseal-".into());
    let created = api
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| {
            anyhow!(
                "creating a SealedSecretRequest in {namespace}: {}",
                cluster.describe(&e)
            )
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    let answer = loop {
        match api.get(&name).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.phase.is_some()) => {
                break Ok(r.status.unwrap_or_default());
            }
            Ok(_) if tokio::time::Instant::now() > deadline => {
                break Err(anyhow!(
                    "SealedSecretRequest {namespace}/{name}: no answer from kseal-controller within {} s (is it running? kseal status)",
                    timeout.as_secs()
                ));
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(e) => {
                break Err(anyhow!(
                    "SealedSecretRequest {namespace}/{name}: {}",
                    cluster.describe(&e)
                ));
            }
        }
    };
    let _ = api.delete(&name, &DeleteParams::default()).await;
    answer
}

/// When the next request may go: moved later by a `RateLimited` answer, for every request
/// that shares it.
#[derive(Default)]
pub struct Pacing(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Pacing {
    async fn wait(&self) {
        let until = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn hold(&self, pause: std::time::Duration) {
        let mut until = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let later = tokio::time::Instant::now() + pause;
        if until.is_none_or(|u| u < later) {
            *until = Some(later);
        }
    }
}
