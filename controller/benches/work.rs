//! What one object may cost the controller (the third security review's N1), measured.
//!
//! In process, one core, median of a few runs:
//! - opening a maximal kseal SealedSecret (256 items) sealed to the cluster's key alone,
//!   and to 15 recipients (with age's grease stanza, the 16 stanzas an item may hold: the
//!   most key trials an object sealed by kseal costs), with 1 and with 10 retained keys; and the review's hostile object (500 items × 15 stanzas, no hint
//!   naming a held key): refused now, beside what trying it costs (item by item, as
//!   before);
//! - opening a maximal Bitnami SealedSecret (256 copies of one RSA-4096 value, valid under
//!   any item name) with 1 key, and with 10 keys the right one last: as kseal tries them
//!   now (the key that opened the item before first) and as it did before (every key
//!   from the first, for each item).
//!
//! On the real control plane, the controller run as the benches run it: how long a
//! SealedSecret in one namespace takes to become a Secret alone, and while a flood of
//! eight requests arrives at once from another namespace: maximal kseal Verify requests
//! (256 items × 15 recipients), maximal Bitnami Migrate requests (256 items), and the
//! review's flood (8 Migrate requests of 1,000 items). `KSEAL_CONTROLLER_BIN` runs another
//! build (an older one, for the figures before).
//!
//! Run: `cargo bench -p kseal-controller --bench work`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::bitnami::{self, BitnamiKeys, Trials};
use kseal_core::keys::{Key, Keyring};
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::{
    RequestOperation, RequestTarget, SealedSecret, SealedSecretRequest, SealedSecretRequestSpec,
};
use kube::api::{Api, PostParams};

fn vector(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/vectors/bitnami/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Median wall time of `runs` runs of `f`, in ms (one thread: its CPU time).
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[runs / 2]
}

/// Items `k<i>` for `i` in `items`, of `dev/flood`, sealed to `recipients`.
fn kseal_object(recipients: &RecipientSet, items: std::ops::Range<usize>) -> SealedSecret {
    let values: Vec<(String, String)> = items
        .map(|i| (format!("k{i}"), format!("value-{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    kseal_tests::sealing::sealed("dev", "flood", &pairs, recipients)
}

/// A fresh RSA-4096 key as PEM, as a Bitnami key Secret holds it.
fn rsa_pem() -> Vec<u8> {
    use aws_lc_rs::encoding::AsDer;
    let key =
        aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa4096).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// The cluster-wide value of the frozen Bitnami vector (it opens under any name).
fn bitnami_value() -> String {
    let (_, docs) = kseal_core::manifest::parse_documents(&vector("shared.yaml")).unwrap();
    docs[0]["spec"]["encryptedData"]["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn in_process() {
    println!("In process (one core, median of 5; ms):");
    let cluster_key = Key::generate();
    let strangers: Vec<Key> = (0..14).map(|_| Key::generate()).collect();
    let retained: Vec<Key> = (0..9).map(|_| Key::generate()).collect();
    let one = Keyring::new([cluster_key.clone()]);
    let ten = Keyring::new(retained.iter().cloned().chain([cluster_key.clone()]));
    let alone = RecipientSet::new([cluster_key.recipient().clone()]).unwrap();
    // 15: with age's grease stanza, the 16 stanzas an item may have.
    let fifteen = RecipientSet::new(
        strangers
            .iter()
            .map(|k| k.recipient().clone())
            .chain([cluster_key.recipient().clone()]),
    )
    .unwrap();
    for (what, recipients) in [("1 recipient", &alone), ("15 recipients", &fifteen)] {
        let object = kseal_object(recipients, 0..256);
        for (keys, ring) in [("1 key", &one), ("10 keys", &ten)] {
            let ms = median_ms(5, || {
                assert_eq!(
                    kseal_core::sealing::unseal(&object, ring).unwrap().len(),
                    256
                );
            });
            println!("  kseal, 256 items, {what:13}, {keys:7}: {ms:8.1}");
        }
    }
    // The review's: 500 items × 15 stanzas, no hint naming a held key, 10 keys.
    let stranger_set = RecipientSet::new(strangers.iter().map(|k| k.recipient().clone())).unwrap();
    // kseal seal makes at most 256 items: the attacker joins two objects' items.
    let mut hostile = kseal_object(&stranger_set, 0..250);
    let more = kseal_object(&stranger_set, 250..500);
    hostile.spec.encrypted_data.extend(more.spec.encrypted_data);
    let refused = median_ms(5, || {
        assert!(kseal_core::sealing::unseal(&hostile, &ten).is_err());
    });
    let tried = median_ms(1, || {
        for (item, value) in &hostile.spec.encrypted_data {
            let binding = kseal_core::sealing::binding_for(&hostile, item).unwrap();
            let _ = kseal_core::item::open(&ten, &hostile.spec.recipients, &binding, value);
        }
    });
    println!(
        "  kseal, the review's hostile object (500 items x 15 stanzas, 10 keys, no hint): refused in {refused:.1}; trying it item by item (as before): {tried:.1}"
    );

    let value = bitnami_value();
    let values: BTreeMap<String, String> = (0..256)
        .map(|i| (format!("copy-{i}"), value.clone()))
        .collect();
    let mut keys = BitnamiKeys::default();
    keys.add(&vector("key.pem")).unwrap();
    let ms = median_ms(5, || {
        assert_eq!(bitnami::open_items(&keys, b"", &values).unwrap().len(), 256);
    });
    println!("  Bitnami, 256 items, 1 key:                       {ms:8.1}");
    let mut keys = BitnamiKeys::default();
    for _ in 0..9 {
        keys.add(&rsa_pem()).unwrap();
    }
    keys.add(&vector("key.pem")).unwrap();
    let now = median_ms(5, || {
        assert_eq!(bitnami::open_items(&keys, b"", &values).unwrap().len(), 256);
    });
    let before = median_ms(3, || {
        for v in values.values() {
            keys.open(b"", v, &mut Trials::unbounded()).unwrap();
        }
    });
    println!(
        "  Bitnami, 256 items, 10 keys, the right one last: {now:8.1} (each key from the first for every item, as before: {before:.1}; {:.1}x)",
        before / now
    );
}

/// How long `name` in `calm` takes from create to Secret, while `flood` (if any) is
/// created at once in namespace `dev`.
async fn delay(
    admin: &kube::Client,
    sealed: SealedSecret,
    flood: Vec<SealedSecretRequest>,
) -> Duration {
    let name = sealed.metadata.name.clone().unwrap();
    let requests: Api<SealedSecretRequest> = Api::namespaced(admin.clone(), "dev");
    let creates = flood.into_iter().map(|r| {
        let requests = requests.clone();
        async move { requests.create(&PostParams::default(), &r).await.unwrap() }
    });
    futures::future::join_all(creates).await;
    let started = Instant::now();
    Api::<SealedSecret>::namespaced(admin.clone(), "calm")
        .create(&PostParams::default(), &sealed)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "calm");
    loop {
        if secrets.get_opt(&name).await.unwrap().is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no Secret");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn requests(
    round: usize,
    operation: RequestOperation,
    spec: &kseal_core::resource::SealedSecretSpec,
) -> Vec<SealedSecretRequest> {
    (0..8)
        .map(|i| {
            let mut r = SealedSecretRequest::new(
                &format!("flood-{round}-{i}"),
                SealedSecretRequestSpec {
                    operation,
                    target: RequestTarget {
                        namespace: "dev".into(),
                        name: "flood".into(),
                    },
                    sealed_secret: spec.clone(),
                },
            );
            r.metadata.namespace = Some("dev".into());
            r
        })
        .collect()
}

async fn on_the_control_plane() {
    let (plane, admin) = plane(&["kseal-system", "calm", "dev", "legacy"], "").await;
    // The frozen Bitnami key, imported from `legacy` as the Bitnami controller keeps it.
    let (_, keys) = kseal_core::manifest::parse_documents(&vector("keys.yaml")).unwrap();
    let mut key: Secret = serde_json::from_value(keys[0].clone()).unwrap();
    key.metadata.namespace = Some("legacy".into());
    Api::<Secret>::namespaced(admin.clone(), "legacy")
        .create(&PostParams::default(), &key)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = kseal_tests::ports::free_port().unwrap();
    let mut controller = start_kseal_with(
        &plane,
        dir.path(),
        metrics,
        &["--bitnami-keys-namespace", "legacy"],
    );
    println!(
        "On the real control plane: {}",
        controller_binary().display()
    );
    let calm = kseal_objects(&admin, "calm", 40).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin.clone(), "kseal-system");
    let doc = cms.get("kseal-recipients").await.unwrap().data.unwrap()["recipients.json"].clone();
    let cluster = kseal_core::recipients::parse_cert(&doc).unwrap();
    let strangers: Vec<Key> = (0..14).map(|_| Key::generate()).collect();
    let fifteen = RecipientSet::new(
        strangers
            .iter()
            .map(|k| k.recipient().clone())
            .chain(cluster.iter().cloned()),
    )
    .unwrap();
    let verify = kseal_object(&fifteen, 0..256).spec;
    let bitnami = |items: usize| {
        let value = bitnami_value();
        let mut spec = verify.clone();
        spec.scope = kseal_core::scope::Scope::ClusterWide;
        spec.encrypted_data = (0..items)
            .map(|i| (format!("copy-{i}"), value.clone()))
            .collect();
        spec
    };
    let floods: [(
        &str,
        Option<(RequestOperation, kseal_core::resource::SealedSecretSpec)>,
    ); 4] = [
        ("alone", None),
        (
            "8 kseal Verify requests, 256 items x 15 recipients",
            Some((RequestOperation::Verify, verify.clone())),
        ),
        (
            "8 Bitnami Migrate requests, 256 items",
            Some((RequestOperation::Migrate, bitnami(256))),
        ),
        (
            "8 Bitnami Migrate requests, 1,000 items (the review's)",
            Some((RequestOperation::Migrate, bitnami(1000))),
        ),
    ];
    let mut objects = calm.into_iter();
    let cpu = |pid| cpu_seconds(pid);
    let pid = controller.id();
    for (round, (what, flood)) in floods.iter().enumerate() {
        let mut delays = Vec::new();
        let cpu_before = cpu(pid);
        for attempt in 0..5 {
            let flood = flood
                .as_ref()
                .map(|(op, spec)| requests(round * 10 + attempt, *op, spec))
                .unwrap_or_default();
            delays.push(delay(&admin, objects.next().unwrap(), flood).await);
            // Let the flood drain before the next round.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        delays.sort();
        println!(
            "  calm/ SealedSecret to Secret, {what}: median {:.2} s, max {:.2} s (controller CPU over the 5 rounds: {:.1} s)",
            delays[2].as_secs_f64(),
            delays[4].as_secs_f64(),
            cpu(pid) - cpu_before
        );
    }
    let _ = controller.kill();
    let _ = controller.wait();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    in_process();
    on_the_control_plane().await;
}
