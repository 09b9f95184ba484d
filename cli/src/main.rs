//! `kseal`: parse the command line and dispatch. Logic lives in `cmd/`.

mod cli;
mod cluster;
mod cmd;
mod io;
mod recipients;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let mut command = Cli::command();
    // Installed as `kubectl-kseal`, kubectl runs it for `kubectl kseal …`.
    let invoked_as = std::env::args_os().next().and_then(|a| {
        std::path::Path::new(&a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    if invoked_as.as_deref() == Some("kubectl-kseal") {
        command = command.bin_name("kubectl kseal");
    }
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`kseal … | head`): stop quietly with the status a shell
        // reports for a process ended by SIGPIPE, as kubectl and age do.
        Err(e) if io::closed_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Seal(args) => cmd::seal::run(&args),
        Command::Merge(args) => cmd::merge::run(&args),
        Command::Keygen(args) => cmd::keygen::run(&args),
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Unseal(args) => cmd::unseal::run(&args),
        Command::Verify(args) => cmd::services::verify(&args),
        Command::Reseal(args) => cmd::services::reseal(&args),
        Command::Migrate(args) => cmd::migrate::run(&args),
        Command::Status { cluster } => {
            let connected = cluster::Cluster::connect(&cluster)?.ok_or_else(|| {
                anyhow::anyhow!("no kubeconfig: pass --kubeconfig or set $KUBECONFIG")
            })?;
            io::out!("{}", connected.status()?)
        }
        Command::Completion { shell } => {
            // Into a buffer: clap_complete panics when its own write fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kseal", &mut script);
            io::write_output(None, &script)
        }
        Command::AtRest(command) => return cmd::atrest::run(&command),
        Command::Man { dir } => {
            use anyhow::Context as _;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("{}: cannot write", dir.display()))?;
            Ok(())
        }
    }
    .map(|()| ExitCode::SUCCESS)
}
