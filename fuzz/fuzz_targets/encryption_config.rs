//! `kseal at-rest lint`: an EncryptionConfiguration file (YAML or JSON), through strict
//! decoding, validation and the Secrets policy. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lint = kseal_atrest::config::lint(data);
    let _ = lint.failed();
    let _ = format!("{lint:?}");
});
