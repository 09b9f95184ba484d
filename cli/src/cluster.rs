//! Reading from the cluster, kubectl-style (`--kubeconfig`, `--context`): the published
//! recipients, and the controller's state for `kseal status`. Only Kubernetes objects are
//! read, never the controller's pod, so this works on private clusters whose API server
//! cannot reach pods.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kseal_core::recipients::{Recipient, RecipientsDocument};
use kseal_core::resource::SealedSecret;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub const RECIPIENTS_CONFIGMAP: &str = "kseal-recipients";
pub const RECIPIENTS_KEY: &str = "recipients.json";
pub const LEADER_LEASE: &str = "kseal-controller-leader";

/// Where the cluster is and where kseal-controller runs in it.
#[derive(Debug, Args, Default, Clone)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, value_name = "FILE", env = "KUBECONFIG", value_hint = clap::ValueHint::FilePath)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace kseal-controller runs in
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "KSEAL_CONTROLLER_NAMESPACE",
        default_value = "kseal-system"
    )]
    pub controller_namespace: String,
}

/// A connection: a runtime for the blocking CLI, a client, and the context's namespace.
pub struct Cluster {
    pub runtime: tokio::runtime::Runtime,
    client: kube::Client,
    /// The resolved kubeconfig, for clients pinned to one apiserver.
    pub config: kube::Config,
    pub default_namespace: String,
    controller_namespace: String,
}

fn kubeconfig_path(args: &ClusterArgs) -> Option<PathBuf> {
    args.kubeconfig.clone().or_else(|| {
        let home = std::env::var_os("HOME")?;
        let path = PathBuf::from(home).join(".kube/config");
        path.exists().then_some(path)
    })
}

impl Cluster {
    /// Connects, or says why not. `None` when no kubeconfig exists at all.
    pub fn connect(args: &ClusterArgs) -> Result<Option<Cluster>> {
        let Some(path) = kubeconfig_path(args) else {
            return Ok(None);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let kubeconfig = Kubeconfig::read_from(&path)
            .with_context(|| format!("--kubeconfig {}", path.display()))?;
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = runtime
            .block_on(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
            .with_context(|| format!("--kubeconfig {}", path.display()))?;
        let default_namespace = config.default_namespace.clone();
        // The client's connection pool needs the runtime in scope when it is built.
        let client = {
            let _in_runtime = runtime.enter();
            kube::Client::try_from(config.clone()).context("connecting to the cluster")?
        };
        Ok(Some(Cluster {
            runtime,
            client,
            config,
            default_namespace,
            controller_namespace: args.controller_namespace.clone(),
        }))
    }

    /// The client, for requests of a command's own.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn configmap(&self) -> Result<RecipientsDocument> {
        Ok(self.configmap_with_annotations()?.0)
    }

    /// The recipients document, and the ConfigMap's annotations (where the controller
    /// records its encryption-at-rest verdict).
    fn configmap_with_annotations(
        &self,
    ) -> Result<(
        RecipientsDocument,
        std::collections::BTreeMap<String, String>,
    )> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.controller_namespace);
        let cm = self
            .runtime
            .block_on(api.get(RECIPIENTS_CONFIGMAP))
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 404 => anyhow!(
                    "ConfigMap {0}/{RECIPIENTS_CONFIGMAP} not found: is kseal-controller installed and running in namespace {0}? (another namespace: --controller-namespace)",
                    self.controller_namespace
                ),
                e => anyhow!(
                    "reading ConfigMap {}/{RECIPIENTS_CONFIGMAP}: {}",
                    self.controller_namespace,
                    describe(&e)
                ),
            })?;
        let annotations = cm.metadata.annotations.clone().unwrap_or_default();
        let text = cm
            .data
            .and_then(|d| d.get(RECIPIENTS_KEY).cloned())
            .ok_or_else(|| {
                anyhow!(
                    "ConfigMap {}/{RECIPIENTS_CONFIGMAP} has no {RECIPIENTS_KEY}",
                    self.controller_namespace
                )
            })?;
        let doc = serde_json::from_str(&text).with_context(|| {
            format!(
                "ConfigMap {}/{RECIPIENTS_CONFIGMAP}",
                self.controller_namespace
            )
        })?;
        Ok((doc, annotations))
    }

    /// The recipient new seals use: the newest published key.
    pub fn sealing_recipient(&self) -> Result<Recipient> {
        Ok(self.configmap()?.sealing_recipient()?)
    }

    /// `kseal status`: keys, leader, and SealedSecrets by readiness (in `namespace`, or in
    /// every namespace).
    pub fn status(&self, namespace: Option<&str>) -> Result<String> {
        use std::fmt::Write;
        let mut out = String::new();
        // Before the controller has published (or where it is not installed), the rest is
        // still worth showing.
        let (recipients, annotations) = match self.configmap_with_annotations() {
            Ok((doc, annotations)) => {
                let _ = writeln!(out, "keys (newest first, the first seals):");
                (doc.recipients, annotations)
            }
            Err(e) => {
                let _ = writeln!(out, "keys: none published ({e:#})");
                Default::default()
            }
        };
        for r in &recipients {
            let _ = writeln!(
                out,
                "  {}  {}  created {}",
                r.fingerprint,
                r.recipient,
                r.created.as_deref().map_or_else(|| "?".to_owned(), seconds)
            );
        }
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.controller_namespace);
        match self.runtime.block_on(leases.get_opt(LEADER_LEASE)) {
            Ok(Some(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                let holder = spec
                    .holder_identity
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "none".into());
                let renewed = spec
                    .renew_time
                    .map(|t| seconds(&t.0.to_string()))
                    .unwrap_or_else(|| "never".into());
                let _ = writeln!(out, "leader: {holder} (renewed {renewed})");
            }
            Ok(None) => {
                let _ = writeln!(
                    out,
                    "leader: none (no Lease {}/{LEADER_LEASE})",
                    self.controller_namespace
                );
            }
            Err(e) => {
                let _ = writeln!(out, "leader: unknown ({})", describe(&e));
            }
        }
        match annotations.get("kseal.dev/encryption-at-rest") {
            Some(verdict) => {
                let at = annotations
                    .get("kseal.dev/encryption-at-rest-checked-at")
                    .map_or_else(|| "?".to_owned(), |t| seconds(t));
                let _ = writeln!(out, "encryption at rest: {verdict} (checked {at})");
                if let Some(detail) = annotations.get("kseal.dev/encryption-at-rest-detail") {
                    let _ = writeln!(out, "  {detail}");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "encryption at rest: not checked by the controller (--require-encryption-at-rest=off?)"
                );
            }
        }
        let (sealed, label): (Api<SealedSecret>, _) = match namespace {
            Some(ns) => (
                Api::namespaced(self.client.clone(), ns),
                format!("sealedsecrets in {ns}"),
            ),
            None => (Api::all(self.client.clone()), "sealedsecrets".to_owned()),
        };
        match self.runtime.block_on(sealed.list(&ListParams::default())) {
            Ok(list) => {
                let mut by_reason: std::collections::BTreeMap<String, usize> = Default::default();
                for ss in &list.items {
                    let reason = ss
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                        .map(|c| {
                            format!(
                                "{} ({})",
                                if c.status == "True" {
                                    "ready"
                                } else {
                                    "not ready"
                                },
                                c.reason
                            )
                        })
                        .unwrap_or_else(|| "pending".into());
                    *by_reason.entry(reason).or_default() += 1;
                }
                let summary: Vec<String> =
                    by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
                let _ = writeln!(
                    out,
                    "{label}: {} [{}]",
                    list.items.len(),
                    summary.join(", ")
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label}: unknown ({})", describe(&e));
            }
        }
        Ok(out)
    }
}

impl Cluster {
    /// Creates a SealedSecretRequest, waits for the controller's answer, deletes the
    /// request, and returns the answer.
    /// A `RateLimited` answer (the namespace asked too often) is asked again, a little
    /// later each time, until `timeout`.
    pub fn ask(
        &self,
        namespace: &str,
        spec: kseal_core::resource::SealedSecretRequestSpec,
        timeout: std::time::Duration,
    ) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            let answer = self.ask_once(namespace, spec.clone(), timeout)?;
            let limited = answer.reason.as_deref() == Some("RateLimited");
            if !limited || std::time::Instant::now() + pause > deadline {
                return Ok(answer);
            }
            // Once per run: a slow run should say why.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "note: the controller's rate limit for {namespace} (--rate-limit, requests per second per namespace) throttles these requests: asking again, more slowly"
                );
            });
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(4));
        }
    }

    fn ask_once(
        &self,
        namespace: &str,
        spec: kseal_core::resource::SealedSecretRequestSpec,
        timeout: std::time::Duration,
    ) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
        use kseal_core::resource::SealedSecretRequest;
        use kube::api::{DeleteParams, PostParams};
        let api: Api<SealedSecretRequest> = Api::namespaced(self.client.clone(), namespace);
        let mut request = SealedSecretRequest::new("", spec);
        request.metadata.name = None;
        request.metadata.generate_name = Some("kseal-".into());
        let created = self
            .runtime
            .block_on(api.create(&PostParams::default(), &request))
            .map_err(|e| {
                anyhow!(
                    "creating a SealedSecretRequest in {namespace}: {}",
                    describe(&e)
                )
            })?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let deadline = std::time::Instant::now() + timeout;
        let answer = loop {
            match self.runtime.block_on(api.get(&name)) {
                Ok(r) if r.status.as_ref().is_some_and(|s| s.phase.is_some()) => {
                    break Ok(r.status.unwrap_or_default());
                }
                Ok(_) if std::time::Instant::now() > deadline => {
                    break Err(anyhow!(
                        "SealedSecretRequest {namespace}/{name}: no answer from kseal-controller within {} s (is it running? kseal status)",
                        timeout.as_secs()
                    ));
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                Err(e) => {
                    break Err(anyhow!(
                        "SealedSecretRequest {namespace}/{name}: {}",
                        describe(&e)
                    ));
                }
            }
        };
        let _ = self
            .runtime
            .block_on(api.delete(&name, &DeleteParams::default()));
        answer
    }
}

/// An RFC 3339 time to the second, as `kseal status` prints every time (the API gives
/// them in seconds, microseconds or nanoseconds); anything else as it is.
fn seconds(time: &str) -> String {
    match time.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => time.to_owned(),
    }
}

/// One line for an API error: the server's message, not a debug dump.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_times_are_to_the_second() {
        for t in [
            "2026-12-02T17:01:23Z",
            "2026-12-02T17:01:23.066136Z",
            "2026-12-02T17:01:23.145993188Z",
        ] {
            assert_eq!(seconds(t), "2026-12-02T17:01:23Z");
        }
        assert_eq!(seconds("?"), "?");
    }
}
