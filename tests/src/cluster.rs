//! A real Kubernetes control plane for tests, started the way envtest starts one: etcd,
//! kube-apiserver and kube-controller-manager (garbage collection, namespaces,
//! ServiceAccounts and ClusterRole aggregation only) from `kseal-cluster`, the binary `tests/cluster/` builds from
//! pinned upstream Go modules. A throw-away CA signs the serving certificate and client
//! certificates for named users and groups; ServiceAccounts get real tokens from the
//! TokenRequest API; authorization is `Node,RBAC`. Every process runs in a private
//! directory and ends with the [`ControlPlane`] (or with the test process, however it
//! ends).

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_manager: true,
            apiserver_flags: Vec::new(),
            encryption_config: None,
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
}

/// The `kseal-cluster` binary: `KSEAL_CLUSTER_BIN`, or built (once per go.sum) by
/// `tests/cluster/build.sh`.
pub fn binary() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("KSEAL_CLUSTER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    Ok(built()?.join("kseal-cluster"))
}

/// Helm v4, built beside `kseal-cluster` from the same go.mod (`KSEAL_HELM` overrides).
pub fn helm() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("KSEAL_HELM") {
        return Ok(PathBuf::from(bin));
    }
    Ok(built()?.join("helm"))
}

/// Go age v1.3 (`age`, `age-keygen`), built beside `kseal-cluster` from
/// `tests/cluster/age/go.mod`: the directory holding both.
pub fn go_age_dir() -> Result<PathBuf, Error> {
    built()
}

/// The directory `tests/cluster/build.sh` builds into (it builds when it must).
pub(crate) fn built() -> Result<PathBuf, Error> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), out.status).into());
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The address this machine reaches others from (the default route's), which
/// kube-apiserver also advertises: an EndpointSlice may not hold a loopback address.
/// The serving certificate names it, for tests that bind an apiserver to it.
pub fn host_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the route.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn issuer(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
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
    /// `admin` and `view` from the roles labelled to join them). Its garbage collector learns of a new custom
    /// resource at its next discovery sync (every 30 s), so a test that installs CRDs and
    /// relies on garbage collection at once starts it after them.
    pub fn start_controller_manager(&self) -> Result<(), Error> {
        let kubeconfig = self.path("controller-manager.kubeconfig");
        self.write_kubeconfig(&kubeconfig, &self.admin, "default")?;
        let kcm = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller".to_owned(),
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

    /// Writes an apiserver's `EncryptionConfiguration` (`None`: no
    /// `--encryption-provider-config` at all) and sets the flag; starts the KMS plugin when
    /// the config names its socket. Takes effect when that apiserver next starts, or
    /// within a second when it runs with `--encryption-provider-config-automatic-reload`
    /// (the harness shortens the upstream minute: `KSEAL_ENCRYPTION_CONFIG_POLL`).
    pub async fn write_encryption_config(
        &self,
        apiserver: Component,
        config: Option<&str>,
    ) -> Result<(), Error> {
        let path = self.path(&format!("{}-encryption.yaml", apiserver.name()));
        let flag = format!("--encryption-provider-config={}", path.display());
        let socket = self.path("kms.sock");
        if let Some(config) = config {
            let config = config.replace("KMS_SOCKET", &socket.to_string_lossy());
            // Replaced whole: a reloading apiserver never reads half a file.
            let staged = path.with_extension("yaml.new");
            std::fs::write(&staged, &config)?;
            std::fs::rename(&staged, &path)?;
            if config.contains("unix://") && !self.running(Component::KmsPlugin) {
                self.spawn(Component::KmsPlugin, &binary()?)?;
                let started = Instant::now();
                while !socket.exists() {
                    if started.elapsed() > START_TIMEOUT {
                        return Err("the KMS plugin did not open its socket".into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, args)) = commands.iter_mut().find(|(c, _)| *c == apiserver) {
            args.retain(|a| !a.starts_with("--encryption-provider-config="));
            if config.is_some() {
                args.push(flag);
            }
        }
        Ok(())
    }

    /// Restarts the apiserver with a new `EncryptionConfiguration` (`None`: without one),
    /// as an administrator changing a static pod's manifest does.
    pub async fn set_encryption_config(&self, config: Option<&str>) -> Result<(), Error> {
        self.write_encryption_config(Component::ApiServer, config)
            .await?;
        self.restart(Component::ApiServer).await
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

    /// Steers the KMS v2 plugin: the key id it wraps new data keys under (a rotation, as
    /// a KMS admin's), and whether it answers at all. It reads this on every call; the
    /// apiservers see a change at their next status poll of the plugin (within a minute).
    pub fn set_kms(&self, key_id: &str, healthy: bool) -> Result<(), Error> {
        let path = self.path("kms.control");
        let staged = self.path("kms.control.new");
        std::fs::write(&staged, format!("key-id={key_id}\nhealthy={healthy}\n"))?;
        std::fs::rename(staged, path)?;
        Ok(())
    }

    /// Kills a component and starts it again.
    pub async fn restart(&self, component: Component) -> Result<(), Error> {
        self.kill(component);
        self.start_again(component).await
    }

    /// A serving certificate for `127.0.0.1` from the cluster's CA (certificate, key), for
    /// something clients should trust as they trust the apiserver.
    pub fn serving_certificate(&self) -> Result<(String, String), Error> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        Ok((params.signed_by(&key, &self.ca)?.pem(), key.serialize_pem()))
    }

    /// A client certificate for `name` in `groups`, signed by the cluster's CA.
    pub fn user(&self, name: &str, groups: &[&str]) -> Result<Credential, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(Credential::Certificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A token for the ServiceAccount `namespace/name` from the TokenRequest API (valid
    /// for a day), creating the ServiceAccount if it does not exist.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Credential, Error> {
        let admin = self.client(&self.admin).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let mut sa = ServiceAccount::default();
            sa.metadata.name = Some(name.to_owned());
            accounts.create(&PostParams::default(), &sa).await?;
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(86_400),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        let token = token
            .status
            .and_then(|s| s.token)
            .ok_or("TokenRequest answered without a token")?;
        Ok(Credential::Token(token))
    }

    /// A bearer token with cluster-admin rights (the ServiceAccount
    /// `kube-system/kseal-admin`), for clients whose requests pass through a proxy that
    /// ends TLS, where a client certificate cannot follow.
    pub async fn admin_token(&self) -> Result<Credential, Error> {
        let token = self.service_account("kube-system", "kseal-admin").await?;
        self.bind_cluster_admin("kube-system", "kseal-admin")
            .await?;
        Ok(token)
    }

    /// Binds the ServiceAccount `namespace/name` to cluster-admin (a ClusterRoleBinding
    /// named after it), once.
    pub async fn bind_cluster_admin(&self, namespace: &str, name: &str) -> Result<(), Error> {
        use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client(&self.admin).await?);
        if bindings.get_opt(name).await?.is_some() {
            return Ok(());
        }
        let mut binding = ClusterRoleBinding {
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "cluster-admin".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(namespace.into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        binding.metadata.name = Some(name.into());
        bindings.create(&PostParams::default(), &binding).await?;
        // The RBAC authorizer reads bindings from its own watch: a request right after
        // the create can still be refused (403). Wait until it answers as the binding says.
        self.wait_until_allowed(&format!("system:serviceaccount:{namespace}:{name}"))
            .await
    }

    /// Waits (up to 30 s) until the authorizer lets `user` create ConfigMaps anywhere, as
    /// a SubjectAccessReview answers.
    async fn wait_until_allowed(&self, user: &str) -> Result<(), Error> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client(&self.admin).await?);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("configmaps".into()),
                    namespace: Some("default".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = reviews.create(&PostParams::default(), &review).await?;
            if answer.status.is_some_and(|s| s.allowed) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{user}: still not allowed 30 s after its binding").into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A kubeconfig for `credential` with `namespace` as its default.
    pub fn kubeconfig(&self, credential: &Credential, namespace: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user = match credential {
            Credential::Token(token) => format!("    token: {token}\n"),
            Credential::Certificate { cert_pem, key_pem } => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kseal-test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: kseal-test\n  user:\n{user}contexts:\n- name: kseal-test\n  context:\n    cluster: kseal-test\n    user: kseal-test\n    namespace: {namespace}\ncurrent-context: kseal-test\n",
            url = self.url,
            ca = b64(&self.ca_pem),
        )
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`, readable by its owner only.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        credential: &Credential,
        namespace: &str,
    ) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(self.kubeconfig(credential, namespace).as_bytes())
    }

    /// A kube-rs client for `credential`.
    pub async fn client(&self, credential: &Credential) -> Result<Client, Error> {
        self.client_at(&self.url, credential).await
    }

    /// A kube-rs client for `credential` to the apiserver at `url`.
    pub async fn client_at(&self, url: &str, credential: &Credential) -> Result<Client, Error> {
        let kubeconfig = self
            .kubeconfig(credential, "default")
            .replacen(&self.url, url, 1);
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// A client to etcd.
    pub async fn etcd(&self) -> Result<kseal_etcd::Client, Error> {
        Ok(kseal_etcd::Client::connect(&[&self.etcd_url], Default::default()).await?)
    }

    /// The bytes etcd holds for a Secret, as the apiserver stored them (`None` when
    /// there is no such key).
    pub async fn stored_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        let range = kseal_etcd::Range {
            key: format!("/registry/secrets/{namespace}/{name}").into_bytes(),
            range_end: Vec::new(),
            limit: 1,
            revision: 0,
        };
        let mut found = self.etcd().await?.range(range).await?;
        Ok(found.kvs.pop().map(|kv| kv.value))
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

/// One object's health as kstatus computes it (`sigs.k8s.io/cli-utils`
/// `status.Compute`, the library Flux and Argo CD use).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct KstatusVerdict {
    pub namespace: String,
    pub name: String,
    /// `InProgress`, `Failed`, `Current`, `Terminating`, `NotFound` or `Unknown`.
    pub status: String,
    pub message: String,
}

/// Runs the real kstatus library on `objects` (JSON: one object, or a List as
/// `kubectl get -o json` prints it).
pub fn kstatus(objects: &str) -> Result<Vec<KstatusVerdict>, Error> {
    use std::io::Write;
    let mut child = Command::new(binary()?)
        .arg("kstatus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(objects.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}
