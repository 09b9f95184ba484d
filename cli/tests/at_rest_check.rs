//! `kseal at-rest check` against the Kubernetes API test server, programmed the way real
//! apiservers answer: static pods with their flags, `/readyz?verbose`, `/metrics` in
//! kube-apiserver's format, and storage transformers whose counters move when the
//! canary Secret is written. One test per situation the check must tell apart.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kseal_tests::apiserver::{Config, Programmed, SecretStorage, TestServer};
use kube::api::{Api, PostParams};

struct Setup {
    runtime: tokio::runtime::Runtime,
    servers: Vec<TestServer>,
    dir: tempfile::TempDir,
}

const KMS_READYZ: &str = "[+]ping ok\n[+]etcd ok\n[+]kms-providers ok\n[+]poststarthook/start-apiextensions-controllers ok\nreadyz check passed\n";
const PLAIN_READYZ: &str = "[+]ping ok\n[+]etcd ok\n[+]poststarthook/start-apiextensions-controllers ok\nreadyz check passed\n";

impl Setup {
    /// `count` apiservers over one store, each with `storage`; the EndpointSlice lists
    /// them all, and each gets a static pod advertising its address, with `flags`.
    fn new(storages: &[(SecretStorage, &[&str])]) -> Setup {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut servers = vec![
            runtime
                .block_on(TestServer::start(Config::default()))
                .unwrap(),
        ];
        for _ in 1..storages.len() {
            let peer = runtime.block_on(servers[0].start_peer()).unwrap();
            servers.push(peer);
        }
        for (server, (storage, _)) in servers.iter().zip(storages) {
            server.set_secret_storage(storage.clone());
        }
        let setup = Setup {
            runtime,
            servers,
            dir: tempfile::tempdir().unwrap(),
        };
        let client = setup.admin();
        let endpoints: Vec<serde_json::Value> = setup
            .servers
            .iter()
            .map(|s| serde_json::json!({"addresses": [s.addr.ip().to_string()], "conditions": {"ready": true}}))
            .collect();
        // One slice per apiserver port, as each port differs here (a real cluster has one
        // port and several addresses).
        for (i, (server, (_, flags))) in setup.servers.iter().zip(storages).enumerate() {
            let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("kubernetes-{i}"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [endpoints[i].clone()],
                "ports": [{"name": "https", "port": server.addr.port(), "protocol": "TCP"}]
            }))
            .unwrap();
            let mut command = vec![
                "kube-apiserver".to_owned(),
                format!("--advertise-address={}", server.addr.ip()),
                format!("--secure-port={}", server.addr.port()),
                "--etcd-servers=https://127.0.0.1:2379".to_owned(),
            ];
            command.extend(flags.iter().map(|f| (*f).to_owned()));
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("kube-apiserver-cp{i}"), "namespace": "kube-system",
                             "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
                "spec": {"nodeName": format!("cp{i}"), "containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.34.0", "command": command}]}
            }))
            .unwrap();
            setup.runtime.block_on(async {
                Api::<EndpointSlice>::namespaced(client.clone(), "default")
                    .create(&PostParams::default(), &slice)
                    .await
                    .unwrap();
                Api::<Pod>::namespaced(client.clone(), "kube-system")
                    .create(&PostParams::default(), &pod)
                    .await
                    .unwrap();
            });
        }
        setup
    }

    fn admin(&self) -> kube::Client {
        let path = self.dir.path().join("admin-kubeconfig");
        let server = &self.servers[0];
        server
            .write_kubeconfig(&path, &server.admin_token, "default")
            .unwrap();
        self.runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            kube::Client::try_from(config).unwrap()
        })
    }

    fn program(&self, server: usize, path: &str, body: &str) {
        self.servers[server].program(
            path,
            Programmed {
                status: 200,
                body: if path == "/readyz" {
                    "ok".into()
                } else {
                    body.into()
                },
                verbose_body: (path == "/readyz").then(|| body.to_owned()),
                content_type: "text/plain; charset=utf-8".into(),
            },
        );
    }

    /// Runs `kseal at-rest check --json` as `token` (admin when `None`).
    fn check(&self, token: Option<&str>) -> (i32, serde_json::Value, String) {
        let server = &self.servers[0];
        let path = self.dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&path, token.unwrap_or(&server.admin_token), "default")
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
}

fn evidence(json: &serde_json::Value, server: usize) -> String {
    json["apiservers"][server]["evidence"].to_string()
}

#[test]
fn kms_v2() {
    let setup = Setup::new(&[(
        SecretStorage::Encrypted {
            prefix: "k8s:enc:kms:v2:vault:".into(),
            key: None,
        },
        &["--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"],
    )]);
    setup.program(0, "/readyz", KMS_READYZ);
    setup.program(0, "/metrics", "# TYPE apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds gauge\napiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds{apiserver_id_hash=\"sha256:14f9\",key_id_hash=\"sha256:a1b2\",provider_name=\"vault\"} 1.764e+09\napiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:14f9\",hash=\"sha256:6bc9\"} 1\n");
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["verdict"], "encrypted", "{human}");
    assert_eq!(json["detail"], "kms:v2:vault");
    let ev = evidence(&json, 0);
    assert!(
        ev.contains("canary Secret write was encrypted by kms:v2:vault"),
        "{ev}"
    );
    assert!(
        ev.contains("KMS v2 plugin vault answers status polls"),
        "{ev}"
    );
    assert!(ev.contains("kms-providers check present"), "{ev}");
    assert!(ev.contains("loaded encryption config sha256:6bc9"), "{ev}");
    assert!(
        human.contains("verdict: encrypted (kms:v2:vault)"),
        "{human}"
    );
    // The canary is cleaned up.
    assert_eq!(setup.servers[0].count("secrets"), 0);
}

#[test]
fn aescbc_with_plaintext_left_in_etcd() {
    let setup = Setup::new(&[(
        SecretStorage::Encrypted {
            prefix: "k8s:enc:aescbc:v1:".into(),
            key: Some("key1".into()),
        },
        &["--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"],
    )]);
    // At startup the watch cache read 7 plaintext Secrets: they were never rewritten.
    setup.program(0, "/metrics", "apiserver_storage_transformation_operations_total{resource=\"secrets\",status=\"OK\",transformation_type=\"from_storage\",transformer_prefix=\"identity\"} 7\n");
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 0, "{human}");
    assert_eq!(json["detail"], "aescbc:v1 key key1", "{human}");
    let warnings = json["apiservers"][0]["warnings"].to_string();
    assert!(
        warnings.contains("7 Secret reads since start found plaintext data"),
        "{warnings}"
    );
}

#[test]
fn identity_first() {
    let setup = Setup::new(&[(
        SecretStorage::IdentityFirst,
        &["--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"],
    )]);
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
    let setup = Setup::new(&[(SecretStorage::NotConfigured, &[])]);
    setup.program(0, "/readyz", PLAIN_READYZ);
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    let ev = evidence(&json, 0);
    assert!(ev.contains("without --encryption-provider-config"), "{ev}");
    assert!(ev.contains("recorded no transformation"), "{ev}");
}

#[test]
fn two_apiservers_disagree() {
    let setup = Setup::new(&[
        (
            SecretStorage::Encrypted {
                prefix: "k8s:enc:secretbox:v1:".into(),
                key: Some("key2".into()),
            },
            &["--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"],
        ),
        (SecretStorage::NotConfigured, &[]),
    ]);
    setup.program(0, "/metrics", "apiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:aaaa\",hash=\"sha256:1111\"} 1\n");
    let (code, json, human) = setup.check(None);
    assert_eq!(code, 3, "{human}");
    assert_eq!(json["verdict"], "plaintext");
    let names: Vec<String> = (0..2)
        .map(|i| json["apiservers"][i]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            setup.servers[0].addr.to_string(),
            setup.servers[1].addr.to_string()
        ]
    );
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
    let setup = Setup::new(&[(
        SecretStorage::Encrypted {
            prefix: "k8s:enc:kms:v2:vault:".into(),
            key: None,
        },
        &["--encryption-provider-config=/etc/kubernetes/enc/enc.yaml"],
    )]);
    let token = setup.servers[0].user_token("jane", &[]);
    let (code, json, human) = setup.check(Some(&token));
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
