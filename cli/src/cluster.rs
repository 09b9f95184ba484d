//! Reading from the cluster, kubectl-style (`--kubeconfig`, `--context`): the published
//! recipients, and the controller's state for `kseal status`. Only Kubernetes objects are
//! read, never the controller's pod, so this works on private clusters whose API server
//! cannot reach pods.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::ConfigMap;
use kseal_core::recipients::{Recipient, RecipientsDocument};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::ClusterArgs;

use kseal_core::contract::{RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};

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

/// A kubeconfig problem in kubectl's words: the file, and what is wrong with it, once.
/// The YAML parser's own message is left out: it can quote the file, tokens included.
fn kubeconfig_error(path: &std::path::Path, e: kube::config::KubeconfigError) -> anyhow::Error {
    use kube::config::KubeconfigError as E;
    let path = path.display();
    match e {
        E::ReadConfig(io, _) if io.kind() == std::io::ErrorKind::NotFound => {
            anyhow!("kubeconfig {path}: no such file")
        }
        E::ReadConfig(io, _) => anyhow!("kubeconfig {path}: cannot read it: {io}"),
        E::Parse(_) => anyhow!("kubeconfig {path}: not valid kubeconfig YAML"),
        E::LoadContext(context) => anyhow!("context {context:?} does not exist (in {path})"),
        E::LoadClusterOfContext(cluster) => {
            anyhow!("cluster {cluster:?} does not exist (in {path})")
        }
        E::CurrentContextNotSet => anyhow!(
            "kubeconfig {path}: no current context: pass --context NAME, or `kubectl config use-context NAME`"
        ),
        other => anyhow!("kubeconfig {path}: {other}"),
    }
}

impl Cluster {
    /// Connects, or says that no kubeconfig was found.
    pub fn require(args: &ClusterArgs) -> Result<Cluster> {
        Cluster::connect(args)?.ok_or_else(|| {
            anyhow!(
                "no kubeconfig: pass --kubeconfig FILE, set $KUBECONFIG, or create ~/.kube/config"
            )
        })
    }

    /// Connects, or says why not. `None` when no kubeconfig exists at all.
    pub fn connect(args: &ClusterArgs) -> Result<Option<Cluster>> {
        let Some(path) = kubeconfig_path(args) else {
            return Ok(None);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| kubeconfig_error(&path, e))?;
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = runtime
            .block_on(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
            .map_err(|e| kubeconfig_error(&path, e))?;
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
    pub fn configmap_with_annotations(
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
                    self.describe(&e)
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

    /// Every key the cluster publishes, newest first: the ones its controller unseals with.
    pub fn published_keys(&self) -> Result<Vec<Recipient>> {
        self.configmap()?.keys().with_context(|| {
            format!(
                "ConfigMap {}/{RECIPIENTS_CONFIGMAP}",
                self.controller_namespace
            )
        })
    }
}

impl Cluster {
    /// Creates a SealedSecretRequest, waits for the controller's answer, deletes the
    /// request, and returns the answer. See [`Cluster::ask_async`].
    pub fn ask(
        &self,
        namespace: &str,
        spec: kseal_core::resource::SealedSecretRequestSpec,
        timeout: std::time::Duration,
    ) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
        let pacing = Pacing::default();
        self.runtime
            .block_on(self.ask_async(namespace, spec, timeout, &pacing))
    }

    /// [`Cluster::ask`], for several requests in flight at once on this cluster's runtime.
    /// A `RateLimited` answer (the namespace asked too often) is asked again, a little
    /// later each time, until `timeout`; `pacing`, shared by the requests in flight,
    /// holds every one of them back for that pause, so a throttled run slows down as a
    /// whole instead of each request spending more of the limit to be refused again.
    pub async fn ask_async(
        &self,
        namespace: &str,
        spec: kseal_core::resource::SealedSecretRequestSpec,
        timeout: std::time::Duration,
        pacing: &Pacing,
    ) -> Result<kseal_core::resource::SealedSecretRequestStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            pacing.wait().await;
            let answer = self.ask_once(namespace, spec.clone(), timeout).await?;
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

    async fn ask_once(
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
        let created = api
            .create(&PostParams::default(), &request)
            .await
            .map_err(|e| {
                anyhow!(
                    "creating a SealedSecretRequest in {namespace}: {}",
                    self.describe(&e)
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
                        self.describe(&e)
                    ));
                }
            }
        };
        let _ = api.delete(&name, &DeleteParams::default()).await;
        answer
    }
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

impl Cluster {
    /// The namespace kseal-controller runs in.
    pub fn controller_namespace(&self) -> &str {
        &self.controller_namespace
    }

    /// One line for a failed request: the server's message and code, or, when the
    /// apiserver was not reached, its address and the root cause (not a debug dump).
    pub fn describe(&self, e: &kube::Error) -> String {
        match e {
            kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
            other => {
                let mut cause: &dyn std::error::Error = other;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                format!("cannot reach {}: {cause}", self.config.cluster_url)
            }
        }
    }
}
