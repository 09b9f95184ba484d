//! Manifests as the CLI and the controller's services read them: documents (YAML with and
//! without aliases, JSON), then Secrets, SealedSecrets, their offline checks and the
//! template policy. Nothing may panic, and the no-alias path never yields more scalar
//! bytes than it was given.
#![no_main]

use kseal_core::manifest::{Aliases, parse_documents_with, scrub, secret_from_value, sealed_from_value};
use libfuzzer_sys::fuzz_target;

fn scalar_bytes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(a) => a.iter().map(scalar_bytes).sum(),
        serde_json::Value::Object(o) => o.iter().map(|(k, v)| k.len() + scalar_bytes(v)).sum(),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((_, docs)) = parse_documents_with(data, Aliases::Refuse) {
        let total: usize = docs.iter().map(scalar_bytes).sum();
        assert!(total <= data.len(), "no-alias parse grew {} bytes to {total}", data.len());
    }
    let Ok((_, mut docs)) = parse_documents_with(data, Aliases::Allow) else {
        return;
    };
    for doc in &docs {
        let _ = secret_from_value(doc);
        if let Ok(sealed) = sealed_from_value(doc) {
            let _ = kseal_core::checks::problems(&sealed, Default::default());
            let _ = kseal_core::policy::check_template(sealed.spec.template.as_ref(), &[]);
            let _ = sealed.location();
        }
    }
    for doc in &mut docs {
        scrub(doc);
    }
});
