//! The exit codes the at-rest commands share beyond 0 (pass), 1 (could not run) and 2
//! (usage), as docs/at-rest.md lists them.

use std::process::ExitCode;

/// The check ran and found a problem (plaintext, an invalid config, stale data).
pub const EXIT_FAILED: u8 = 3;
/// The check ran but could not decide (missing permissions, managed control plane).
pub const EXIT_UNKNOWN: u8 = 4;

pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}
