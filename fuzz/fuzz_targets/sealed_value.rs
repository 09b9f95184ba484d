//! One sealed value (base64 of an age file) as the controller opens it: the bounded
//! header parse, age's own parse and decryption with a fixed key, the envelope, and the
//! reseal re-wrap. Nothing may panic; a value the header parser refuses is never handed
//! to age.
#![no_main]

use std::sync::OnceLock;

use kseal_core::keys::{Key, Keyring, parse_identity_file};
use kseal_core::scope::{Binding, Scope};
use libfuzzer_sys::fuzz_target;

/// The key of the seed corpus (fuzz/README.md): the inputs that decrypt reach the
/// envelope and the re-wrap.
const IDENTITY: &str = "AGE-SECRET-KEY-1M2DKWTZ2LC3TLHTZH9AFRG3KV0969PF5JD63GFQXVVNVTW9WXFNSZ0D0E0";

fn keys() -> &'static (Keyring, Key) {
    static KEYS: OnceLock<(Keyring, Key)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = parse_identity_file(IDENTITY).expect("the fuzz identity parses").remove(0);
        (Keyring::new([key.clone()]), key)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = kseal_core::age_header::parse(data) {
        assert!(h.stanzas.len() <= kseal_core::age_header::MAX_STANZAS);
        assert!(h.header_len <= kseal_core::age_header::MAX_HEADER_BYTES);
    }
    let _ = kseal_core::envelope::decode(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ring, key) = keys();
    let _ = kseal_core::checks::summarize_item("k", text);
    if let Ok((binding, _)) = kseal_core::item::open_with_binding(ring, &[], text) {
        let _ = kseal_core::rewrap::rewrap(ring, key, text);
        let expected = Binding::new(Scope::ClusterWide, None, None, &binding.item);
        if let Ok(expected) = expected {
            let _ = kseal_core::item::open(ring, &[], &expected, text);
        }
    }
});
