//! `kseal at-rest`: is the cluster storing Secrets encrypted? [`lint`] reads an
//! `EncryptionConfiguration`, [`check`] asks the apiservers through the API,
//! [`scan_etcd`] reads what etcd holds, [`rewrite`] writes Secrets back so they are
//! stored under the current provider and key. Exit codes (docs/at-rest.md): 0 pass, 1
//! could not run, 2 usage, 3 the check failed, 4 inconclusive.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::AtRest;

mod check;
mod exit_code;
mod lint;
pub mod rewrite;
mod scan_etcd;

pub fn run(command: &AtRest) -> Result<ExitCode> {
    match command {
        AtRest::Lint(args) => lint::run(args),
        AtRest::Check(args) => check::run(args),
        AtRest::ScanEtcd(args) => scan_etcd::run(args),
        AtRest::Rewrite(args) => rewrite::run(args),
    }
}
