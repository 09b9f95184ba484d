//! The at-rest checks read each apiserver's `/metrics` text. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // the families the checks read, as they ask for them
        let _ = kseal_atrest::metrics_text::parse_metrics(
            text,
            &kseal_atrest::evidence::METRIC_FAMILIES,
        );
    }
});
