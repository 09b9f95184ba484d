//! The real Flux on the real control plane: `source-controller` and
//! `kustomize-controller` (v1.9.6, built by `tests/cluster/build.sh` from
//! `tests/cluster/flux/go.mod`), and a Git repository they clone over smart HTTP from
//! Git's own server, `git http-backend`, served on loopback by `kseal-cluster git-server`.
//! Tests commit and push to it with the `git` command, as a person would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cluster::{Error, binary, built};

/// The directory holding Flux's CRDs (`GitRepository`, `Kustomization` and the other
/// sources), from the same module versions as the controllers.
pub fn crds() -> Result<PathBuf, Error> {
    Ok(built()?.join("flux-crds"))
}

/// A child process killed when its handle drops, and when the test process dies
/// (`setpriv --pdeathsig`): a failed test leaves nothing running.
struct Process(Child);

impl Process {
    fn spawn(
        program: &Path,
        args: &[String],
        env: &[(&str, &Path)],
        log: &Path,
    ) -> Result<Process, Error> {
        let out = std::fs::File::create(log)?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (name, value) in env {
            command.env(name, value);
        }
        Ok(Process(command.spawn()?))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Git's smart HTTP server over the bare repositories in one directory.
pub struct GitServer {
    _process: Process,
    root: PathBuf,
    work: PathBuf,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl GitServer {
    /// Starts serving `dir/repositories` (its log is `dir/git-server.log`), and waits
    /// until it answers.
    pub fn start(dir: &Path) -> Result<GitServer, Error> {
        let root = dir.join("repositories");
        let work = dir.join("work");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&work)?;
        let port = crate::ports::free_port()?;
        let process = Process::spawn(
            &binary()?,
            &[
                "git-server".into(),
                format!("-root={}", root.display()),
                format!("-listen=127.0.0.1:{port}"),
            ],
            &[],
            &dir.join("git-server.log"),
        )?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("the Git server did not listen on port {port}").into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(GitServer {
            _process: process,
            root,
            work,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// A new empty repository `name` on the server, with a working copy to commit in.
    pub fn repository(&self, name: &str) -> Result<Repository, Error> {
        let bare = self.root.join(format!("{name}.git"));
        git(
            &self.root,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                path(&bare)?,
            ],
        )?;
        // Pushes over HTTP: no user authenticates on loopback.
        git(&bare, &["config", "http.receivepack", "true"])?;
        let url = format!("{}/{name}.git", self.url);
        let work = self.work.join(name);
        git(&self.work, &["clone", "--quiet", &url, path(&work)?])?;
        for (key, value) in [
            ("user.name", "kseal tests"),
            ("user.email", "tests@kseal.invalid"),
        ] {
            git(&work, &["config", key, value])?;
        }
        git(&work, &["checkout", "--quiet", "-b", "main"])?;
        Ok(Repository { work, url })
    }
}

/// A repository on the [`GitServer`] and a working copy of it.
pub struct Repository {
    work: PathBuf,
    /// What a `GitRepository` names: `http://127.0.0.1:<port>/<name>.git`
    pub url: String,
}

impl Repository {
    /// The working copy.
    pub fn dir(&self) -> &Path {
        &self.work
    }

    /// The working copy's path of `file`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.work.join(file)
    }

    /// Writes `file` (its directories made) in the working copy.
    pub fn write(&self, file: &str, contents: &str) -> Result<(), Error> {
        let path = self.path(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)?;
        Ok(())
    }

    /// Removes `file` from the working copy.
    pub fn remove(&self, file: &str) -> Result<(), Error> {
        std::fs::remove_file(self.path(file))?;
        Ok(())
    }

    /// Commits everything in the working copy and pushes it to the server's `main`;
    /// returns the commit's hash.
    pub fn commit(&self, message: &str) -> Result<String, Error> {
        git(&self.work, &["add", "--all"])?;
        git(&self.work, &["commit", "--quiet", "--message", message])?;
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"])?;
        Ok(git(&self.work, &["rev-parse", "HEAD"])?.trim().to_owned())
    }
}

fn path(p: &Path) -> Result<&str, Error> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()).into())
}

/// `git ARGS` in `dir`: its stdout, or an error with its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Flux's source-controller and kustomize-controller, running with a kubeconfig (no
/// leader election, no notification-controller). The CRDs must be installed first.
pub struct Flux {
    /// Each controller's name and process.
    controllers: Vec<(&'static str, Process)>,
    dir: PathBuf,
}

/// Whether `GET /readyz` on 127.0.0.1:`port` answers 200.
fn ready(port: u16) -> bool {
    crate::health::get(&format!("127.0.0.1:{port}"), "/readyz").is_some_and(|answer| {
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    })
}

impl Flux {
    /// Starts both controllers against the cluster `kubeconfig` names, with their
    /// artifacts, metrics and health endpoints on free loopback ports and their logs in
    /// `dir`, and returns once both are ready. `namespace` is their own
    /// (`RUNTIME_NAMESPACE`).
    pub fn start(kubeconfig: &Path, namespace: &str, dir: &Path) -> Result<Flux, Error> {
        let (artifacts, tmp) = (dir.join("artifacts"), dir.join("tmp"));
        std::fs::create_dir_all(&artifacts)?;
        std::fs::create_dir_all(&tmp)?;
        let runtime_namespace = PathBuf::from(namespace);
        let env = [
            ("KUBECONFIG", kubeconfig),
            ("RUNTIME_NAMESPACE", runtime_namespace.as_path()),
            // A temporary directory of their own: kustomize-controller deletes every
            // `kustomization-*` directory in its TMPDIR when it starts (a previous
            // process's leftovers), which in a shared /tmp are the builds of the Flux
            // of a test running beside this one.
            ("TMPDIR", tmp.as_path()),
        ];
        let storage = crate::ports::free_port()?;
        let controllers: [(&'static str, Vec<String>); 2] = [
            (
                "source-controller",
                vec![
                    format!("--storage-path={}", artifacts.display()),
                    format!("--storage-addr=127.0.0.1:{storage}"),
                    format!("--storage-adv-addr=127.0.0.1:{storage}"),
                ],
            ),
            (
                "kustomize-controller",
                vec!["--no-remote-bases=true".to_owned()],
            ),
        ];
        let mut flux = Flux {
            controllers: Vec::new(),
            dir: dir.to_path_buf(),
        };
        let mut health = Vec::new();
        for (name, own) in controllers {
            let (metrics, port) = (crate::ports::free_port()?, crate::ports::free_port()?);
            let mut args = vec![
                format!("--metrics-addr=127.0.0.1:{metrics}"),
                format!("--health-addr=127.0.0.1:{port}"),
                "--enable-leader-election=false".to_owned(),
                // How soon a Kustomization looks again for a source not yet fetched
                // (30 s by default).
                "--requeue-dependency=2s".to_owned(),
                "--log-level=debug".to_owned(),
            ];
            args.extend(own);
            let log = dir.join(format!("{name}.log"));
            let process = Process::spawn(&built()?.join(name), &args, &env, &log)?;
            flux.controllers.push((name, process));
            health.push(port);
        }
        flux.wait_ready(&health)?;
        Ok(flux)
    }

    /// Waits until each controller's health endpoint (`ports`, in order) answers
    /// `/readyz`; an error names a controller that exited, with the logs.
    fn wait_ready(&mut self, ports: &[u16]) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for (i, port) in ports.iter().enumerate() {
            while !ready(*port) {
                let name = self.controllers[i].0;
                if let Some(status) = self.controllers[i].1.0.try_wait()? {
                    return Err(format!("{name} exited ({status}):\n{}", self.logs()).into());
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("{name} not ready within 60 s:\n{}", self.logs()).into());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Both controllers' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        self.controllers
            .iter()
            .map(|(c, _)| {
                let log =
                    std::fs::read_to_string(self.dir.join(format!("{c}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                format!(
                    "--- {c} (last lines)\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
