//! The binaries the harness built: the control plane, Helm, Go age, the kstatus
//! checker and Argo CD's Lua health checks.

use super::*;

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

/// One object's health as kstatus computes it (`sigs.k8s.io/cli-utils`
/// `status.Compute`, the library Flux uses), or as an Argo CD Lua health check assesses it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    /// kstatus: `InProgress`, `Failed`, `Current`, `Terminating`, `NotFound` or
    /// `Unknown`; Argo CD: `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`
    /// or `Unknown`.
    pub status: String,
    pub message: String,
}

/// Runs the real kstatus library on `objects` (JSON: one object, or a List as
/// `kubectl get -o json` prints it).
pub fn kstatus(objects: &str) -> Result<Vec<Health>, Error> {
    verdicts(&["kstatus"], objects)
}

/// Runs the Argo CD health check `script` (Lua) on `objects` (JSON or YAML: one object,
/// or a List) in gopher-lua, as Argo CD's controller does: with only the libraries Argo
/// CD gives a check from `argocd-cm`, or every one for a check Argo CD ships (`builtin`).
/// A script error is an `Err`.
pub fn argocd_health(script: &Path, builtin: bool, objects: &str) -> Result<Vec<Health>, Error> {
    let script = script.to_str().ok_or("a script path that is not UTF-8")?;
    let mut args = vec!["argocd-health", "-script", script];
    if builtin {
        args.push("-builtin");
    }
    verdicts(&args, objects)
}

/// The health check Argo CD ships for Bitnami's `bitnami.com/SealedSecret`, with Argo
/// CD's own test cases for it (`health_test.yaml`, `testdata/`): the directory
/// `resource_customizations/bitnami.com/SealedSecret` of the pinned argo-cd module.
pub fn argocd_bitnami_check() -> Result<PathBuf, Error> {
    Ok(built()?.join("argocd/bitnami.com/SealedSecret"))
}

/// `kseal-cluster ARGS` with `objects` on stdin: one verdict per line of its output.
fn verdicts(args: &[&str], objects: &str) -> Result<Vec<Health>, Error> {
    use std::io::Write;
    let mut child = Command::new(binary()?)
        .args(args)
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
