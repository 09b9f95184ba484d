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
