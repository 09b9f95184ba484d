//! A real Kubernetes control plane for tests, started the way envtest starts one: etcd,
//! kube-apiserver and kube-controller-manager (garbage collection, namespaces,
//! ServiceAccounts and ClusterRole aggregation only) from `kseal-cluster`, the binary `tests/cluster/` builds from
//! pinned upstream Go modules. A throw-away CA signs the serving certificate and client
//! certificates for named users and groups; ServiceAccounts get real tokens from the
//! TokenRequest API; authorization is `Node,RBAC`. Every process runs in a private
//! directory and ends with the [`ControlPlane`] (or with the test process, however it
//! ends).
//!
//! The parts: this module starts, stops and restarts the processes; [`pki`] issues
//! certificates; [`access`] makes credentials, kubeconfigs and clients and waits for RBAC
//! to take effect; [`encryption`] configures encryption at rest and the KMS plugin, and
//! reads what etcd holds; [`tools`] finds the binaries the harness built.

mod access;
mod encryption;
mod pki;
mod tools;

use pki::issuer;
pub(crate) use tools::built;
pub use tools::{
    Health, argocd_bitnami_check, argocd_health, binary, go_age_dir, helm, host_ip, kstatus,
};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the control plane may take to come up on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start a control plane.
#[derive(Clone, Debug)]
pub struct Options {
    /// Runs kube-controller-manager (garbage collection, namespace deletion, default
    /// ServiceAccounts).
    pub controller_manager: bool,
    /// Extra kube-apiserver flags, after the harness's own (a later flag wins).
    pub apiserver_flags: Vec<String>,
    /// An `EncryptionConfiguration` for `--encryption-provider-config`. Write a KMS
    /// provider's endpoint as `unix://KMS_SOCKET`: the harness runs a KMS v2 plugin there.
    pub encryption_config: Option<String>,
    /// kube-controller-manager also runs the Deployment and ReplicaSet controllers, so a
    /// Deployment gets the status kstatus reads. (No scheduler or kubelet runs: a pod
    /// stays Pending.)
    pub workloads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_manager: true,
            apiserver_flags: Vec::new(),
            encryption_config: None,
            workloads: false,
        }
    }
}

/// How a client authenticates: a bearer token or a client certificate.
#[derive(Clone)]
pub enum Credential {
    Token(String),
    Certificate { cert_pem: String, key_pem: String },
}

/// One of the control plane's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    /// The first apiserver, the one [`ControlPlane::url`] addresses.
    ApiServer,
    /// Another apiserver over the same etcd ([`ControlPlane::add_apiserver`]), by index
    /// from 1.
    PeerApiServer(usize),
    ControllerManager,
    KmsPlugin,
}

impl Component {
    /// The `kseal-cluster` subcommand that runs it.
    fn command(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer | Component::PeerApiServer(_) => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::KmsPlugin => "kms-plugin",
        }
    }

    fn name(self) -> String {
        match self {
            Component::PeerApiServer(i) => format!("kube-apiserver-{i}"),
            other => other.command().to_owned(),
        }
    }

    fn is_apiserver(self) -> bool {
        matches!(self, Component::ApiServer | Component::PeerApiServer(_))
    }
}

/// A running control plane. Dropping it stops every process and removes its files.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    pub port: u16,
    /// The CA that signs the serving certificate and every client certificate.
    pub ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// `kseal-admin` in `system:masters`.
    pub admin: Credential,
    /// `http://127.0.0.1:<port>`: etcd's client URL.
    pub etcd_url: String,
    commands: Mutex<Vec<(Component, Vec<String>)>>,
    children: Mutex<Vec<(Component, Child)>>,
    /// [`Options::workloads`]
    workloads: bool,
}

impl ControlPlane {
    pub async fn start(options: Options) -> Result<ControlPlane, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("kseal-cluster-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let file = |name: &str| root.join(name).to_string_lossy().into_owned();
        let ca = issuer("kseal test cluster CA")?;
        std::fs::write(file("ca.crt"), ca.pem())?;

        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(host_ip().map(|ip| ip.to_string()));
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        std::fs::write(
            file("apiserver.crt"),
            serving.signed_by(&serving_key, &ca)?.pem(),
        )?;
        std::fs::write(file("apiserver.key"), serving_key.serialize_pem())?;
        let sa_key = KeyPair::generate()?;
        std::fs::write(file("sa.key"), sa_key.serialize_pem())?;
        std::fs::write(file("sa.pub"), sa_key.public_key_pem())?;

        let (port, etcd_port, peer_port) = (
            crate::ports::free_port()?,
            crate::ports::free_port()?,
            crate::ports::free_port()?,
        );
        let url = format!("https://127.0.0.1:{port}");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = vec![
            "--name=default".to_owned(),
            format!("--data-dir={}", file("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let mut apiserver = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            "--v=1".to_owned(),
        ];
        apiserver.extend(options.apiserver_flags.iter().cloned());

        let mut plane = ControlPlane {
            url,
            port,
            ca_pem: ca.pem(),
            admin: Credential::Token(String::new()),
            ca,
            etcd_url,
            commands: Mutex::new(vec![
                (Component::Etcd, etcd),
                (Component::ApiServer, apiserver),
                (
                    Component::KmsPlugin,
                    vec![
                        format!("--socket={}", file("kms.sock")),
                        format!("--key-file={}", file("kms.key")),
                        format!("--control={}", file("kms.control")),
                    ],
                ),
            ]),
            children: Mutex::new(Vec::new()),
            workloads: options.workloads,
            dir,
        };
        plane.admin = plane.user("kseal-admin", &["system:masters"])?;
        plane.spawn(Component::Etcd, &bin)?;
        if let Some(config) = &options.encryption_config {
            plane
                .write_encryption_config(Component::ApiServer, Some(config))
                .await?;
        }
        plane.spawn(Component::ApiServer, &bin)?;
        plane.wait_ready(Component::ApiServer, &plane.url).await?;
        if options.controller_manager {
            plane.start_controller_manager()?;
        }
        Ok(plane)
    }

    /// Starts kube-controller-manager with the garbage collector, the namespace controller,
    /// the ServiceAccount controller and ClusterRole aggregation (which fills `edit`,
    /// `admin` and `view` from the roles labelled to join them), and with
    /// [`Options::workloads`] the Deployment and ReplicaSet controllers. Its garbage collector learns of a new custom
    /// resource at its next discovery sync (every 30 s), so a test that installs CRDs and
    /// relies on garbage collection at once starts it after them.
    pub fn start_controller_manager(&self) -> Result<(), Error> {
        let kubeconfig = self.path("controller-manager.kubeconfig");
        self.write_kubeconfig(&kubeconfig, &self.admin, "default")?;
        let mut controllers = "garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller".to_owned();
        if self.workloads {
            controllers.push_str(",deployment-controller,replicaset-controller");
        }
        let kcm = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--controllers={controllers}"),
            "--leader-elect=false".to_owned(),
            "--secure-port=0".to_owned(),
            "--v=1".to_owned(),
        ];
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Component::ControllerManager, kcm));
        self.spawn(Component::ControllerManager, &binary()?)
    }

    fn spawn(&self, component: Component, bin: &Path) -> Result<(), Error> {
        let args = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(c, _)| *c == component)
            .map(|(_, args)| args.clone())
            .ok_or("no such component")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{}.log", component.name())))?;
        let child = Command::new(bin)
            .arg(component.command())
            .args(args)
            .env("KSEAL_CLUSTER_PARENT", std::process::id().to_string())
            // An apiserver with --encryption-provider-config-automatic-reload reads a
            // changed file within a second (upstream: a minute).
            .env("KSEAL_ENCRYPTION_CONFIG_POLL", "1s")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((component, child));
        Ok(())
    }

    /// Starts another apiserver over the same etcd, with the first one's flags but its
    /// own port and `EncryptionConfiguration`; returns its component and URL. (Start the
    /// first with `--endpoint-reconciler-type=none` when several share one address.)
    pub async fn add_apiserver(
        &self,
        encryption_config: Option<&str>,
    ) -> Result<(Component, String), Error> {
        let port = crate::ports::free_port()?;
        let component = {
            let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let peers = commands.iter().filter(|(c, _)| c.is_apiserver()).count();
            let mut args = commands
                .iter()
                .find(|(c, _)| *c == Component::ApiServer)
                .map(|(_, a)| a.clone())
                .ok_or("no first apiserver")?;
            args.retain(|a| {
                !a.starts_with("--secure-port=") && !a.starts_with("--encryption-provider-config=")
            });
            args.push(format!("--secure-port={port}"));
            let component = Component::PeerApiServer(peers);
            commands.push((component, args));
            component
        };
        self.write_encryption_config(component, encryption_config)
            .await?;
        let url = format!("https://127.0.0.1:{port}");
        self.spawn(component, &binary()?)?;
        self.wait_ready(component, &url).await?;
        Ok((component, url))
    }

    fn running(&self, component: Component) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children
            .iter_mut()
            .any(|(c, child)| *c == component && matches!(child.try_wait(), Ok(None)))
    }

    /// A file in the control plane's private directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One component's log so far.
    pub fn log(&self, component: Component) -> String {
        std::fs::read_to_string(self.path(&format!("{}.log", component.name()))).unwrap_or_default()
    }

    /// Waits for `/readyz` and the `default` namespace, as Kubernetes' own test server
    /// does: by then RBAC's bootstrap roles exist.
    async fn wait_ready(&self, apiserver: Component, url: &str) -> Result<(), Error> {
        let admin = self.client_at(url, &self.admin).await?;
        let started = Instant::now();
        loop {
            let last: String;
            let readyz = http::Request::get("/readyz").body(Vec::new())?;
            match admin.request_text(readyz).await {
                Ok(_) => {
                    let namespaces: Api<Namespace> = Api::all(admin.clone());
                    match namespaces.get_opt("default").await {
                        Ok(Some(_)) => return Ok(()),
                        Ok(None) => last = "namespace default not there yet".into(),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if let Some(exited) = self.exited() {
                return Err(format!(
                    "{} exited while starting; its log ends:\n{}",
                    exited.name(),
                    tail(&self.log(exited))
                )
                .into());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "{} not ready in {START_TIMEOUT:?} ({last}); its log ends:\n{}",
                    apiserver.name(),
                    tail(&self.log(apiserver))
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A component that has exited, if one has.
    fn exited(&self) -> Option<Component> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children
            .iter_mut()
            .find_map(|(c, child)| matches!(child.try_wait(), Ok(Some(_))).then_some(*c))
    }

    /// Stops one component (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&self, component: Component) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain_mut(|(c, child)| {
            if *c == component {
                let _ = child.kill();
                let _ = child.wait();
                false
            } else {
                true
            }
        });
    }

    /// Starts a stopped component again with the same flags, port and data; for the
    /// apiserver, waits until it is ready.
    pub async fn start_again(&self, component: Component) -> Result<(), Error> {
        self.spawn(component, &binary()?)?;
        if component.is_apiserver() {
            let url = match component {
                Component::ApiServer => self.url.clone(),
                _ => {
                    let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
                    let port = commands
                        .iter()
                        .find(|(c, _)| *c == component)
                        .and_then(|(_, args)| {
                            args.iter().find_map(|a| a.strip_prefix("--secure-port="))
                        })
                        .ok_or("no port")?
                        .to_owned();
                    format!("https://127.0.0.1:{port}")
                }
            };
            self.wait_ready(component, &url).await?;
        }
        Ok(())
    }

    /// Kills a component and starts it again.
    pub async fn restart(&self, component: Component) -> Result<(), Error> {
        self.kill(component);
        self.start_again(component).await
    }
}

impl ControlPlane {
    /// Stops every process cleanly: SIGTERM, the controller-manager and apiserver first
    /// and etcd last, each given 10 s before it is killed.
    pub fn shutdown(&self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.sort_by_key(|(c, _)| *c == Component::Etcd);
        for (_, child) in children.iter_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        // The controller-manager and apiserver first, etcd last.
        children.sort_by_key(|(c, _)| *c == Component::Etcd);
        for (_, child) in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
