//! `kseal verify` (and `kseal reseal`, in `reseal.rs`): ask the cluster's controller, which holds the private
//! keys, whether it can unseal a file, or to re-encrypt it to its newest key. Plaintext
//! never leaves the controller.
//!
//! By default the question is a `SealedSecretRequest` object created through the
//! kubeconfig, answered by the controller in its status: only the Kubernetes API is
//! needed, so it works on private clusters whose API server cannot reach pods. With
//! `--controller-url` the controller's HTTP services are asked instead (e.g. through
//! `kubectl port-forward -n kseal-system deployment/kseal-controller 8080`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::manifest::{parse_documents, sealed_from_value};
use kseal_core::reason::Reason;
use kseal_core::resource::{
    RequestOperation, RequestTarget, SealedSecret, SealedSecretRequestSpec,
};
use serde::Serialize;

use super::doc_label;
use crate::cli::{InspectFormat, ServiceArgs};
use crate::cluster::Cluster;
use crate::io::{outln, read_file};

pub(crate) fn post(url: &str, path: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
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

/// Where the questions go.
enum Controller {
    Http(String),
    Api {
        cluster: Box<Cluster>,
        namespace: String,
        timeout: Duration,
    },
}

impl Controller {
    fn new(args: &ServiceArgs) -> Result<Controller> {
        if let Some(url) = &args.ask.controller_url {
            return Ok(Controller::Http(url.clone()));
        }
        let cluster = Cluster::connect(&args.cluster)?.ok_or_else(|| {
            anyhow!("no kubeconfig: pass --kubeconfig (or set $KUBECONFIG), or --controller-url")
        })?;
        let namespace = args
            .ask
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace.clone());
        Ok(Controller::Api {
            cluster: Box::new(cluster),
            namespace,
            timeout: Duration::from_secs(args.ask.timeout),
        })
    }

    /// The answer: `Ok(body)` as the HTTP service's JSON, or `Err(refusal)` when the
    /// controller refused.
    fn ask(
        &self,
        operation: RequestOperation,
        doc: &serde_json::Value,
        sealed: &SealedSecret,
    ) -> Result<std::result::Result<serde_json::Value, Refusal>> {
        match self {
            Controller::Http(url) => {
                let path = match operation {
                    RequestOperation::Verify => "/v1/verify",
                    RequestOperation::Reseal => "/v1/reseal",
                    RequestOperation::Migrate => {
                        bail!(
                            "migrating goes through SealedSecretRequest objects, not --controller-url"
                        )
                    }
                };
                let (code, body) = post(url, path, doc.to_string().as_bytes())?;
                Ok(if code == 200 {
                    Ok(body)
                } else {
                    Err(service_error(code, &body))
                })
            }
            Controller::Api {
                cluster,
                namespace,
                timeout,
            } => {
                let target = RequestTarget {
                    namespace: sealed
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.clone()),
                    name: sealed.metadata.name.clone().unwrap_or_default(),
                };
                let spec = SealedSecretRequestSpec {
                    operation,
                    target,
                    sealed_secret: sealed.spec.clone(),
                };
                let status = cluster.ask(namespace, spec, *timeout)?;
                if status.phase.as_deref() != Some("Succeeded") {
                    return Ok(Err(Refusal {
                        reason: status.reason,
                        message: status.message.unwrap_or_default(),
                    }));
                }
                Ok(Ok(match status.resealed {
                    Some(spec) => {
                        let mut out = sealed.clone();
                        out.spec = spec;
                        serde_json::to_value(&out)?
                    }
                    None => serde_json::json!({"verified": true, "items": status.items}),
                }))
            }
        }
    }
}

fn who(ss: &SealedSecret) -> String {
    ss.location()
}

/// The controller's refusal: a reason of kseal's vocabulary and a message that names the
/// item and the cause.
#[derive(Serialize)]
pub(crate) struct Refusal {
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

pub(crate) fn service_error(code: u16, body: &serde_json::Value) -> Refusal {
    let reason = body["reason"].as_str().map(str::to_owned);
    let message = match (body["message"].as_str(), body["error"].as_str()) {
        (Some(m), _) => m.to_owned(),
        (None, Some(e)) => format!("{e} (HTTP {code})"),
        _ => format!("HTTP {code}"),
    };
    Refusal { reason, message }
}

/// One object asked about, for `-o json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answered {
    file: String,
    /// 1-based, when the file holds several documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    /// `namespace/name`.
    object: String,
    /// Whether the cluster can unseal it.
    ok: bool,
    /// How many items it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<Refusal>,
}

pub fn verify(args: &ServiceArgs) -> Result<()> {
    let controller = Controller::new(args)?;
    let json = args.output == InspectFormat::Json;
    let mut answered = Vec::new();
    for (path, named) in super::named_files(&args.files)? {
        let input = read_file(&path)?;
        let (_, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
        if named && !super::holds_sealed_secrets(&docs) {
            bail!("{}: holds no kseal SealedSecret", input.name);
        }
        for (i, doc) in docs.iter().enumerate() {
            let label = doc_label(&input.name, i, docs.len());
            if !super::is_kseal_sealed_secret(doc, &label) {
                continue;
            }
            let sealed = sealed_from_value(doc).with_context(|| label.clone())?;
            let mut entry = Answered {
                file: input.name.clone(),
                document: super::doc_number(i, docs.len()),
                object: who(&sealed),
                ok: true,
                items: None,
                refused: None,
            };
            match controller.ask(RequestOperation::Verify, doc, &sealed)? {
                Ok(body) => {
                    let items = body["items"].as_u64().unwrap_or(0);
                    entry.items = Some(items);
                    if !json {
                        outln!(
                            "{label}: {}: the cluster can unseal it ({})",
                            entry.object,
                            super::plural(items as usize, "item")
                        )?;
                    }
                }
                Err(why) => {
                    if !json {
                        eprintln!(
                            "{label}: {}: cannot be unsealed by this cluster: {why}",
                            entry.object
                        );
                    }
                    entry.ok = false;
                    entry.refused = Some(why);
                }
            }
            answered.push(entry);
        }
    }
    let failed = answered.iter().filter(|o| !o.ok).count();
    if json {
        super::print_report(&answered, failed)?;
    }
    if failed > 0 {
        bail!(
            "{} of {} failed verification",
            failed,
            super::plural(answered.len(), "SealedSecret")
        );
    }
    Ok(())
}
