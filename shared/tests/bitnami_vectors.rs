//! Frozen Bitnami vectors (`tests/vectors/bitnami/`): a throw-away RSA-4096 test key and
//! certificate made with openssl, and SealedSecrets the real kubeseal v0.36.6 sealed to it
//! with `--cert` (strict YAML, cluster-wide YAML, namespace-wide JSON). They open with the
//! key as a PEM file and as the key Secrets `kubectl get secret -o yaml` prints, migrate
//! to kseal with their scope and template, and fail when moved or changed.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kseal_core::bitnami::{BitnamiKeys, OpenError, SealedSecret, UnsealError, migrate, unseal};
use kseal_core::keys::{Key, Keyring};
use kseal_core::manifest::parse_documents;
use kseal_core::recipients::RecipientSet;
use kseal_core::scope::Scope;

fn vector(file: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/bitnami");
    std::fs::read(dir.join(file)).unwrap()
}

fn sealed(file: &str) -> SealedSecret {
    let (_, docs) = parse_documents(&vector(file)).unwrap();
    serde_json::from_value(docs[0].clone()).unwrap()
}

fn keys(file: &str) -> BitnamiKeys {
    let mut keys = BitnamiKeys::default();
    assert_eq!(keys.add(&vector(file)).unwrap(), 1);
    keys
}

#[test]
fn kubeseal_output_migrates_with_its_scope_template_and_values() {
    for key_file in ["keys.yaml", "key.pem"] {
        let keys = keys(key_file);
        for (file, scope) in [
            ("db-credentials.yaml", Scope::Strict),
            ("shared.yaml", Scope::ClusterWide),
            ("api.json", Scope::NamespaceWide),
        ] {
            let key = Key::generate();
            let recipients = RecipientSet::new([key.recipient().clone()]).unwrap();
            let out = migrate(&sealed(file), &keys, &recipients).unwrap();
            assert_eq!(out.spec.scope, scope, "{file}");
            let template = out.spec.template.clone().unwrap();
            assert_eq!(template.metadata.unwrap().labels["app"], "shop");
            assert_eq!(template.type_.as_deref(), Some("Opaque"));
            let items = kseal_core::sealing::unseal(&out, &Keyring::new([key])).unwrap();
            assert_eq!(&items["password"][..], b"pw-bitnami-1", "{file}");
            assert_eq!(&items["user"][..], b"admin", "{file}");
        }
    }
}

#[test]
fn moved_renamed_or_changed_values_do_not_open() {
    let keys = keys("keys.yaml");
    let mut moved = sealed("db-credentials.yaml");
    moved.metadata.namespace = Some("web".into());
    let mut renamed = sealed("api.json");
    renamed.metadata.namespace = Some("other".into());
    for ss in [moved, renamed] {
        assert!(matches!(
            unseal(&ss, &keys),
            Err(UnsealError::Item {
                source: OpenError::NoKey(1),
                ..
            })
        ));
    }
    // A cluster-wide value opens anywhere, as in Bitnami.
    let mut anywhere = sealed("shared.yaml");
    anywhere.metadata.namespace = Some("web".into());
    assert!(unseal(&anywhere, &keys).is_ok());
    let mut changed = sealed("db-credentials.yaml");
    let value = changed.spec.encrypted_data.get_mut("password").unwrap();
    let tail = value.len() - 8;
    value.replace_range(
        tail..tail + 1,
        if &value[tail..tail + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    assert!(matches!(
        unseal(&changed, &keys),
        Err(UnsealError::Item {
            source: OpenError::Tampered,
            ..
        })
    ));
}

/// The third review's N1: Bitnami binds no item key, so copies of one cluster-wide value
/// are valid under any item name, and each costs an RSA-4096 decryption per key tried.
/// An object holds at most `MAX_ITEMS` items (refused whole, before any key), and the RSA
/// decryptions one object may cost are counted: the key that opened the item before is
/// tried first, so a well-formed object costs one per item.
#[test]
fn work_per_object_is_bounded() {
    use kseal_core::bitnami::Trials;
    use kseal_core::limits::{LimitError, MAX_ITEMS};
    let keys = keys("key.pem");
    let mut ss = sealed("shared.yaml");
    let value = ss.spec.encrypted_data["password"].clone();
    ss.spec.encrypted_data = (0..MAX_ITEMS)
        .map(|i| (format!("copy-{i}"), value.clone()))
        .collect();
    let opened = unseal(&ss, &keys).unwrap();
    assert_eq!(opened.items.len(), MAX_ITEMS);
    assert!(opened.items.values().all(|v| &v[..] == b"pw-bitnami-1"));
    ss.spec
        .encrypted_data
        .insert("one-more".into(), value.clone());
    assert!(matches!(
        unseal(&ss, &keys),
        Err(UnsealError::Limit(LimitError::TooManyItems(n))) if n == MAX_ITEMS + 1
    ));
    // One RSA decryption per value with the right key; then the budget is spent.
    let mut trials = Trials::new(2);
    for _ in 0..2 {
        assert!(keys.open(b"", &value, &mut trials).is_ok());
    }
    assert_eq!(
        keys.open(b"", &value, &mut trials),
        Err(OpenError::OverBudget)
    );
}
