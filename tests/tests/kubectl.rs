//! `kubectl` (installed on these machines) against a real kube-apiserver through a
//! kubeconfig: apply kseal's CRD, then create, get (by its short name), list, watch,
//! patch and delete a SealedSecret and a Secret, with kubectl's default (strict)
//! validation against the CRD's schema.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

struct Kubectl {
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", self.config())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .current_dir(self.dir.path());
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

const SEALED: &str = "apiVersion: kseal.dev/v1alpha1
kind: SealedSecret
metadata:
  name: db
  namespace: shop
spec:
  scope: strict
  recipients: [0123456789abcdef]
  encryptedData:
    password: c2VhbGVk
";

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: plain
  namespace: shop
stringData:
  token: t0k3n
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_round_trip() {
    let plane = plane().await;
    let k = Kubectl {
        dir: tempfile::tempdir().unwrap(),
    };
    plane
        .write_kubeconfig(&k.config(), &plane.admin, "shop")
        .unwrap();
    k.ok(&["create", "namespace", "shop"]).await;
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crd.yaml");

    assert_eq!(
        k.ok(&["apply", "-f", crd]).await.trim(),
        "customresourcedefinition.apiextensions.k8s.io/sealedsecrets.kseal.dev created\ncustomresourcedefinition.apiextensions.k8s.io/sealedsecretrequests.kseal.dev created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", crd]).await.trim(),
        "customresourcedefinition.apiextensions.k8s.io/sealedsecrets.kseal.dev unchanged\ncustomresourcedefinition.apiextensions.k8s.io/sealedsecretrequests.kseal.dev unchanged"
    );
    k.ok(&[
        "wait",
        "--for=condition=established",
        "crd/sealedsecrets.kseal.dev",
        "crd/sealedsecretrequests.kseal.dev",
    ])
    .await;
    assert!(k.ok(&["get", "sealedsecrets"]).await.is_empty());
    let empty = k.run(&["get", "sealedsecrets"]).await;
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr).trim(),
        "No resources found in shop namespace."
    );

    // A watch opened before the changes sees them.
    let mut watch = k
        .command(&[
            "get",
            "sealedsecrets",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    k.write("sealed.yaml", SEALED);
    assert_eq!(
        k.ok(&["create", "-f", "sealed.yaml"]).await.trim(),
        "sealedsecret.kseal.dev/db created"
    );
    assert!(k.ok(&["get", "kss"]).await.contains("db"));
    let yaml = k.ok(&["get", "sealedsecret", "db", "-o", "yaml"]).await;
    assert!(
        yaml.contains("apiVersion: kseal.dev/v1alpha1") && yaml.contains("generation: 1"),
        "{yaml}"
    );
    assert_eq!(
        k.ok(&[
            "patch",
            "sealedsecret",
            "db",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"scope":"namespace-wide"}}"#
        ])
        .await
        .trim(),
        "sealedsecret.kseal.dev/db patched"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "sealedsecret",
            "db",
            "-o",
            "jsonpath={.spec.scope} {.metadata.generation}"
        ])
        .await,
        "namespace-wide 2"
    );
    assert!(
        k.ok(&["get", "sealedsecrets", "-A", "-o", "name"])
            .await
            .contains("sealedsecret.kseal.dev/db")
    );
    assert_eq!(
        k.ok(&["delete", "sealedsecret", "db"]).await.trim(),
        "sealedsecret.kseal.dev \"db\" deleted"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.kill().unwrap();
    let seen = String::from_utf8(
        tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap().stdout)
            .await
            .unwrap(),
    )
    .unwrap();
    let events: Vec<String> = serde_json::Deserializer::from_str(&seen)
        .into_iter::<serde_json::Value>()
        .map(|e| {
            let e = e.unwrap();
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(events, ["ADDED db", "MODIFIED db", "DELETED db"], "{seen}");

    k.write("secret.yaml", SECRET);
    assert_eq!(
        k.ok(&["apply", "-f", "secret.yaml"]).await.trim(),
        "secret/plain created"
    );
    let secret = k.ok(&["get", "secret", "plain", "-o", "yaml"]).await;
    assert!(
        secret.contains("token: dDBrM24=")
            && secret.contains("type: Opaque")
            && !secret.contains("stringData:"),
        "{secret}"
    );
    assert_eq!(
        k.ok(&[
            "patch",
            "secret",
            "plain",
            "-p",
            r#"{"data":{"extra":"eA=="}}"#
        ])
        .await
        .trim(),
        "secret/plain patched"
    );
    assert_eq!(
        k.ok(&["get", "secret", "plain", "-o", "jsonpath={.data.extra}"])
            .await,
        "eA=="
    );
    assert!(k.ok(&["get", "secrets"]).await.contains("plain"));
    assert_eq!(
        k.ok(&["delete", "secret", "plain"]).await.trim(),
        "secret \"plain\" deleted"
    );
    let left = k.run(&["get", "secrets"]).await;
    assert_eq!(
        String::from_utf8_lossy(&left.stderr).trim(),
        "No resources found in shop namespace."
    );
}
