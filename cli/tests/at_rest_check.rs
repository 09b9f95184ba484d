//! `kseal at-rest check`, `scan-etcd` and `rewrite` against real kube-apiservers over one
//! etcd, each with its own `EncryptionConfiguration` (KMS v2 through a plugin, aescbc,
//! aesgcm, secretbox, identity first, one that leaves Secrets out, none): the canary
//! Secret write, `/readyz?verbose`, `/metrics` and the bytes in etcd are the real ones.
//! What a kubelet would add, the apiservers' mirror pods in `kube-system` with their
//! flags and the `default/kubernetes` EndpointSlice addressing each apiserver, is written
//! by the test (no kubelet runs, and the apiservers share one address). One test per
//! situation the checks must tell apart; each asserts the verdict of `check` and the
//! exact counts `scan-etcd` finds.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kseal_tests::cluster::{Component, ControlPlane, Credential, Options};
use kube::api::{Api, ListParams, PostParams};

fn host_ip() -> std::net::IpAddr {
    kseal_tests::cluster::host_ip().expect("a default route (kube-apiserver needs one too)")
}

const ENC_FLAG: &str = "--encryption-provider-config=/etc/kubernetes/enc/enc.yaml";

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    )
}

const KMS_V2: &str = "      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix://KMS_SOCKET\n      - identity: {}\n";
const AESCBC: &str = "      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";
const AESGCM: &str = "      - aesgcm:\n          keys:\n            - name: key3\n              secret: AwMDAwMDAwMDAwMDAwMDAw==\n      - identity: {}\n";
const SECRETBOX: &str = "      - secretbox:\n          keys:\n            - name: key2\n              secret: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n      - identity: {}\n";
const IDENTITY_FIRST: &str = "      - identity: {}\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
/// A config for ConfigMaps only: Secrets fall through to identity.
const CONFIGMAPS_ONLY: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [configmaps]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";

/// The `sha256:` hash kube-apiserver shows for a KMS key id or a config file.
fn sha256(text: &str) -> String {
    kseal_atrest::config::sha256_hex(text.as_bytes())
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    plane: ControlPlane,
    /// Each apiserver's URL, as the test reaches it.
    urls: Vec<String>,
    /// Each apiserver's `<host ip>:<port>`, as its EndpointSlice names it.
    addresses: Vec<String>,
    dir: tempfile::TempDir,
}

impl Setup {
    /// One apiserver per entry, over one etcd, each with its `EncryptionConfiguration`
    /// (`None`: no `--encryption-provider-config`).
    fn new(configs: &[Option<String>]) -> Setup {
        Self::with_flags(configs, &[])
    }

    fn with_flags(configs: &[Option<String>], flags: &[&str]) -> Setup {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut apiserver_flags = vec![
            // The test writes the EndpointSlices (the apiservers share an address), and an
            // EndpointSlice may not hold a loopback address: each apiserver listens on
            // every address, reached at the host's.
            "--endpoint-reconciler-type=none".to_owned(),
            "--bind-address=0.0.0.0".to_owned(),
        ];
        apiserver_flags.extend(flags.iter().map(|f| (*f).to_owned()));
        let plane = runtime
            .block_on(ControlPlane::start(Options {
                encryption_config: configs[0].clone(),
                apiserver_flags,
                controller_manager: false,
                ..Options::default()
            }))
            .unwrap();
        let mut urls = vec![plane.url.clone()];
        for c in &configs[1..] {
            let (_, url) = runtime.block_on(plane.add_apiserver(c.as_deref())).unwrap();
            urls.push(url);
        }
        let addresses: Vec<String> = urls
            .iter()
            .map(|u| {
                let port = u.rsplit(':').next().unwrap();
                format!("{}:{port}", host_ip())
            })
            .collect();
        let setup = Setup {
            runtime,
            plane,
            urls,
            addresses,
            dir: tempfile::tempdir().unwrap(),
        };
        setup.runtime.block_on(async {
            let admin = setup.plane.client(&setup.plane.admin).await.unwrap();
            // The ServiceAccount admission plugin wants `default` for the mirror pods.
            setup
                .plane
                .service_account("kube-system", "default")
                .await
                .unwrap();
            for (i, (address, c)) in setup.addresses.iter().zip(configs).enumerate() {
                let (ip, port) = address.rsplit_once(':').unwrap();
                let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("kubernetes-{i}"), "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": "kubernetes"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                    "ports": [{"name": "https", "port": port.parse::<u16>().unwrap(), "protocol": "TCP"}]
                }))
                .unwrap();
                Api::<EndpointSlice>::namespaced(admin.clone(), "default")
                    .create(&PostParams::default(), &slice)
                    .await
                    .unwrap();
                setup.mirror_pod(i, c.is_some()).await;
            }
        });
        setup
    }

    /// (Re)writes apiserver `i`'s mirror pod, as the kubelet does when its static pod
    /// manifest changes, with `--encryption-provider-config` when `encrypted`.
    async fn mirror_pod(&self, i: usize, encrypted: bool) {
        let pods = Api::<Pod>::namespaced(
            self.plane.client(&self.plane.admin).await.unwrap(),
            "kube-system",
        );
        let name = format!("kube-apiserver-cp{i}");
        // Grace period 0: no kubelet runs to confirm a graceful deletion.
        let now = kube::api::DeleteParams::default().grace_period(0);
        let _ = pods.delete(&name, &now).await;
        let (ip, port) = self.addresses[i].rsplit_once(':').unwrap();
        let mut command = vec![
            "kube-apiserver".to_owned(),
            format!("--advertise-address={ip}"),
            format!("--secure-port={port}"),
        ];
        if encrypted {
            command.push(ENC_FLAG.to_owned());
        }
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "kube-system",
                         "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
            "spec": {"nodeName": format!("cp{i}"), "containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.37.2", "command": command}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    /// A kubeconfig file for `who` (admin when `None`).
    fn kubeconfig(&self, who: Option<&Credential>) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        self.plane
            .write_kubeconfig(&path, who.unwrap_or(&self.plane.admin), "default")
            .unwrap();
        path
    }

    /// Turns `config` on (the apiserver reloads it) and marks the first apiserver's
    /// mirror pod as running with it.
    fn encrypt_with(&self, config: &str) {
        self.runtime.block_on(async {
            self.plane
                .set_encryption_config(Some(config))
                .await
                .unwrap();
            self.mirror_pod(0, true).await;
        });
    }

    /// A kubeconfig `name` through a fault proxy doing `faults`, as the admin. The proxy
    /// passes a bearer token through (a client certificate ends at its TLS).
    fn through_proxy(
        &self,
        name: &str,
        faults: kseal_tests::faults::Faults,
    ) -> (kseal_tests::faults::FaultProxy, PathBuf) {
        let proxy = self
            .runtime
            .block_on(kseal_tests::faults::FaultProxy::start(&self.plane))
            .unwrap();
        proxy.set_faults(faults);
        let token = self.runtime.block_on(self.plane.admin_token()).unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, proxy.kubeconfig(&self.plane, &token, "default")).unwrap();
        (proxy, path)
    }

    fn kseal(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kseal"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `kseal at-rest check --json` as `who` (admin when `None`), and again without
    /// `--json`.
    fn check(&self, who: Option<&Credential>) -> (i32, serde_json::Value, String) {
        let path = self.kubeconfig(who);
        let path = path.to_str().unwrap();
        let out = self.kseal(&["at-rest", "check", "--kubeconfig", path, "--json"]);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let human = self.kseal(&["at-rest", "check", "--kubeconfig", path]);
        let human = String::from_utf8(human.stdout).unwrap();
        (out.status.code().unwrap(), json, human)
    }

    /// Runs `check` until `done` holds (kube-apiserver polls a KMS plugin's status and an
    /// automatically reloaded config about once a minute); returns that run's JSON.
    fn check_until(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let (_, json, human) = self.check(None);
            if done(&json) {
                return json;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "{what}: not seen in 180 s; the last check said:\n{human}"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// `kseal at-rest scan-etcd --json` on the control plane's etcd, with the config when
    /// given; the exit code and the report.
    fn scan(&self, config: Option<&str>) -> (i32, serde_json::Value) {
        let mut args = vec![
            "at-rest",
            "scan-etcd",
            "--endpoints",
            self.plane.etcd_url.as_str(),
            "--json",
        ];
        let path = self.dir.path().join("scan-config.yaml");
        if let Some(c) = config {
            std::fs::write(&path, c).unwrap();
            args.extend(["--config", path.to_str().unwrap()]);
        }
        let out = self.kseal(&args);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), json)
    }

    /// Creates `n` Secrets named `<prefix>-<i>` in `default` through apiserver `via`,
    /// each with a value of its own; returns the values.
    fn create(&self, prefix: &str, n: usize, via: usize) -> Vec<String> {
        self.runtime.block_on(async {
            let client = self
                .plane
                .client_at(&self.urls[via], &self.plane.admin)
                .await
                .unwrap();
            let secrets: Api<Secret> = Api::namespaced(client, "default");
            let mut values = Vec::new();
            for i in 0..n {
                let value = format!("value-{prefix}-{i}-{:016x}", rand::random::<u64>());
                let secret: Secret = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{prefix}-{i}")}, "stringData": {"k": value}
                }))
                .unwrap();
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
                values.push(value);
            }
            values
        })
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        let admin = self
            .runtime
            .block_on(self.plane.client(&self.plane.admin))
            .unwrap();
        Api::namespaced(admin, namespace)
    }
}

fn evidence(json: &serde_json::Value, server: usize) -> String {
    json["apiservers"][server]["evidence"].to_string()
}

/// A scan report's counts per format.
fn formats(scan: &serde_json::Value) -> BTreeMap<String, u64> {
    serde_json::from_value(scan["formats"].clone()).unwrap()
}

/// `check` warns that the apiserver's KMS health check fails.
fn kms_failing(json: &serde_json::Value) -> bool {
    json["apiservers"][0]["warnings"]
        .to_string()
        .contains("health: kms-providers is failing")
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// The scan's KMS v2 counts: key id → (hash, count) for provider `vault`.
fn key_ids(scan: &serde_json::Value) -> BTreeMap<String, (String, u64)> {
    scan["kms_v2_key_ids"]["vault"]
        .as_object()
        .map(|ids| {
            ids.iter()
                .map(|(id, c)| {
                    let hash = c["hash"].as_str().unwrap().to_owned();
                    (id.clone(), (hash, c["count"].as_u64().unwrap()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kms_v2() {
    let setup = Setup::new(&[Some(config(KMS_V2))]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["verdict"], "encrypted", "{human}");
    assert_eq!(json["detail"], "kms:v2:vault");
    let ev = evidence(&json, 0);
    assert!(
        ev.contains("canary Secret write was encrypted by kms:v2:vault"),
        "{ev}"
    );
    assert!(ev.contains("kms-providers check present"), "{ev}");
    assert!(
        ev.contains(&format!(
            "KMS v2 plugin vault answers status polls (key id {})",
            sha256("kseal-test-1")
        )),
        "{ev}"
    );
    assert!(
        human.contains("verdict: encrypted (kms:v2:vault)"),
        "{human}"
    );
    // The canary is cleaned up.
    let left = setup
        .runtime
        .block_on(
            setup
                .secrets("kube-system")
                .list(&ListParams::default().labels("kseal.dev/at-rest-canary")),
        )
        .unwrap();
    assert!(left.items.is_empty());

    setup.create("s", 3, 0);
    let (code, scan) = setup.scan(Some(&config(KMS_V2)));
    assert_eq!(code, 0, "{scan}");
    assert_eq!(formats(&scan), counts(&[("kms-v2:vault", 3)]));
    assert_eq!(
        key_ids(&scan),
        BTreeMap::from([("kseal-test-1".into(), (sha256("kseal-test-1"), 3))])
    );
}

/// The plugin's key id rotates: `check` shows the new key id once the apiserver has
/// polled the plugin, `scan-etcd` shows Secrets under both, and `rewrite` moves the old
/// ones to the new key id.
#[test]
fn kms_v2_key_rotation_shows_and_rewrite_moves_to_it() {
    let setup = Setup::new(&[Some(config(KMS_V2))]);
    setup.create("before", 3, 0);
    setup.plane.set_kms("kseal-test-2", true).unwrap();
    let rotated = sha256("kseal-test-2");
    let json = setup.check_until("the rotated key id in check", |json| {
        evidence(json, 0).contains(&format!("answers status polls (key id {rotated})"))
    });
    assert_eq!(json["verdict"], "encrypted");
    setup.create("after", 1, 0);
    let (_, scan) = setup.scan(None);
    assert_eq!(formats(&scan), counts(&[("kms-v2:vault", 4)]));
    assert_eq!(
        key_ids(&scan),
        BTreeMap::from([
            ("kseal-test-1".into(), (sha256("kseal-test-1"), 3)),
            ("kseal-test-2".into(), (rotated.clone(), 1)),
        ])
    );

    let kubeconfig = setup.kubeconfig(None);
    let out = setup.kseal(&[
        "at-rest",
        "rewrite",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Under the old key id the apiserver sees a stale value and stores it again; under
    // the current one it finds nothing to do.
    assert_eq!(done["rewritten"], 3, "{done}");
    assert_eq!(done["already_current"], 1, "{done}");
    let (_, scan) = setup.scan(None);
    assert_eq!(
        key_ids(&scan),
        BTreeMap::from([("kseal-test-2".into(), (rotated, 4))])
    );

    // The plugin now fails every call (as a KMS that lost its key would): check warns.
    setup.plane.set_kms("kseal-test-2", false).unwrap();
    setup.check_until("the failing plugin in check", kms_failing);
}

/// A stopped KMS plugin: `check` says the plugin is unhealthy, and prints no value. (The
/// apiserver keeps writing with the data key it holds, for up to three minutes, so new
/// writes are still encrypted meanwhile: the verdict stays, with the warning.)
#[test]
fn kms_v2_plugin_stopped_is_unhealthy() {
    let setup = Setup::new(&[Some(config(KMS_V2))]);
    let values = setup.create("s", 2, 0);
    setup.plane.kill(Component::KmsPlugin);
    let json = setup.check_until("an unhealthy KMS plugin in check", kms_failing);
    let (_, _, human) = setup.check(None);
    assert!(
        human.contains("warning      health: kms-providers is failing"),
        "{human}"
    );
    let said = format!("{json}\n{human}");
    for value in values {
        assert!(!said.contains(&value), "a value was printed: {said}");
    }
}

/// One apiserver with `providers`: `check` says encrypted with `detail`, and `scan-etcd`
/// finds the Secrets written through it as `stored`.
fn encrypts(providers: &str, detail: &str, stored: &str) {
    let setup = Setup::new(&[Some(config(providers))]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["detail"], detail, "{human}");
    setup.create("s", 3, 0);
    let (code, scan) = setup.scan(Some(&config(providers)));
    assert_eq!(code, 0, "{scan}");
    assert_eq!(formats(&scan), counts(&[(stored, 3)]));
}

#[test]
fn aescbc() {
    encrypts(AESCBC, "aescbc:v1 key key1", "aescbc:key1");
}

#[test]
fn aesgcm() {
    encrypts(AESGCM, "aesgcm:v1 key key3", "aesgcm:key3");
}

/// Secrets written before encryption was turned on stay plaintext in etcd until written
/// again: `check` warns, `scan-etcd` counts them, `rewrite` (from the scan's report, with
/// a checkpoint, killed after its first page and run again) stores them encrypted, and a
/// Secret edited by someone else during the rewrite keeps that edit.
#[test]
fn identity_first_then_aescbc_then_rewrite() {
    let setup = Setup::new(&[Some(config(IDENTITY_FIRST))]);
    let values = setup.create("old", 20, 0);
    // Sorted first, so the rewrite reaches it while it is being edited.
    setup.create("a-hot", 1, 0);
    let (_, scan) = setup.scan(None);
    assert_eq!(formats(&scan), counts(&[("plaintext-protobuf", 21)]));

    setup.encrypt_with(&config(AESCBC));
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["detail"], "aescbc:v1 key key1", "{human}");
    let warnings = json["apiservers"][0]["warnings"].to_string();
    assert!(
        warnings.contains("Secret reads since start found plaintext data"),
        "{warnings}"
    );
    let (code, scan) = setup.scan(Some(&config(AESCBC)));
    assert_eq!(code, 3, "{scan}");
    assert_eq!(formats(&scan), counts(&[("plaintext-protobuf", 21)]));
    assert_eq!(scan["plaintext"].as_array().unwrap().len(), 21);
    let report = setup.dir.path().join("scan.json");
    std::fs::write(&report, scan.to_string()).unwrap();

    // A dry run lists and writes nothing.
    let kubeconfig = setup.kubeconfig(None);
    let kubeconfig = kubeconfig.to_str().unwrap();
    let dry = setup.kseal(&[
        "at-rest",
        "rewrite",
        "--kubeconfig",
        kubeconfig,
        "--from-scan",
        report.to_str().unwrap(),
        "--dry-run",
    ]);
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.contains("would rewrite default/a-hot-0"), "{dry}");
    assert!(dry.contains("dry run: 21 Secrets to write back"), "{dry}");
    assert_eq!(
        setup.scan(None).1["plaintext"].as_array().unwrap().len(),
        21
    );

    // The rewrite goes through a proxy that delays every request, so the edits below
    // land between its read of a-hot-0 and its write.
    let (_proxy, slow) = setup.through_proxy(
        "slow-kubeconfig",
        kseal_tests::faults::Faults {
            latency: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let editor = {
        let secrets = setup.secrets("default");
        setup.runtime.spawn(async move {
            let started = Instant::now();
            let mut last = String::new();
            let mut i = 0;
            while started.elapsed() < Duration::from_secs(3) {
                let mut s = secrets.get("a-hot-0").await.unwrap();
                let value = format!("edited-{i}");
                s.data = Some(BTreeMap::from([(
                    "k".to_owned(),
                    k8s_openapi::ByteString(value.clone().into_bytes()),
                )]));
                if secrets
                    .replace("a-hot-0", &PostParams::default(), &s)
                    .await
                    .is_ok()
                {
                    last = value;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            last
        })
    };
    let checkpoint = setup.dir.path().join("checkpoint.json");
    let rewrite_args = [
        "at-rest",
        "rewrite",
        "--kubeconfig",
        slow.to_str().unwrap(),
        "--from-scan",
        report.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--page-size",
        "5",
        "--json",
    ];
    // Interrupted once its first page is done (an operator's Ctrl-C, a lost node)...
    let mut first = Command::new(env!("CARGO_BIN_EXE_kseal"))
        .args(rewrite_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the rewrite ended early"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    // Pages of 5 in key order: the first ends at old-11 (a slow poll may see a later one).
    let through = partial["done_through"].as_str().unwrap().to_owned();
    assert!(
        through.as_str() >= "default/old-11" && through.as_str() < "default/old-9",
        "{partial}"
    );
    // ...and run again: it resumes after the last page done.
    let out = setup.kseal(&rewrite_args);
    let last_edit = setup.runtime.block_on(editor).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        done["rewritten"].as_u64().unwrap() + done["already_current"].as_u64().unwrap(),
        21,
        "{done}"
    );
    assert!(done["conflicts_retried"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(done["done_through"], "default/old-9", "{done}");
    let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    for value in &values {
        assert!(
            !said.contains(value.as_str()),
            "a value was printed: {said}"
        );
    }
    // The edit made during the rewrite stayed.
    let hot = setup
        .runtime
        .block_on(setup.secrets("default").get("a-hot-0"))
        .unwrap();
    assert_eq!(
        hot.data.unwrap()["k"].0,
        last_edit.as_bytes(),
        "the last edit was {last_edit}"
    );
    // Nothing left in plaintext.
    let (code, scan) = setup.scan(Some(&config(AESCBC)));
    assert_eq!(code, 0, "{scan}");
    assert_eq!(formats(&scan), counts(&[("aescbc:key1", 21)]));

    // Run again with the finished checkpoint: nothing left to do.
    let again = setup.kseal(&[
        "at-rest",
        "rewrite",
        "--kubeconfig",
        kubeconfig,
        "--from-scan",
        report.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--json",
    ]);
    assert!(again.status.success());
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["rewritten"], done["rewritten"], "{again}");
}

/// The third review's N11: a Secret someone edits between every read and write used to
/// stop the whole rewrite after 20 conflicts. Now it is left to its editor and named, and
/// every other Secret is stored encrypted.
#[test]
fn a_secret_edited_on_every_try_is_left_and_the_rest_rewritten() {
    let setup = Setup::new(&[Some(config(IDENTITY_FIRST))]);
    setup.create("s", 5, 0);
    setup.encrypt_with(&config(AESCBC));
    let (_proxy, contended) = setup.through_proxy(
        "contended-kubeconfig",
        kseal_tests::faults::Faults {
            conflicts_on: vec!["/api/v1/namespaces/default/secrets/s-2".into()],
            ..Default::default()
        },
    );
    let out = setup.kseal(&[
        "at-rest",
        "rewrite",
        "--kubeconfig",
        contended.to_str().unwrap(),
        "-n",
        "default",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        done["contended"],
        serde_json::json!(["default/s-2"]),
        "{done}"
    );
    assert_eq!(done["rewritten"], 4, "{done}");
    assert_eq!(done["conflicts_retried"], 20, "{done}");
    let (_, scan) = setup.scan(Some(&config(AESCBC)));
    assert_eq!(
        formats(&scan),
        counts(&[("aescbc:key1", 4), ("plaintext-protobuf", 1)]),
        "{scan}"
    );
    assert_eq!(
        scan["plaintext"],
        serde_json::json!(["default/s-2"]),
        "{scan}"
    );
}

#[test]
fn identity_first() {
    let setup = Setup::new(&[Some(config(IDENTITY_FIRST))]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    assert!(
        evidence(&json, 0).contains("identity is the first provider"),
        "{human}"
    );
    setup.create("s", 2, 0);
    let (code, scan) = setup.scan(Some(&config(IDENTITY_FIRST)));
    assert_eq!(code, 3, "{scan}");
    assert_eq!(formats(&scan), counts(&[("plaintext-protobuf", 2)]));
}

#[test]
fn not_configured() {
    let setup = Setup::new(&[None]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    let ev = evidence(&json, 0);
    assert!(ev.contains("without --encryption-provider-config"), "{ev}");
    assert!(ev.contains("recorded no transformation"), "{ev}");
    setup.create("s", 2, 0);
    let (code, scan) = setup.scan(None);
    assert_eq!(code, 3, "{scan}");
    assert_eq!(formats(&scan), counts(&[("plaintext-protobuf", 2)]));
}

/// A config that encrypts ConfigMaps and not Secrets.
#[test]
fn config_without_secrets() {
    let setup = Setup::new(&[Some(CONFIGMAPS_ONLY.to_owned())]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext", "{human}");
    setup.create("s", 2, 0);
    let (code, scan) = setup.scan(Some(CONFIGMAPS_ONLY));
    assert_eq!(code, 3, "{scan}");
    assert_eq!(formats(&scan), counts(&[("plaintext-protobuf", 2)]));
}

/// `--encryption-provider-config-automatic-reload`: the file changes under a running
/// apiserver (identity first, then aescbc) and `check` follows once it has reloaded.
#[test]
fn automatic_reload() {
    let setup = Setup::with_flags(
        &[Some(config(IDENTITY_FIRST))],
        &["--encryption-provider-config-automatic-reload=true"],
    );
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    setup.create("before", 1, 0);
    setup
        .runtime
        .block_on(
            setup
                .plane
                .write_encryption_config(Component::ApiServer, Some(&config(AESCBC))),
        )
        .unwrap();
    // The apiserver swaps its transformers first and records the new config's hash in
    // its metrics a moment later: the check is awaited until it has seen both.
    let loaded = format!("loaded encryption config {}", sha256(&config(AESCBC)));
    let json = setup.check_until("the reloaded config in check", |json| {
        json["verdict"] == "encrypted" && evidence(json, 0).contains(&loaded)
    });
    assert_eq!(json["detail"], "aescbc:v1 key key1", "{json}");
    setup.create("after", 1, 0);
    let (_, scan) = setup.scan(Some(&config(AESCBC)));
    assert_eq!(
        formats(&scan),
        counts(&[("plaintext-protobuf", 1), ("aescbc:key1", 1)])
    );
}

#[test]
fn two_apiservers_disagree() {
    let setup = Setup::new(&[Some(config(SECRETBOX)), None]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    let names: Vec<String> = (0..2)
        .map(|i| json["apiservers"][i]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, setup.addresses);
    assert_eq!(json["apiservers"][0]["verdict"], "encrypted", "{human}");
    assert_eq!(json["apiservers"][0]["detail"], "secretbox:v1 key key2");
    assert_eq!(json["apiservers"][1]["verdict"], "plaintext", "{human}");
    assert!(
        evidence(&json, 0).contains("kube-apiserver-cp0"),
        "pods matched to endpoints: {human}"
    );
    assert!(
        evidence(&json, 1).contains(
            "kube-apiserver-cp1 runs kube-apiserver without --encryption-provider-config"
        ),
        "{human}"
    );
    assert!(
        json["disagreements"][0]
            .as_str()
            .unwrap()
            .starts_with("apiservers disagree"),
        "{human}"
    );
    // What each wrote is what etcd holds.
    setup.create("via-secretbox", 2, 0);
    setup.create("via-none", 3, 1);
    let (code, scan) = setup.scan(None);
    assert_eq!(code, 3, "{scan}");
    assert_eq!(
        formats(&scan),
        counts(&[("plaintext-protobuf", 3), ("secretbox:key2", 2)])
    );
}

#[test]
fn missing_permission_is_inconclusive_and_says_why() {
    let setup = Setup::new(&[Some(config(KMS_V2))]);
    let jane = setup.plane.user("jane", &[]).unwrap();
    let (code, json, human) = setup.check(Some(&jane));
    assert_eq!(code, 4, "{human}");
    assert_eq!(json["verdict"], "unknown");
    let not_checked = json["apiservers"][0]["not_checked"].to_string();
    for missing in [
        "missing permission to list pods in kube-system",
        "missing permission to read /metrics (bind the ClusterRole system:monitoring)",
        "needs /metrics",
    ] {
        assert!(not_checked.contains(missing), "{missing}: {human}");
    }
    assert!(
        not_checked.contains("missing permission to list EndpointSlices in default"),
        "{human}"
    );
    assert!(human.contains("not checked"), "{human}");
    // Nor can she rewrite: one line saying what is missing.
    let kubeconfig = setup.kubeconfig(Some(&jane));
    let out = setup.kseal(&[
        "at-rest",
        "rewrite",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listing Secrets: forbidden")
            && stderr.contains("rewrite needs list, get and update on secrets"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
