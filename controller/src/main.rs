//! `kseal-controller`: the in-cluster controller. Today it only prints the CRD it
//! serves; reconciling, key management and the HTTP endpoints arrive with the
//! controller issue (see the README's status section).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kseal's in-cluster controller (early skeleton: only `crd` works yet).
#[derive(Debug, Parser)]
#[command(name = "kseal-controller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the SealedSecret CustomResourceDefinition as YAML
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match kseal_core::resource::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: rendering the CRD: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
