//! `kseal at-rest scan-etcd`: a value read from etcd, classified by its prefix and
//! framing. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["key1".to_owned(), "vault".to_owned()];
    let stored = kseal_atrest::stored::classify(data, &names);
    let _ = stored.label();
});
