//! `kseal`: parse the command line and dispatch. Logic lives in `cmd/`.

mod ask;
mod cli;
mod cluster;
mod cmd;
mod help;
mod io;
mod recipient_flags;
mod rules;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let mut command = help::decorate(Cli::command());
    // Installed as `kubectl-kseal`, kubectl runs it for `kubectl kseal …`.
    let invoked_as = std::env::args_os().next().and_then(|a| {
        std::path::Path::new(&a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    if invoked_as.as_deref() == Some("kubectl-kseal") {
        command = command.bin_name("kubectl kseal");
    }
    let args = namespace_after_subcommand(std::env::args_os());
    if let Some(hint) = stdin_hint(&args) {
        eprintln!("error: {hint}");
        return ExitCode::from(2);
    }
    let matches = match command.try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => {
            if let Some(hint) = kubeseal_hint(&e) {
                eprintln!("error: {hint}");
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
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

/// kubectl users put the namespace first (`kubectl kseal -n shop status`): a leading
/// `-n NS`, `-nNS`, `--namespace NS` or `--namespace=NS` moves after the subcommand's name,
/// where each subcommand that takes a namespace reads it (and any other refuses it).
fn namespace_after_subcommand(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let mut end = 1;
    while let Some(arg) = args.get(end).and_then(|a| a.to_str()) {
        end += match arg {
            "-n" | "--namespace" => 2,
            _ if arg.starts_with("--namespace=") || (arg.starts_with("-n") && arg.len() > 2) => 1,
            _ => break,
        };
    }
    let subcommand = args.get(end).and_then(|a| a.to_str());
    if end > 1 && end < args.len() && subcommand.is_some_and(|s| !s.starts_with('-')) {
        args[1..=end].rotate_right(1);
    }
    args
}

/// kubeseal reads a Secret from stdin with no command, and `--re-encrypt` reads a
/// SealedSecret from stdin; kseal's commands name what they do, and reseal works on files in
/// place. Said in one line when stdin is not a terminal, instead of clap's usage text.
fn stdin_hint(args: &[OsString]) -> Option<&'static str> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return None;
    }
    match args.get(1).and_then(|a| a.to_str()) {
        None => Some(
            "kseal needs a command: to seal the Secret on stdin as kubeseal does, run `kseal seal` (kseal --help lists the commands)",
        ),
        Some("--re-encrypt" | "reseal") if args.len() == 2 => Some(
            "kseal reseal (kubeseal's --re-encrypt) works in place on files and directories, not on stdin: kseal reseal sealed.yaml",
        ),
        _ => None,
    }
}

/// For a kubeseal flag kseal does not take: what to use instead, in place of clap's
/// nearest-spelling suggestion.
fn kubeseal_hint(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = given.split('=').next().unwrap_or(given);
    let (_, instead) = cli::KUBESEAL_FLAGS.iter().find(|(k, _)| *k == flag)?;
    Some(format!(
        "unexpected argument '{flag}': that is kubeseal's; in kseal use {instead}"
    ))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Seal(args) => cmd::seal::run(&args),
        Command::Merge(args) => cmd::merge::run(&args),
        Command::Keygen(args) => cmd::keygen::run(&args),
        Command::Recipients(args) => cmd::recipients::run(&args),
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Unseal(args) => cmd::unseal::run(&args),
        Command::Verify(args) => cmd::verify::verify(&args),
        Command::Reseal(args) => cmd::reseal::run(&args),
        Command::Audit(args) => cmd::audit::run(&args),
        Command::Migrate(args) => cmd::migrate::run(&args),
        Command::Scan(args) => cmd::scan::run(&args),
        Command::Status(args) => cmd::status::run(&args),
        Command::Completion { shell } => {
            // Into a buffer: clap_complete panics when its own write fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kseal", &mut script);
            io::write_output(None, &script)
        }
        Command::AtRest(command) => return cmd::atrest::run(&command),
        Command::Version => io::write_output(
            None,
            format!("kseal {}\n", env!("CARGO_PKG_VERSION")).as_bytes(),
        ),
        Command::Man { dir } => {
            use anyhow::Context as _;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            help::write_man_pages(Cli::command(), &dir)
                .with_context(|| format!("{}: cannot write", dir.display()))
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(args: &[&str]) -> Vec<String> {
        namespace_after_subcommand(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_leading_namespace_moves_after_the_subcommand() {
        assert_eq!(
            moved(&["k", "-n", "shop", "status"]),
            ["k", "status", "-n", "shop"]
        );
        assert_eq!(
            moved(&["k", "--namespace=shop", "seal", "-f", "s.yaml"]),
            ["k", "seal", "--namespace=shop", "-f", "s.yaml"]
        );
        assert_eq!(moved(&["k", "-nshop", "status"]), ["k", "status", "-nshop"]);
        // Nothing to move, or nothing to move it after: left for clap to judge.
        assert_eq!(
            moved(&["k", "status", "-n", "shop"]),
            ["k", "status", "-n", "shop"]
        );
        assert_eq!(moved(&["k", "-n", "shop"]), ["k", "-n", "shop"]);
        assert_eq!(
            moved(&["k", "-n", "shop", "--help"]),
            ["k", "-n", "shop", "--help"]
        );
    }
}
