//! A real etcd (Debian's `etcd-server`) for the at-rest scan tests and benchmark: started
//! on free loopback ports in a temporary data directory, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The etcd binary: `$KSEAL_ETCD`, else `etcd` on the PATH.
fn binary() -> PathBuf {
    std::env::var_os("KSEAL_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl Etcd {
    /// Starts etcd and waits until it answers. Fails (never skips) when etcd is missing:
    /// `.ci/run` installs it (`apt-get install etcd-server`).
    pub fn start() -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(binary())
            .arg("--name=kseal-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=kseal-test={peer_url}"))
            .arg("--quota-backend-bytes=8589934592")
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (install Debian's etcd-server, or set KSEAL_ETCD)",
                    binary().display()
                )
            })?;
        let mut etcd = Etcd {
            child,
            endpoint,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = etcd.child.try_wait()? {
                let log =
                    std::fs::read_to_string(etcd._dir.path().join("etcd.log")).unwrap_or_default();
                bail!("etcd exited with {status}: {log}");
            }
            let health = std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
                && ureq_health(&etcd.endpoint);
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
    use std::io::{Read, Write};
    let Some(addr) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
