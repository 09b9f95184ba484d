//! The real Bitnami sealed-secrets v0.36.6 (controller and kubeseal), built by
//! `tests/cluster/build.sh` from `tests/cluster/bitnami/go.mod`, run beside kseal on the
//! real control plane.
//!
//! The Bitnami controller has no kubeconfig flag: it only reads the in-cluster
//! configuration, whose token and CA live at a fixed path. So each one runs in its own
//! mount namespace (`unshare --mount`, as root, which CI is), with its control plane's
//! ServiceAccount token and CA bind-mounted on that path: parallel tests, each with its
//! own control plane, never see each other's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cluster::{ControlPlane, Credential, Error, built};

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where the controller runs and keeps its keys (its default).
pub const NAMESPACE: &str = "kube-system";

/// `kubeseal` (`KSEAL_KUBESEAL` overrides).
pub fn kubeseal() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("KSEAL_KUBESEAL") {
        return Ok(PathBuf::from(bin));
    }
    Ok(built()?.join("kubeseal"))
}

/// The Bitnami controller binary.
pub fn controller() -> Result<PathBuf, Error> {
    Ok(built()?.join("sealed-secrets-controller"))
}

/// The Bitnami CRD (`bitnami.com_sealedsecrets.yaml` of the same module version).
pub fn crd() -> Result<PathBuf, Error> {
    Ok(built()?.join("bitnami.com_sealedsecrets.yaml"))
}

/// A running Bitnami controller.
pub struct BitnamiController {
    child: Child,
    /// Its HTTP API (`/v1/cert.pem`, `/healthz`) and its metrics, on 127.0.0.1.
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl BitnamiController {
    /// Starts the controller as the ServiceAccount `kube-system/sealed-secrets-controller`
    /// (bound to cluster-admin here; the Helm chart's RBAC is narrower) with its stock
    /// flags plus `extra`. `dir` holds its token, CA and log.
    pub async fn start(
        plane: &ControlPlane,
        dir: &Path,
        extra: &[&str],
    ) -> Result<BitnamiController, Error> {
        let Credential::Token(token) = plane
            .service_account(NAMESPACE, "sealed-secrets-controller")
            .await?
        else {
            return Err("a ServiceAccount credential is a token".into());
        };
        plane
            .bind_cluster_admin(NAMESPACE, "sealed-secrets-controller")
            .await?;
        let account = dir.join("serviceaccount");
        std::fs::create_dir_all(&account)?;
        std::fs::write(account.join("token"), token)?;
        std::fs::write(account.join("ca.crt"), &plane.ca_pem)?;
        std::fs::write(account.join("namespace"), NAMESPACE)?;
        std::fs::create_dir_all(SERVICE_ACCOUNT_DIR)?;
        let (port, metrics_port) = (crate::ports::free_port()?, crate::ports::free_port()?);
        let log = dir.join("bitnami.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("unshare")
            .args(["--mount", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(&account)
            .arg(SERVICE_ACCOUNT_DIR)
            .arg(controller()?)
            .args([
                format!("--listen-addr=127.0.0.1:{port}"),
                format!("--listen-metrics-addr=127.0.0.1:{metrics_port}"),
            ])
            .args(extra)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", plane.port.to_string())
            .env("POD_NAMESPACE", NAMESPACE)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(BitnamiController {
            child,
            port,
            metrics_port,
            log,
        })
    }

    /// The process id (for signals: SIGUSR1 makes a new key).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BitnamiController {
    fn drop(&mut self) {
        self.stop();
    }
}
