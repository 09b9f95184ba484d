//! kseal's integration tests, built as one test binary: one compile of `common` and
//! one link for all of them, instead of one per file. Each file is a module named after
//! it (`round_trip::…`, `snapshots::…`); nextest still runs every test in a process of
//! its own.

mod common;

#[path = "at_rest_check.rs"]
mod at_rest_check;
#[path = "at_rest_lint.rs"]
mod at_rest_lint;
#[path = "at_rest_scan.rs"]
mod at_rest_scan;
#[path = "hygiene.rs"]
mod hygiene;
#[path = "man.rs"]
mod man;
#[path = "merge.rs"]
mod merge;
#[path = "precommit.rs"]
mod precommit;
#[path = "round_trip.rs"]
mod round_trip;
#[path = "rules.rs"]
mod rules;
#[path = "scan.rs"]
mod scan;
#[path = "snapshots.rs"]
mod snapshots;
#[path = "tamper.rs"]
mod tamper;
