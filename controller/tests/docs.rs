//! The docs cannot drift from the CLI: every `kseal` and `kseal-controller` command line
//! in a `sh`/`console` code block of README.md and docs/*.md is extracted and run, in
//! document order, in a working directory per file, against a cluster (a real
//! kube-apiserver with the manifests applied and the real controller running) and its etcd.
//!
//! A line is run exactly as written, except where it names something only a real
//! cluster has (a kubeadm path, an `exec` into the pod, an elided `…` value): those are
//! mirrored by the table below, each with its reason. A line with `…` that is not
//! mirrored fails the test.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

/// (file, start of the line, expected exit code, why it is not 0).
/// None today: every documented command succeeds in the order the docs give.
const EXPECTED_FAILURES: &[(&str, &str, i32, &str)] = &[];

/// The command lines of a Markdown file's shell code blocks, continuation lines joined.
fn command_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_shell = None::<bool>;
    let mut pending = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_shell = match in_shell {
                Some(_) => None,
                None => Some(matches!(info.trim(), "sh" | "bash" | "console")),
            };
            continue;
        }
        if in_shell != Some(true) {
            continue;
        }
        let text = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        let joined = format!("{pending}{text}");
        if let Some(head) = joined.strip_suffix('\\') {
            pending = format!("{head} ");
            continue;
        }
        pending.clear();
        let runs_kseal = joined.split(['|', '&', ';', '(']).any(|part| {
            let p = part.trim_start();
            p.starts_with("kseal ") || p.starts_with("kseal-controller ")
        }) || joined.contains("-- kseal-controller ");
        if runs_kseal {
            out.push(joined);
        }
    }
    out
}

struct Env {
    cluster: Cluster,
    bin_dir: PathBuf,
    recipients_doc: PathBuf,
    /// The private key behind `recipients_doc` (a runbook rotates keys later on).
    cluster_identity: Vec<u8>,
    other_recipients: Vec<String>,
    /// The KMS v2 plugin's socket: the key-custody runbook's custodian.
    kms_socket: PathBuf,
}

impl Env {
    /// The line as the test runs it.
    fn mirror(&self, line: &str) -> String {
        if line.starts_with("kseal at-rest scan-etcd") {
            // The kubeadm etcd endpoint and client certificates → the test cluster's etcd
            // (plain HTTP on loopback); the rest of the line as written.
            let mut words = line.split_whitespace();
            let mut kept = Vec::new();
            while let Some(word) = words.next() {
                match word {
                    "--cacert" | "--cert" | "--key" => {
                        words.next();
                    }
                    "--endpoints" => {
                        words.next();
                        kept.push(format!("--endpoints {}", self.cluster.plane.etcd_url));
                    }
                    other => kept.push(other.replace("/etc/kubernetes/enc/enc.yaml", "enc.yaml")),
                }
            }
            return kept.join(" ");
        }
        if line.starts_with("kubectl -n kseal-system exec deploy/kseal-controller -- ") {
            // No pods run on the test server: run the same command with the controller's
            // ServiceAccount, as the pod would.
            let command = line.split(" -- ").nth(1).unwrap_or_default();
            return format!(
                "{command} --kubeconfig {}",
                self.cluster.controller_kubeconfig().display()
            );
        }
        line.replace("/etc/kubernetes/enc/enc.yaml", "enc.yaml")
            .replace(
                "/var/run/kseal-kms/kms.sock",
                &self.kms_socket.display().to_string(),
            )
            .replace("age1…other-cluster", &self.other_recipients[0])
            .replace("age1…escrow", &self.other_recipients[1])
    }

    fn run(&self, dir: &Path, line: &str) -> (i32, String) {
        let out = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {line}")])
            .current_dir(dir)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("KUBECONFIG", self.cluster.path("admin"))
            .env("KUBECACHEDIR", self.cluster.path("cache"))
            .env_remove("KSEAL_CONTROLLER_URL")
            .env_remove("KSEAL_RECIPIENT")
            .env_remove("KSEAL_CERT")
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

fn kseal_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(kseal_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses before reading its input closes the pipe: its exit
    // status and stderr say why, not this write.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kseal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\n  namespace: shop\ntype: Opaque\nstringData:\n  password: pw-docs-7\n  old-item: retired\n";

const ENC_YAML: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";

/// The files a doc's commands expect to find (README makes its own keys first).
fn fixtures(env: &Env, dir: &Path, with_cluster_files: bool) {
    std::fs::write(dir.join("secret.yaml"), SECRET).unwrap();
    std::fs::write(dir.join("enc.yaml"), ENC_YAML).unwrap();
    if !with_cluster_files {
        return;
    }
    let cert = env.recipients_doc.to_str().unwrap();
    for (file, name) in [
        ("sealed.yaml", "db-credentials"),
        ("sealed/app.yaml", "app"),
        ("sealed/db.yaml", "db"),
    ] {
        std::fs::create_dir_all(dir.join("sealed")).unwrap();
        let input = SECRET.replace("db-credentials", name);
        let sealed = kseal_in(dir, &["seal", "--cert", cert], input.as_bytes());
        std::fs::write(dir.join(file), sealed).unwrap();
    }
    std::fs::copy(&env.recipients_doc, dir.join("prod.recipients.json")).unwrap();
    std::fs::copy(&env.recipients_doc, dir.join("staging.recipients.json")).unwrap();
    kseal_in(dir, &["keygen", "-o", "escrow-key.txt"], b"");
    let escrow = kseal_in(dir, &["keygen", "-o", "escrow2-key.txt"], b"");
    std::fs::write(dir.join("escrow.recipients"), escrow).unwrap();
    // The migration runbook's Bitnami repository and key backup: the frozen vectors
    // the real kubeseal made (tests/vectors/bitnami).
    let vectors = repo().join("tests/vectors/bitnami");
    std::fs::create_dir_all(dir.join("bitnami")).unwrap();
    for file in ["db-credentials.yaml", "shared.yaml", "api.json"] {
        std::fs::copy(vectors.join(file), dir.join("bitnami").join(file)).unwrap();
    }
    std::fs::copy(vectors.join("keys.yaml"), dir.join("bitnami-keys.yaml")).unwrap();
    // The cluster's key as an identity file, as the backup runbook extracts it.
    std::fs::write(dir.join("cluster-key.txt"), &env.cluster_identity).unwrap();
}

/// docs/repository.md's repository: its `.kseal.yaml` as the page shows it (the `prod`
/// context is the test cluster's), the keys it names, and the environments' directories.
fn repository_fixture(env: &Env, dir: &Path, page: &str) {
    let rules = page
        .split("```yaml\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .filter(|block| block.starts_with("rules:"))
        .expect("docs/repository.md shows its .kseal.yaml first");
    std::fs::write(
        dir.join(".kseal.yaml"),
        rules.replace("context: prod", "context: kseal-test"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    // The escrow key of the other fixtures (escrow-key.txt), by its recipient.
    let identity = std::fs::read_to_string(dir.join("escrow-key.txt")).unwrap();
    let escrow = identity
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap();
    std::fs::write(dir.join("keys/escrow.txt"), format!("{escrow}\n")).unwrap();
    let dev = kseal_in(dir, &["keygen", "-o", "dev-key.txt"], b"");
    std::fs::write(dir.join("keys/dev.txt"), dev).unwrap();
    std::fs::copy(&env.recipients_doc, dir.join("keys/staging.json")).unwrap();
    for env_dir in ["prod", "staging", "dev"] {
        std::fs::create_dir_all(dir.join(env_dir)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_line_in_the_docs_runs() {
    let mut cluster = Cluster::with_options(Options {
        encryption_config: Some(ENC_YAML.into()),
        ..Options::default()
    })
    .await;
    cluster.start_controller("replica-a");
    let recipients_doc = cluster.recipients().await;
    let keys: Api<Secret> = Api::namespaced(cluster.admin.clone(), "kseal-system");
    let list = keys
        .list(&ListParams::default().labels("kseal.dev/key=active"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "one key before the docs rotate");
    let cluster_identity = list.items[0].data.as_ref().unwrap()["identity.txt"]
        .0
        .clone();
    // The Secret the migration runbook reseals, as the Bitnami controller left it.
    let secret = cluster.path("existing.yaml");
    std::fs::write(&secret, SECRET).unwrap();
    cluster
        .kubectl(&["apply", "-f", secret.to_str().unwrap()])
        .await;

    let scratch = tempfile::tempdir().unwrap();
    let other_recipients: Vec<String> = ["a.txt", "b.txt"]
        .iter()
        .map(|f| {
            String::from_utf8(kseal_in(scratch.path(), &["keygen", "-o", f], b""))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let kms_socket = cluster.plane.start_kms_plugin().await.unwrap();
    let env = Env {
        kms_socket,
        bin_dir: kseal_bin().parent().unwrap().to_owned(),
        cluster,
        recipients_doc,
        cluster_identity,
        other_recipients,
    };

    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let mut ran = 0;
    let mut failures = Vec::new();
    for file in &files {
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let lines = command_lines(&std::fs::read_to_string(file).unwrap());
        if lines.is_empty() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        fixtures(&env, dir.path(), name != "README.md");
        if name == "docs/repository.md" {
            repository_fixture(&env, dir.path(), &std::fs::read_to_string(file).unwrap());
        }
        for line in lines {
            let command = env.mirror(&line);
            if command.contains('…') {
                failures.push(format!(
                    "{name}: `{line}` has an elided value and no mirror"
                ));
                continue;
            }
            let (code, output) = env.run(dir.path(), &command);
            ran += 1;
            let expected = EXPECTED_FAILURES
                .iter()
                .find(|(f, start, _, _)| *f == name && line.starts_with(start))
                .map(|(_, _, code, _)| *code)
                .unwrap_or(0);
            if code != expected {
                failures.push(format!(
                    "{name}: `{command}` exited {code}, expected {expected}:\n{output}"
                ));
            }
            assert!(
                !output.contains("pw-docs-7") || command.contains("unseal"),
                "{name}: `{command}` printed a value"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 30, "ran {ran} command lines");
}

/// The inline `kseal …` and `kseal-controller …` spans (synopses such as
/// `kseal merge FILE [--remove K]`) cannot run as written; each one's subcommand must
/// exist and every flag it names must be in that subcommand's `--help`.
#[test]
fn every_inline_synopsis_names_real_subcommands_and_flags() {
    let mut files = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for span in text.split('`').skip(1).step_by(2) {
            let Some((bin, rest)) = span
                .strip_prefix("kseal-controller ")
                .map(|r| ("kseal-controller", r))
                .or_else(|| span.strip_prefix("kseal ").map(|r| ("kseal", r)))
            else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let subcommands: Vec<&str> = words
                .iter()
                .take_while(|w| {
                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
                })
                .copied()
                .collect();
            let flags: Vec<String> = words
                .iter()
                .flat_map(|w| w.split(['[', ']', '(', ')', '|', '\\']))
                .filter(|w| w.starts_with('-') && w.len() > 1)
                .map(|w| {
                    w.split('=')
                        .next()
                        .unwrap_or(w)
                        .trim_end_matches('…')
                        .to_owned()
                })
                .collect();
            let program = if bin == "kseal" {
                kseal_bin()
            } else {
                PathBuf::from(env!("CARGO_BIN_EXE_kseal-controller"))
            };
            let out = Command::new(program)
                .args(&subcommands)
                .arg("--help")
                .output()
                .unwrap();
            let help = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                failures.push(format!("{}: `{span}`: no such command", file.display()));
                continue;
            }
            for flag in flags {
                let named = help.match_indices(flag.as_str()).any(|(i, _)| {
                    let next = help[i + flag.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                });
                if !named {
                    failures.push(format!(
                        "{}: `{span}`: {flag} is not an option",
                        file.display()
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "checked {checked} spans");
}

/// docs/test-cluster.md's walk-through, `scripts/try-cluster.sh`, runs as written: the
/// control plane, the install, a value sealed and unsealed, a rotation and reseal, and
/// the restart with the Bitnami flags.
#[test]
fn the_try_cluster_script_runs_as_written() {
    let bin_dir = kseal_bin().parent().unwrap().to_owned();
    let ports = [
        kseal_tests::ports::free_port().unwrap(),
        kseal_tests::ports::free_port().unwrap(),
    ];
    let out = Command::new("bash")
        .arg(repo().join("scripts/try-cluster.sh"))
        .env("KSEAL_BIN_DIR", &bin_dir)
        .env("KSEAL_TRY_PORT", ports[0].to_string())
        .env("KSEAL_TRY_METRICS_PORT", ports[1].to_string())
        .env_remove("KSEAL_TRY_KEEP")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for seen in [
        "shop/db holds the value sealed",
        "resealed 1 SealedSecret in 1 file",
        "bitnami keys: 1 imported from kube-system, drop-in on",
        "migrated 1 SealedSecret in 1 file",
    ] {
        assert!(text.contains(seen), "{seen:?} not in:\n{text}");
    }
    assert!(!text.contains("s3cret"), "a value was printed:\n{text}");
}
