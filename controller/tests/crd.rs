//! The committed `manifests/crd.yaml` must be exactly what the Rust types generate.

#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/crd.yaml");
    let generated = kseal_controller::crd::crd_yaml().expect("render CRD");
    if std::env::var_os("KSEAL_UPDATE_CRD").is_some() {
        std::fs::write(&path, &generated).expect("write manifests/crd.yaml");
    }
    let committed = std::fs::read_to_string(&path).expect("read manifests/crd.yaml");
    assert!(
        committed == generated,
        "manifests/crd.yaml is out of date: run KSEAL_UPDATE_CRD=1 cargo test -p kseal-controller --test crd"
    );
}

#[test]
fn crd_has_status_subresource_and_readiness_columns() {
    let yaml = kseal_controller::crd::crd_yaml().unwrap();
    assert!(yaml.contains("group: kseal.dev"));
    assert!(yaml.contains("status: {}"), "status subresource");
    assert!(yaml.contains(".status.conditions[?(@.type==\"Ready\")].status"));
}
