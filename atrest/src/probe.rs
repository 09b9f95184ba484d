//! Gathers [`ApiserverEvidence`] through the Kubernetes API: the `default/kubernetes`
//! EndpointSlice (to address each apiserver), the kube-apiserver static pods in
//! `kube-system`, `/readyz?verbose`, `/metrics`, and a canary Secret write.
//! Every step that fails is recorded with its reason instead of stopping the others.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, Config};

use crate::evidence::{
    ApiserverEvidence, CanaryEvidence, Checked, FlagEvidence, HealthEvidence, MetricsEvidence,
};

/// What the probe may do.
#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    /// Write, read back and delete a canary Secret in this namespace (needs create, get
    /// and delete on Secrets there). `None` skips the canary.
    pub canary_namespace: Option<String>,
}

/// The label every canary Secret carries, so a leftover one can be found and removed.
pub const CANARY_LABEL: &str = "kseal.dev/at-rest-canary";

/// One line for a failed API call, naming the permission when it was refused.
pub fn explain(what: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            format!("missing permission to {what}: {}", s.message)
        }
        kube::Error::Api(s) if s.code == 404 => format!("{what}: not found ({})", s.message),
        kube::Error::Api(s) => format!("{what}: {} ({})", s.message, s.code),
        other => format!("{what}: {other}"),
    }
}

struct Target {
    name: String,
    client: Client,
    /// `ip:port`, for matching a static pod's `--advertise-address`/`--secure-port`.
    address: Option<String>,
}

/// Runs every API-only check against every apiserver it can address.
pub async fn probe(config: &Config, options: &ProbeOptions) -> Vec<ApiserverEvidence> {
    let client = match Client::try_from(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot build a client: {e}");
            return vec![ApiserverEvidence {
                name: format!("the apiserver behind {}", config.cluster_url),
                addressing: None,
                flags: Checked::NotChecked(why.clone()),
                health: Checked::NotChecked(why.clone()),
                metrics: Checked::NotChecked(why.clone()),
                canary: Checked::NotChecked(why),
            }];
        }
    };
    let (targets, endpoints_note) = targets(config, &client).await;
    let pods = apiserver_pods(&client).await;

    let mut out = Vec::new();
    let mut matched = vec![false; pods.as_ref().map(Vec::len).unwrap_or(0)];
    for target in &targets {
        let flags = match &pods {
            Err(why) => Checked::NotChecked(why.clone()),
            Ok(pods) if pods.is_empty() => Checked::NotChecked(
                "no kube-apiserver pods in kube-system: a managed control plane, or an apiserver embedded in another process (k3s, k0s)".into(),
            ),
            Ok(pods) => {
                let index = pods.iter().position(|p| {
                    let port = p.secure_port.as_deref().unwrap_or("6443");
                    p.advertise_address
                        .as_deref()
                        .is_some_and(|a| target.address.as_deref() == Some(&format!("{a}:{port}")))
                });
                let index = index.or((targets.len() == 1 && pods.len() == 1).then_some(0));
                match index {
                    Some(i) => {
                        matched[i] = true;
                        Checked::Done(pods[i].clone())
                    }
                    None => Checked::NotChecked(format!(
                        "no kube-apiserver pod advertises {}",
                        target.address.as_deref().unwrap_or(&target.name)
                    )),
                }
            }
        };
        let health = match get_text(&target.client, "/readyz?verbose").await {
            Ok(text) => Checked::Done(HealthEvidence::from_text(&text)),
            // A failing check (a KMS plugin down) makes /readyz answer 500 with the same
            // verbose list, in plain text, which kube keeps as the error's message.
            Err(kube::Error::Api(s)) if s.code == 500 && s.message.contains("[-]") => {
                Checked::Done(HealthEvidence::from_text(&s.message))
            }
            Err(e) => Checked::NotChecked(explain("read /readyz", &e)),
        };
        let metrics = get_text(&target.client, "/metrics").await;
        let canary = match (&options.canary_namespace, &metrics) {
            (None, _) => Checked::NotChecked("skipped (--no-canary)".into()),
            (Some(_), Err(_)) => {
                Checked::NotChecked("needs /metrics to see which transformer wrote it".into())
            }
            (Some(ns), Ok(before)) => canary(&target.client, ns, before).await,
        };
        let metrics = match metrics {
            Ok(text) => Checked::Done(MetricsEvidence::from_text(&text)),
            Err(e) => Checked::NotChecked(explain(
                "read /metrics (bind the ClusterRole system:monitoring)",
                &e,
            )),
        };
        out.push(ApiserverEvidence {
            name: target.name.clone(),
            addressing: endpoints_note.clone(),
            flags,
            health,
            metrics,
            canary,
        });
    }
    if let Ok(pods) = &pods {
        for (pod, seen) in pods.iter().zip(matched) {
            if !seen {
                let why = "this apiserver could not be addressed on its own".to_owned();
                out.push(ApiserverEvidence {
                    name: format!("pod {}", pod.pod),
                    addressing: None,
                    flags: Checked::Done(pod.clone()),
                    health: Checked::NotChecked(why.clone()),
                    metrics: Checked::NotChecked(why.clone()),
                    canary: Checked::NotChecked(why),
                });
            }
        }
    }
    out
}

/// One client per apiserver endpoint when there are several; otherwise the kubeconfig's
/// server (a load balancer or the only apiserver).
async fn targets(config: &Config, client: &Client) -> (Vec<Target>, Option<String>) {
    let service = |note: Option<String>| {
        (
            vec![Target {
                name: format!("the apiserver behind {}", config.cluster_url),
                client: client.clone(),
                address: None,
            }],
            note,
        )
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await;
    let addresses: Vec<String> = match list {
        Err(e) => {
            return service(Some(explain("list EndpointSlices in default", &e)));
        }
        Ok(list) => list
            .items
            .iter()
            .flat_map(|s| {
                let port = s.ports.iter().flatten().find_map(|p| p.port).unwrap_or(443);
                s.endpoints
                    .iter()
                    .flatten()
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                    .flat_map(move |e| e.addresses.iter().map(move |a| format!("{a}:{port}")))
            })
            .collect(),
    };
    if addresses.len() <= 1 {
        let mut only = service(None);
        only.0[0].address = addresses.into_iter().next();
        return only;
    }
    let mut targets = Vec::new();
    for address in addresses {
        let mut pinned = config.clone();
        let url = format!("https://{address}");
        match url.parse().map(|u| {
            pinned.cluster_url = u;
            Client::try_from(pinned)
        }) {
            Ok(Ok(client)) => targets.push(Target {
                name: address.clone(),
                client,
                address: Some(address),
            }),
            _ => return service(Some(format!("cannot address endpoint {address}"))),
        }
    }
    (targets, None)
}

async fn apiserver_pods(client: &Client) -> Result<Vec<FlagEvidence>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = pods
        .list(&ListParams::default().labels("component=kube-apiserver"))
        .await
        .map_err(|e| explain("list pods in kube-system", &e))?;
    Ok(list
        .items
        .iter()
        .map(|p| {
            let spec = p.spec.as_ref();
            let container = spec.and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == "kube-apiserver")
                    .or(s.containers.first())
            });
            let argv: Vec<String> = container
                .map(|c| {
                    c.command
                        .iter()
                        .flatten()
                        .chain(c.args.iter().flatten())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            FlagEvidence::from_args(
                p.metadata.name.as_deref().unwrap_or_default(),
                spec.and_then(|s| s.node_name.clone()),
                &argv,
            )
        })
        .collect())
}

async fn get_text(client: &Client, path: &str) -> Result<String, kube::Error> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request_text(request).await
}

/// Writes a canary Secret through this apiserver, reads it back from etcd, and reports
/// which transformer the write's metrics name. The Secret is deleted in every case.
async fn canary(client: &Client, namespace: &str, before: &str) -> Checked<CanaryEvidence> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut suffix = [0u8; 5];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).is_err() {
        return Checked::NotChecked("no randomness for the canary name".into());
    }
    let name = format!(
        "kseal-canary-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([(
                CANARY_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "canary".to_owned(),
            ByteString(b"kseal at-rest canary: not a secret".to_vec()),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    if let Err(e) = secrets.create(&PostParams::default(), &secret).await {
        return Checked::NotChecked(explain(&format!("create Secrets in {namespace}"), &e));
    }
    // A GET without resourceVersion is served from etcd, so it is decrypted.
    let read = secrets.get(&name).await;
    let after = get_text(client, "/metrics").await;
    let deleted = secrets.delete(&name, &DeleteParams::default()).await;
    if let Err(e) = read {
        return Checked::NotChecked(explain(&format!("get Secrets in {namespace}"), &e));
    }
    let after = match after {
        Ok(a) => a,
        Err(e) => return Checked::NotChecked(explain("read /metrics", &e)),
    };
    let delta = MetricsEvidence::from_text(&after)
        .transformations
        .delta(&MetricsEvidence::from_text(before).transformations);
    Checked::Done(CanaryEvidence {
        left_behind: deleted.err().map(|e| {
            format!(
                "{name}: {}",
                explain(&format!("delete Secrets in {namespace}"), &e)
            )
        }),
        to_storage: delta
            .prefixes("to_storage")
            .into_iter()
            .map(|(p, _)| p.to_owned())
            .collect(),
        keys: delta.key_names("to_storage"),
        failed: delta.failed,
    })
}
