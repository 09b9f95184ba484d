//! A real etcd (the control plane's, built from `tests/cluster/go.mod`) for the at-rest
//! scan tests and benchmark: started on free loopback ports in a temporary data
//! directory, stopped when dropped.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:<port>`, or `https://…` when started with TLS.
    pub endpoint: String,
    /// With TLS: the CA, and a client certificate and key it accepts (PEM files).
    pub tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
}

/// PEM files for a TLS etcd, as kubeadm lays them out.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written to `dir`.
fn write_certs(dir: &std::path::Path) -> Result<(TlsFiles, PathBuf, PathBuf)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "etcd-ca");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-etcd-client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca)?;
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        client_cert: dir.join("apiserver-etcd-client.crt"),
        client_key: dir.join("apiserver-etcd-client.key"),
    };
    std::fs::write(&files.ca, ca.pem())?;
    std::fs::write(&files.client_cert, client_cert.pem())?;
    std::fs::write(&files.client_key, client_key.serialize_pem())?;
    let (server_crt, server_key_path) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&server_crt, server_cert.pem())?;
    std::fs::write(&server_key_path, server_key.serialize_pem())?;
    Ok((files, server_crt, server_key_path))
}

/// etcd: `$KSEAL_ETCD`, else the etcd of the real control plane's build (`kseal-cluster
/// etcd`, from `tests/cluster/go.mod`).
fn command() -> Result<Command> {
    if let Some(etcd) = std::env::var_os("KSEAL_ETCD") {
        return Ok(Command::new(PathBuf::from(etcd)));
    }
    let bin = crate::cluster::binary().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut command = Command::new(bin);
    command.arg("etcd");
    Ok(command)
}

impl Etcd {
    /// Starts etcd and waits until it answers. Fails (never skips) when etcd is missing.
    pub fn start() -> Result<Etcd> {
        Self::start_with(false)
    }

    /// Starts etcd serving clients over TLS with client-certificate authentication, as
    /// kubeadm runs it.
    pub fn start_tls() -> Result<Etcd> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let (client, peer) = (crate::ports::free_port()?, crate::ports::free_port()?);
        let scheme = if tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let mut tls_args = Vec::new();
        let tls_files = if tls {
            let (files, crt, key) = write_certs(dir.path())?;
            tls_args = vec![
                format!("--cert-file={}", crt.display()),
                format!("--key-file={}", key.display()),
                format!("--trusted-ca-file={}", files.ca.display()),
                "--client-cert-auth".to_owned(),
            ];
            Some(files)
        } else {
            None
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = command()?
            .arg("--name=kseal-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=kseal-test={peer_url}"))
            .arg("--quota-backend-bytes=8589934592")
            .arg("--log-level=error")
            .args(&tls_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run etcd")?;
        let mut etcd = Etcd {
            child,
            endpoint,
            tls: tls_files,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = etcd.child.try_wait()? {
                let log =
                    std::fs::read_to_string(etcd._dir.path().join("etcd.log")).unwrap_or_default();
                bail!("etcd exited with {status}: {log}");
            }
            let listening = std::net::TcpStream::connect(("127.0.0.1", client)).is_ok();
            // Over TLS the listening port is the readiness signal (a single member elects
            // itself at once); over plain HTTP, /health also says a leader exists.
            let health = listening && (tls || ureq_health(&etcd.endpoint));
            if health {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// etcd's `/health` answers `{"health":"true"}` once it has a leader.
fn ureq_health(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .and_then(|addr| crate::health::get(addr, "/health"))
        .is_some_and(|body| body.contains("\"health\":\"true\""))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
