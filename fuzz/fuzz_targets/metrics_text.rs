//! The at-rest checks read each apiserver's `/metrics` text. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kseal_core::atrest::evidence::parse_metrics(
            text,
            &[
                "apiserver_storage_transformation_operations_total",
                "apiserver_encryption_config_controller_automatic_reload_success_total",
            ],
        );
    }
});
