//! `kseal-controller`: parse flags, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

use kseal_controller::flags::{Cli, Command, CustodyCommand, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc, configured in `.cargo/config.toml` (one arena, no thread caches): the caches
/// are many small objects, which glibc's malloc gives a header each and whose freed pages
/// its per-thread arenas keep.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let command = cli.command.unwrap_or(Command::Run(Box::new(cli.run)));
    let common = match &command {
        Command::Run(run) => Some(&run.common),
        Command::RotateKey(rotate) => Some(&rotate.common),
        Command::Custody(CustodyCommand::Wrap(args) | CustodyCommand::Unwrap(args)) => {
            Some(&args.common)
        }
        Command::Crd | Command::Man { .. } => None,
    };
    if let Some(common) = common {
        init_logging(common.log_format, &common.log_level);
    }
    let result = match command {
        Command::Run(run) => kseal_controller::run(*run).await,
        Command::RotateKey(args) => rotate(&args).await,
        Command::Custody(CustodyCommand::Wrap(args)) => {
            custody(&args, kseal_controller::custody::moves::Direction::Wrap).await
        }
        Command::Custody(CustodyCommand::Unwrap(args)) => {
            custody(&args, kseal_controller::custody::moves::Direction::Unwrap).await
        }
        Command::Crd => kseal_controller::crd::crd_yaml()
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
    let command = <kseal_controller::flags::Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("{}: cannot write", dir.display()))?;
    Ok(())
}

/// `kseal-controller rotate-key`: a new key now (wrapped, under custody); the running
/// controller picks it up.
async fn rotate(args: &kseal_controller::flags::RotateArgs) -> anyhow::Result<()> {
    let client = kseal_controller::client(&args.common).await?;
    let custody = kseal_controller::custody::Custody::from_args(&args.custody, &client)?;
    let now = time::OffsetDateTime::now_utc();
    // Named as the scheduled rotation names keys, to the second.
    let name =
        kseal_controller::keys::key_name(now, std::time::Duration::from_secs(1), args.key_type);
    kseal_controller::keys::create_key(
        &client,
        &args.common.namespace,
        &name,
        now,
        args.key_type,
        custody.as_deref(),
    )
    .await?;
    println!("{name}");
    Ok(())
}

/// `kseal-controller custody wrap|unwrap`: every key Secret moved to the other form.
async fn custody(
    args: &kseal_controller::flags::CustodyCommandArgs,
    direction: kseal_controller::custody::moves::Direction,
) -> anyhow::Result<()> {
    let client = kseal_controller::client(&args.common).await?;
    let Some(custody) = kseal_controller::custody::Custody::from_args(&args.custody, &client)?
    else {
        anyhow::bail!("custody wrap and unwrap need a custodian: --custody kms-v2 or pkcs11");
    };
    kseal_controller::custody::moves::move_keys(
        &client,
        &args.common.namespace,
        &custody,
        direction,
    )
    .await
}
