//! The frozen decrypt-side vectors in `tests/vectors/` open (or fail) exactly as recorded.
//! They pin the format: if this test fails after a change, the change broke the ability
//! to open values sealed by an earlier kseal.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kseal_core::item::open;
use kseal_core::keys::{Keyring, parse_identity_file};
use kseal_core::scope::Binding;
use kseal_tests::{Expect, Vector, vectors_dir};

const REQUIRED: &[&str] = &[
    "ok-strict",
    "ok-namespace-wide",
    "ok-cluster-wide",
    "wrong-key",
    "wrong-namespace",
    "wrong-name",
    "wrong-item-key",
    "wrong-scope",
    "truncated",
    "bit-flipped",
    "bad-encoding",
    "unknown-envelope-version",
];

#[test]
fn every_vector_has_its_recorded_outcome() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        // bitnami/: Bitnami's format, tested by kseal-core's bitnami_vectors.
        if path.is_dir() {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let vector: Vector =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let keyring = Keyring::new(parse_identity_file(&vector.identity).unwrap());
        let at = &vector.opened_at;
        let binding = Binding::new(
            at.scope.parse().unwrap(),
            at.namespace.as_deref(),
            at.name.as_deref(),
            &at.item,
        )
        .unwrap();
        let result = open(&keyring, &[], &binding, &vector.sealed);
        match (&vector.expect, result) {
            (Expect::Value(v), Ok(got)) => assert_eq!(STANDARD.encode(&got[..]), *v, "{name}"),
            (Expect::Error { reason, message }, Err(e)) => {
                assert_eq!(e.reason().as_str(), reason, "{name}");
                assert_eq!(e.to_string(), *message, "{name}");
            }
            (expect, got) => panic!(
                "{name}: expected {expect:?}, got {:?}",
                got.map(|_| "a value")
            ),
        }
        seen.push(name);
    }
    for required in REQUIRED {
        assert!(
            seen.iter().any(|s| s == required),
            "vector {required} is missing"
        );
    }
}
