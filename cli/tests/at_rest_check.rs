//! `kseal at-rest check` against real kube-apiservers over one etcd, each with its own
//! `EncryptionConfiguration` (KMS v2 through a plugin, aescbc, secretbox, identity
//! first, none): the canary Secret write, `/readyz?verbose` and `/metrics` are the real
//! ones. What a kubelet would add, the apiservers' mirror pods in `kube-system` with
//! their flags and the `default/kubernetes` EndpointSlice addressing each apiserver, is
//! written by the test (no kubelet runs, and the apiservers share one address). One test
//! per situation the check must tell apart.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kseal_tests::cluster::{ControlPlane, Credential, Options};

fn host_ip() -> std::net::IpAddr {
    kseal_tests::cluster::host_ip().expect("a default route (kube-apiserver needs one too)")
}
use kube::api::{Api, ListParams, PostParams};

const ENC_FLAG: &str = "--encryption-provider-config=/etc/kubernetes/enc/enc.yaml";

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
    )
}

const KMS_V2: &str = "      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix://KMS_SOCKET\n      - identity: {}\n";
const AESCBC: &str = "      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n      - identity: {}\n";
const SECRETBOX: &str = "      - secretbox:\n          keys:\n            - name: key2\n              secret: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n      - identity: {}\n";
const IDENTITY_FIRST: &str = "      - identity: {}\n      - aescbc:\n          keys:\n            - name: key1\n              secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";

struct Setup {
    runtime: tokio::runtime::Runtime,
    plane: ControlPlane,
    /// Each apiserver's `127.0.0.1:<port>`.
    addresses: Vec<String>,
    dir: tempfile::TempDir,
}

impl Setup {
    /// One apiserver per entry, over one etcd, each with its `EncryptionConfiguration`
    /// providers (`None`: no `--encryption-provider-config`).
    fn new(providers: &[Option<&str>]) -> Setup {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let plane = runtime
            .block_on(ControlPlane::start(Options {
                encryption_config: providers[0].map(config),
                // The test writes the EndpointSlices (the apiservers share an address), and
                // an EndpointSlice may not hold a loopback address: each apiserver listens
                // on every address, reached at the host's.
                apiserver_flags: vec![
                    "--endpoint-reconciler-type=none".into(),
                    "--bind-address=0.0.0.0".into(),
                ],
                controller_manager: false,
            }))
            .unwrap();
        let mut urls = vec![plane.url.clone()];
        for p in &providers[1..] {
            let config = p.map(config);
            let (_, url) = runtime
                .block_on(plane.add_apiserver(config.as_deref()))
                .unwrap();
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
            for (i, (address, p)) in setup.addresses.iter().zip(providers).enumerate() {
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
                setup.mirror_pod(i, p.is_some()).await;
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

    /// Runs `kseal at-rest check --json` as `who` (admin when `None`), and again without
    /// `--json`.
    fn check(&self, who: Option<&Credential>) -> (i32, serde_json::Value, String) {
        let path = self.dir.path().join("kubeconfig");
        self.plane
            .write_kubeconfig(&path, who.unwrap_or(&self.plane.admin), "default")
            .unwrap();
        let run = |json: bool| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_kseal"));
            cmd.args(["at-rest", "check", "--kubeconfig"]).arg(&path);
            if json {
                cmd.arg("--json");
            }
            cmd.output().unwrap()
        };
        let out = run(true);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let human = String::from_utf8(run(false).stdout).unwrap();
        (out.status.code().unwrap(), json, human)
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

#[test]
fn kms_v2() {
    let setup = Setup::new(&[Some(KMS_V2)]);
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
}

#[test]
fn aescbc_with_plaintext_left_in_etcd() {
    let setup = Setup::new(&[None]);
    // Secrets written before encryption was turned on stay plaintext in etcd until
    // rewritten; the apiserver's watch cache reads them at its next start.
    let secrets = setup.secrets("default");
    setup.runtime.block_on(async {
        for i in 0..7 {
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("old-{i}")}, "stringData": {"k": "v"}
            }))
            .unwrap();
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
        }
        setup
            .plane
            .set_encryption_config(Some(&config(AESCBC)))
            .await
            .unwrap();
        setup.mirror_pod(0, true).await;
    });
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["detail"], "aescbc:v1 key key1", "{human}");
    let warnings = json["apiservers"][0]["warnings"].to_string();
    assert!(
        warnings.contains("Secret reads since start found plaintext data"),
        "{warnings}"
    );
}

#[test]
fn identity_first() {
    let setup = Setup::new(&[Some(IDENTITY_FIRST)]);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    assert!(
        evidence(&json, 0).contains("identity is the first provider"),
        "{human}"
    );
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
}

#[test]
fn two_apiservers_disagree() {
    let setup = Setup::new(&[Some(SECRETBOX), None]);
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
}

#[test]
fn missing_permission_is_inconclusive_and_says_why() {
    let setup = Setup::new(&[Some(KMS_V2)]);
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
}
