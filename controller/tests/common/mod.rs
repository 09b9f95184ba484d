//! An e2e "cluster": a real control plane (etcd, kube-apiserver, kube-controller-manager;
//! `kseal_tests::cluster`) with the manifests applied by kubectl, the real
//! `kseal-controller` binary running as its ServiceAccount with a token from the
//! TokenRequest API (so only the RBAC in `manifests/` applies), the real `kseal` CLI, and
//! helpers to wait for outcomes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kseal_core::resource::SealedSecret;
pub use kseal_tests::cluster::{ControlPlane, Credential, Options};
use kseal_tests::faults::FaultProxy;
use kube::Client;
use kube::api::{Api, ListParams};

/// Namespaces the tests put their objects in, created with the cluster.
const NAMESPACES: [&str; 6] = ["shop", "web", "load", "prod", "staging", "dev"];

/// How kseal is installed.
enum Install<'a> {
    /// `kubectl apply -k` of a kustomization.
    Kustomize(&'a Path),
    /// `helm install` of the chart, with `--set` values.
    Helm(&'a [&'a str]),
}

pub struct Cluster {
    pub plane: ControlPlane,
    /// Between the controller and the apiserver, when the test asked for faults.
    pub proxy: Option<FaultProxy>,
    pub dir: tempfile::TempDir,
    pub admin: Client,
    pub controllers: Vec<(String, Child, u16)>,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The kustomization docs/operations.md shows in the ```yaml block that names `needle`,
/// written as `overlay/kustomization.yaml` in a new directory beside a link to
/// `manifests/`, as the page places it. Apply `DIR/overlay`.
pub fn docs_overlay(needle: &str) -> tempfile::TempDir {
    let page = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let overlay = page
        .split("```yaml\n")
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("docs/operations.md shows a kustomization with {needle}"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("manifests"), dir.path().join("manifests")).unwrap();
    std::fs::create_dir(dir.path().join("overlay")).unwrap();
    std::fs::write(dir.path().join("overlay/kustomization.yaml"), overlay).unwrap();
    dir
}

/// The `kseal` CLI, built beside this crate's binary by a workspace build.
pub fn kseal_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_kseal-controller")).with_file_name("kseal");
    assert!(
        path.exists(),
        "{} missing: build the workspace (cargo nextest run --workspace builds it)",
        path.display()
    );
    path
}

impl Cluster {
    pub async fn new() -> Cluster {
        Self::with_manifests(&repo().join("manifests")).await
    }

    /// A cluster with the kustomization at `manifests` applied instead of the repository's.
    pub async fn with_manifests(manifests: &Path) -> Cluster {
        Self::build(Install::Kustomize(manifests), Options::default(), false).await
    }

    /// A cluster installed with `helm install` of `manifests/helm/kseal` (real Helm v4),
    /// with `--set` values.
    pub async fn with_helm(set: &[&str]) -> Cluster {
        Self::build(Install::Helm(set), Options::default(), false).await
    }

    /// A cluster on a control plane started with `options`.
    pub async fn with_options(options: Options) -> Cluster {
        Self::build(
            Install::Kustomize(&repo().join("manifests")),
            options,
            false,
        )
        .await
    }

    /// A cluster whose controllers reach the apiserver through a [`FaultProxy`].
    pub async fn with_fault_proxy(options: Options) -> Cluster {
        Self::build(Install::Kustomize(&repo().join("manifests")), options, true).await
    }

    async fn build(install: Install<'_>, mut options: Options, proxied: bool) -> Cluster {
        // kube-controller-manager starts once the CRDs exist, so that its garbage
        // collector watches SealedSecrets from the start.
        let controller_manager = std::mem::replace(&mut options.controller_manager, false);
        let plane = ControlPlane::start(options).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        plane
            .write_kubeconfig(&dir.path().join("admin"), &plane.admin, "default")
            .unwrap();
        let admin = plane.client(&plane.admin).await.unwrap();
        let proxy = match proxied {
            true => Some(FaultProxy::start(&plane).await.unwrap()),
            false => None,
        };
        let cluster = Cluster {
            plane,
            proxy,
            dir,
            admin,
            controllers: Vec::new(),
        };
        match install {
            Install::Kustomize(manifests) => {
                cluster
                    .kubectl(&["apply", "-k", manifests.to_str().unwrap()])
                    .await;
            }
            Install::Helm(set) => cluster.helm_install(set).await,
        }
        for ns in NAMESPACES {
            cluster.kubectl(&["create", "namespace", ns]).await;
        }
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=established",
                "crd/sealedsecrets.kseal.dev",
                "crd/sealedsecretrequests.kseal.dev",
            ])
            .await;
        if controller_manager {
            cluster.plane.start_controller_manager().unwrap();
        }
        // The controller's identity: a real ServiceAccount token, through the proxy when
        // there is one.
        let token = cluster
            .plane
            .service_account("kseal-system", "kseal-controller")
            .await
            .unwrap();
        let kubeconfig = match &cluster.proxy {
            Some(proxy) => proxy.kubeconfig(&cluster.plane, &token, "kseal-system"),
            None => cluster.plane.kubeconfig(&token, "kseal-system"),
        };
        std::fs::write(cluster.path("controller"), kubeconfig).unwrap();
        cluster
    }

    /// `helm install kseal manifests/helm/kseal`, as docs/operations.md has it (the chart
    /// creates `kseal-system`; the release record lives in `default`), as the admin.
    pub async fn helm_install(&self, set: &[&str]) {
        let chart = repo().join("manifests/helm/kseal");
        let mut c = Command::new(kseal_tests::cluster::helm().unwrap());
        c.args(["install", "kseal", chart.to_str().unwrap()])
            .args(set.iter().flat_map(|s| ["--set", s]))
            .env("KUBECONFIG", self.path("admin"))
            .env("HELM_CACHE_HOME", self.path("helm/cache"))
            .env("HELM_CONFIG_HOME", self.path("helm/config"))
            .env("HELM_DATA_HOME", self.path("helm/data"));
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "helm install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn kubectl(&self, args: &[&str]) -> String {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", self.path("admin"))
            .env("KUBECACHEDIR", self.path("cache"));
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A kubeconfig for the controller's ServiceAccount.
    pub fn controller_kubeconfig(&self) -> PathBuf {
        self.path("controller")
    }

    pub fn start_controller(&mut self, identity: &str) -> u16 {
        self.start_controller_with(identity, &[])
    }

    /// Starts a replica with extra flags.
    pub fn start_controller_with(&mut self, identity: &str, extra: &[&str]) -> u16 {
        self.start_controller_env(identity, extra, &[])
    }

    /// Starts a replica with extra flags and environment variables.
    pub fn start_controller_env(
        &mut self,
        identity: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> u16 {
        let kubeconfig = self.controller_kubeconfig();
        let (port, metrics) = (
            kseal_tests::ports::free_port().unwrap(),
            kseal_tests::ports::free_port().unwrap(),
        );
        let log = std::fs::File::create(self.path(&format!("{identity}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--identity",
                identity,
                "--lease-duration",
                "3s",
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ])
            .args([
                "--listen-addr",
                &format!("127.0.0.1:{port}"),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics}"),
            ])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.controllers.push((identity.to_owned(), child, metrics));
        port
    }

    pub fn stop_controller(&mut self, identity: &str) {
        if let Some(i) = self
            .controllers
            .iter()
            .position(|(id, _, _)| id == identity)
        {
            let (_, mut child, _) = self.controllers.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    /// The published recipients document, written to a file for `kseal seal --cert`.
    pub async fn recipients(&self) -> PathBuf {
        match self.recipients_or_none(Duration::from_secs(30)).await {
            Some(path) => path,
            None => panic!("timed out waiting for the recipients ConfigMap"),
        }
    }

    /// The published recipients document, written to a file, if it appears in time.
    pub async fn recipients_or_none(&self, within: Duration) -> Option<PathBuf> {
        let api: Api<ConfigMap> = Api::namespaced(self.admin.clone(), "kseal-system");
        let until = Instant::now() + within;
        while Instant::now() < until {
            let doc = api
                .get_opt("kseal-recipients")
                .await
                .ok()
                .flatten()
                .and_then(|cm| cm.data?.get("recipients.json").cloned());
            if let Some(doc) = doc {
                let path = self.path("recipients.json");
                std::fs::write(&path, doc).unwrap();
                return Some(path);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The published recipients document, parsed.
    pub async fn document(&self) -> kseal_core::recipients::RecipientsDocument {
        let api: Api<ConfigMap> = Api::namespaced(self.admin.clone(), "kseal-system");
        let cm = api.get("kseal-recipients").await.unwrap();
        serde_json::from_str(&cm.data.unwrap()["recipients.json"]).unwrap()
    }

    /// kubectl as someone else, without checking the result.
    /// The backup of the cluster's keys that docs/operations.md tells users to make: a
    /// List of the key Secrets, as `format` (`yaml` or `json`), written to `file` in the
    /// test's directory.
    pub async fn back_up_keys(&self, format: &str, file: &str) -> PathBuf {
        let backup = self
            .kubectl(&[
                "get",
                "secret",
                "-n",
                "kseal-system",
                "-l",
                "kseal.dev/key",
                "-o",
                format,
            ])
            .await;
        let path = self.path(file);
        std::fs::write(&path, backup).unwrap();
        path
    }

    pub async fn kubectl_as(&self, who: &Credential, args: &[&str]) -> Output {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kubeconfig = self.path(&format!("as-{n}"));
        self.plane
            .write_kubeconfig(&kubeconfig, who, "default")
            .unwrap();
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBECACHEDIR", self.path("cache"));
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    /// `kseal-controller rotate-key` with a kubeconfig (the controller's by default), as a
    /// CronJob runs it.
    pub fn rotate_key(&self, kubeconfig: Option<&Path>) -> Output {
        let kubeconfig = kubeconfig.map_or_else(|| self.controller_kubeconfig(), Path::to_path_buf);
        Command::new(env!("CARGO_BIN_EXE_kseal-controller"))
            .args(["rotate-key", "--kubeconfig", kubeconfig.to_str().unwrap()])
            // What a shell that uses the CLI exports (its namespace for Secrets): the
            // controller's own namespace is KSEAL_CONTROLLER_NAMESPACE, never this.
            .env("KSEAL_NAMESPACE", "shop")
            .output()
            .unwrap()
    }

    /// The rotation CronJob's identity (`components/key-rotation`, applied here): a
    /// kubeconfig for its ServiceAccount, and the token in it.
    pub async fn rotation_job_kubeconfig(&self) -> (PathBuf, Credential) {
        let rbac = repo().join("manifests/components/key-rotation/rbac.yaml");
        self.kubectl(&["apply", "-f", rbac.to_str().unwrap()]).await;
        let token = self
            .plane
            .service_account("kseal-system", "kseal-rotate-key")
            .await
            .unwrap();
        let kubeconfig = self.path("rotate-key");
        self.plane
            .write_kubeconfig(&kubeconfig, &token, "kseal-system")
            .unwrap();
        (kubeconfig, token)
    }

    /// The highest resident memory one replica has had (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self, identity: &str) -> u64 {
        let (_, child, _) = self
            .controllers
            .iter()
            .find(|(id, _, _)| id == identity)
            .unwrap();
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Seals `ns/name` with `items` to the recipients document `cert` with the CLI, into
    /// `<name>.yaml`, and applies it with kubectl.
    pub async fn seal_and_apply(&self, cert: &Path, ns: &str, name: &str, items: &[(&str, &str)]) {
        let input = secret_yaml(ns, name, items);
        let file = format!("{name}.yaml");
        self.kseal(
            &["seal", "--cert", cert.to_str().unwrap(), "-w", &file],
            input.as_bytes(),
        );
        self.kubectl(&["apply", "-f", self.path(&file).to_str().unwrap()])
            .await;
    }

    /// Seals `ns`/`name` (one item, `password`) to a fresh key this cluster never held,
    /// into `{name}.yaml` in the test's directory (not applied).
    pub fn seal_to_stranger(&self, ns: &str, name: &str, password: &str) {
        let stranger = self.kseal(&["keygen", "-o", &format!("{name}-stranger-key.txt")], b"");
        let recipient = String::from_utf8_lossy(&stranger.stdout).trim().to_owned();
        let input = secret_yaml(ns, name, &[("password", password)]);
        let file = format!("{name}.yaml");
        self.kseal(&["seal", "-r", &recipient, "-w", &file], input.as_bytes());
    }

    /// Waits until a Secret labelled `selector` exists in `ns`.
    pub async fn wait_for_labelled_secret(&self, ns: &str, selector: &str) {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        wait_for(selector, || async {
            let l = api
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            (!l.items.is_empty()).then_some(())
        })
        .await;
    }

    pub fn kseal(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.kseal_unchecked(args, stdin);
        assert!(
            out.status.success(),
            "kseal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs kseal and returns its output whether it succeeded or not.
    pub fn kseal_unchecked(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.kseal_in(self.dir.path(), &[], args, stdin)
    }

    /// Runs kseal in `dir` with these environment variables, and returns its output
    /// whether it succeeded or not.
    pub fn kseal_in(
        &self,
        dir: &Path,
        env: &[(&str, &Path)],
        args: &[&str],
        stdin: &[u8],
    ) -> Output {
        use std::io::Write;
        let mut child = Command::new(kseal_bin())
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses before reading its input closes the pipe: its exit
        // status and stderr say why, not this write.
        if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        child.wait_with_output().unwrap()
    }

    /// Applies these files of the working directory with kubectl.
    pub async fn apply(&self, files: &[&str]) {
        for file in files {
            self.kubectl(&["apply", "-f", self.path(file).to_str().unwrap()])
                .await;
        }
    }

    /// The value of item `key` of Secret `ns/name`, once it is there.
    pub async fn secret_value(&self, ns: &str, name: &str, key: &str) -> String {
        let secrets = self.secrets(ns);
        wait_for("the Secret's item", || async {
            let s = secrets.get_opt(name).await.ok().flatten()?;
            let v = s.data?.get(key)?.0.clone();
            Some(String::from_utf8(v).unwrap())
        })
        .await
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub fn sealed(&self, ns: &str) -> Api<SealedSecret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    /// The Ready condition's (status, reason) once it reflects the object's generation.
    pub async fn ready(&self, ns: &str, name: &str) -> (String, String) {
        let api = self.sealed(ns);
        wait_for("a Ready condition", || async {
            let ss = api.get_opt(name).await.ok().flatten()?;
            let status = ss.status?;
            let c = status.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (c.observed_generation == ss.metadata.generation).then_some((c.status, c.reason))
        })
        .await
    }
}

impl Cluster {
    /// One replica's `/metrics` text.
    pub fn metrics(&self, identity: &str) -> String {
        let Some((_, _, port)) = self.controllers.iter().find(|(id, _, _)| id == identity) else {
            return String::new();
        };
        http_get(*port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// A gauge or counter from one replica's `/metrics`, if it is there.
    pub fn metric(&self, identity: &str, name: &str) -> Option<f64> {
        self.metrics(identity).lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
    }
}

/// The recipients document the controller published.
pub async fn document(cluster: &Cluster) -> kseal_core::recipients::RecipientsDocument {
    cluster.document().await
}

/// `kseal-controller rotate-key` with the controller's own credentials.
pub fn rotate_key(cluster: &Cluster) -> Output {
    cluster.rotate_key(None)
}

/// The replica holding the controller's leader Lease now, if any.
pub async fn lease_holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.admin.clone(), "kseal-system");
    leases
        .get_opt("kseal-controller-leader")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// How many key Secrets `kseal-system` holds (any `kseal.dev/key` label value).
pub async fn key_secrets(cluster: &Cluster) -> usize {
    let api: Api<Secret> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    api.list(&ListParams::default().labels("kseal.dev/key"))
        .await
        .unwrap()
        .items
        .len()
}

/// `GET path` on a local port: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// `POST path` on a local port with a JSON body: the status code and the body.
pub fn post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A sealed value (base64 of an age file) with `stanzas` X25519 stanzas of arbitrary
/// bytes: the security review's item-3 value (800 stanzas cost age 10 s to parse).
pub fn many_stanzas(stanzas: usize) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    // An X25519 share is any 32 bytes: a fixed xorshift stream will do.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = |n: usize| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect::<Vec<u8>>()
    };
    let mut file = b"age-encryption.org/v1\n".to_vec();
    for _ in 0..stanzas {
        let stanza = format!(
            "-> X25519 {}\n{}\n",
            b64.encode(random(32)),
            b64.encode(random(32))
        );
        file.extend_from_slice(stanza.as_bytes());
    }
    file.extend_from_slice(format!("--- {}\n", b64.encode(random(32))).as_bytes());
    file.extend_from_slice(&random(64));
    base64::engine::general_purpose::STANDARD.encode(file)
}

/// Waits until `GET path` on `port` answers `code`.
pub async fn wait_for_status(port: u16, path: &str, code: u16) {
    wait_for(&format!("{path} on :{port} to answer {code}"), || async {
        let got = tokio::task::spawn_blocking({
            let path = path.to_owned();
            move || http_get(port, &path)
        })
        .await
        .ok()
        .flatten()?;
        (got.0 == code).then_some(())
    })
    .await;
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.controllers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `f` every 100 ms for up to 30 s.
pub async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for_within(what, Duration::from_secs(30), f).await
}

/// Polls `f` every 100 ms for up to `limit`.
pub async fn wait_for_within<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn secret_yaml(ns: &str, name: &str, items: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: demo\ntype: kubernetes.io/basic-auth\nstringData:\n"
    );
    for (k, v) in items {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    s
}

/// A request that asks the controller to verify an empty SealedSecret `x` in `namespace`:
/// cheap to answer, and still counted by the controller's rate limit.
pub fn empty_verify_request(namespace: &str) -> kseal_core::resource::SealedSecretRequestSpec {
    use kseal_core::resource::{RequestOperation, RequestTarget, SealedSecretRequestSpec};
    SealedSecretRequestSpec {
        operation: RequestOperation::Verify,
        target: RequestTarget {
            namespace: namespace.into(),
            name: "x".into(),
        },
        sealed_secret: serde_json::from_value(serde_json::json!({"encryptedData": {}})).unwrap(),
    }
}
