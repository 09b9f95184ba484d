//! `kseal-controller`: parse flags, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

use kseal_controller::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.run.log_format, &cli.run.log_level);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => kseal_controller::run(cli.run).await,
        Command::RotateKey => rotate(&cli.run).await,
        Command::Crd => kseal_core::resource::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(Into::into),
        Command::Man { dir } => man(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kseal-controller man DIR`: the man pages, from the same definitions as `--help`.
fn man(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let command = <kseal_controller::config::Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("{}: cannot write", dir.display()))?;
    Ok(())
}

/// `kseal-controller rotate-key`: a new key now; the running controller picks it up.
async fn rotate(args: &kseal_controller::config::RunArgs) -> anyhow::Result<()> {
    let client = kseal_controller::client(args).await?;
    let now = time::OffsetDateTime::now_utc();
    let name = format!("kseal-key-{}", now.unix_timestamp());
    kseal_controller::keys::create_key(&client, &args.namespace, &name, now).await?;
    println!("{name}");
    Ok(())
}
