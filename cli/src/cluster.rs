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
    pub(crate) client: kube::Client,
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
