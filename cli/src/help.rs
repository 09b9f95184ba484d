//! Examples and exit statuses for every command: shown at the end of `--help`, and as the
//! EXAMPLES and EXIT STATUS sections of the man pages. A test parses every example with
//! the real argument parser, so none can name a flag that does not exist.

use std::io::Write;
use std::path::Path;

use clap::Command;

/// An example: what it does, and the command line (which may pipe or redirect).
type Example = (&'static str, &'static str);
/// An exit status and what it means.
type Status = (&'static str, &'static str);

/// The examples of a command, by its path (`kseal`, `kseal seal`, `kseal at-rest lint`).
fn examples(path: &str) -> &'static [Example] {
    match path {
        "kseal" => &[
            (
                "Seal a Secret to the cluster's key (read through your kubeconfig)",
                "kseal seal -f secret.yaml -w sealed.yaml",
            ),
            ("Check it in CI, offline", "kseal validate sealed.yaml"),
            (
                "The cluster's keys, its controller, and what is unsealed",
                "kseal status",
            ),
        ],
        "kseal seal" => &[
            (
                "Seal to the cluster's key, through your kubeconfig",
                "kseal seal -f secret.yaml -w sealed.yaml",
            ),
            (
                "Keep the plaintext off disk: pipe the Secret in",
                "kubectl create secret generic db --from-literal=password=s3cr3t --dry-run=client -o yaml |\n    kseal seal -w db.sealed.yaml",
            ),
            (
                "Offline, with the cluster's published recipients document",
                "kseal seal -f secret.yaml --cert recipients.json -w sealed.yaml",
            ),
            (
                "The cluster plus an escrow key",
                "kseal seal -f secret.yaml --cluster -R escrow.recipients -w sealed.yaml",
            ),
            (
                "One value, for a hand-written SealedSecret",
                "kseal seal --raw --from-file password=./password.txt -n shop --name db",
            ),
        ],
        "kseal merge" => &[
            (
                "Add or replace one item (the others keep their exact ciphertext)",
                "kseal merge sealed.yaml --from-file api-token=./token.txt",
            ),
            (
                "Remove one",
                "kseal merge sealed.yaml --remove old-password",
            ),
            (
                "As kubeseal --merge-into: the items of a Secret on stdin",
                "kubectl create secret generic db --from-literal=token=t0k3n --dry-run=client -o yaml |\n    kseal --merge-into sealed.yaml",
            ),
        ],
        "kseal keygen" => &[
            (
                "An escrow key: the private key to a file (0600), the recipient to another",
                "kseal keygen -o escrow-key.txt > escrow.recipients",
            ),
            (
                "A post-quantum one (ML-KEM-768 + X25519), for values that must outlast X25519",
                "kseal keygen --pq -o pq-key.txt > pq.recipients",
            ),
            (
                "The recipient of a key you have (safe to run again: no key is made)",
                "kseal keygen -y escrow-key.txt > escrow.recipients",
            ),
        ],
        "kseal recipients" => &[
            (
                "The cluster's recipients document, for --cert (kubeseal --fetch-cert)",
                "kseal recipients > recipients.json",
            ),
            (
                "Another context's keys, one line each",
                "kseal recipients --context prod -o text",
            ),
            (
                "The fingerprints of recipients in a file",
                "kseal recipients -R escrow.recipients",
            ),
        ],
        "kseal inspect" => &[
            (
                "Scope, items, recipients and format",
                "kseal inspect sealed.yaml",
            ),
            ("The same as JSON", "kseal inspect sealed.yaml -o json"),
        ],
        "kseal validate" => &[
            (
                "Structure and format, offline",
                "kseal validate sealed/*.yaml",
            ),
            (
                "Sealed to exactly the keys of a published document",
                "kseal validate sealed.yaml --cert recipients.json",
            ),
            (
                "Against the cluster's keys, and an escrow key beside them",
                "kseal validate sealed/*.yaml --cluster -R escrow.recipients",
            ),
        ],
        "kseal unseal" => &[
            (
                "Disaster recovery with a backed-up key",
                "kseal unseal -i cluster-key.txt -f sealed.yaml",
            ),
            (
                "With the backup of the controller's key Secrets, straight to a cluster",
                "kseal unseal -i keys-backup.yaml -f sealed.yaml -o json | kubectl apply -f -",
            ),
        ],
        "kseal verify" => &[
            (
                "Can the cluster unseal these? (no plaintext comes back)",
                "kseal verify sealed/*.yaml",
            ),
            ("As one JSON report", "kseal verify sealed/*.yaml -o json"),
            (
                "Through a port-forward to a controller run with --http-services",
                "kseal verify sealed.yaml --controller-url http://127.0.0.1:8080",
            ),
        ],
        "kseal reseal" => &[
            (
                "After a rotation: what is on an old key moves to the newest (the controller's)",
                "kseal reseal sealed/",
            ),
            (
                "What would change, written nowhere",
                "kseal reseal sealed/ --dry-run",
            ),
            (
                "Offline, to exactly each file's .kseal.yaml rule (like sops updatekeys)",
                "kseal reseal sealed/ -i escrow-key.txt",
            ),
            (
                "One JSON summary for a CI step",
                "kseal reseal sealed/ -o json --concurrency 16",
            ),
        ],
        "kseal audit" => &[
            ("Every SealedSecret under this directory", "kseal audit"),
            (
                "Without reading any cluster, as JSON",
                "kseal audit sealed/ --offline -o json",
            ),
        ],
        "kseal migrate" => &[
            (
                "What would change, with the Bitnami key backup",
                "kseal migrate bitnami/ --bitnami-key bitnami-keys.yaml --dry-run",
            ),
            (
                "Through the controller, which imported the Bitnami keys",
                "kseal migrate bitnami/ --via-controller",
            ),
        ],
        "kseal scan" => &[
            ("Every manifest under this directory", "kseal scan"),
            (
                "What git has staged for the next commit (a plain git hook)",
                "kseal scan --staged",
            ),
            (
                "One JSON report for a CI step",
                "kseal scan deploy/ -o json",
            ),
        ],
        "kseal status" => &[
            ("Keys, leader, at-rest verdict, readiness", "kseal status"),
            ("One namespace, as JSON", "kseal status -n shop -o json"),
        ],
        "kseal at-rest" => &[
            (
                "Lint the apiserver's EncryptionConfiguration",
                "kseal at-rest lint /etc/kubernetes/enc/enc.yaml",
            ),
            ("Ask every apiserver", "kseal at-rest check"),
        ],
        "kseal at-rest lint" => &[
            ("Lint a config", "kseal at-rest lint enc.yaml"),
            ("The findings as JSON", "kseal at-rest lint enc.yaml --json"),
        ],
        "kseal at-rest check" => &[
            (
                "Flags, health, metrics and a canary Secret in namespace default",
                "kseal at-rest check -n default",
            ),
            (
                "Without writing anything, as JSON",
                "kseal at-rest check --no-canary --json",
            ),
        ],
        "kseal at-rest scan-etcd" => &[
            (
                "On a control-plane node, with etcd's CA and a client certificate etcd accepts",
                "kseal at-rest scan-etcd --cacert ca.crt --cert client.crt --key client.key",
            ),
            (
                "Also mark what is stored under an old provider or key as stale",
                "kseal at-rest scan-etcd --config enc.yaml --json > scan.json",
            ),
        ],
        "kseal at-rest rewrite" => &[
            ("What would be written", "kseal at-rest rewrite --dry-run"),
            (
                "The Secrets a scan found, resumably",
                "kseal at-rest rewrite --from-scan scan.json --checkpoint rewrite.json",
            ),
        ],
        "kseal man" => &[(
            "Install the man pages",
            "kseal man /usr/local/share/man/man1",
        )],
        "kseal completion" => &[(
            "Completions for bash",
            "kseal completion bash > /etc/bash_completion.d/kseal",
        )],
        "kseal version" => &[("The version, as kseal --version prints it", "kseal version")],
        _ => &[],
    }
}

const SUCCESS: Status = ("0", "success");
const ERROR: Status = (
    "1",
    "an error, one line on stderr naming the input; nothing is half-written",
);
const USAGE: Status = ("2", "the command line is not valid");
const CLOSED_PIPE: Status = (
    "141",
    "the reader of the output went away (kseal … | head), as with SIGPIPE",
);
const AT_REST: &[Status] = &[
    ("0", "the check passed"),
    ("1", "the check could not run (one line on stderr says why)"),
    USAGE,
    (
        "3",
        "the check failed: plaintext, an invalid config, stale data",
    ),
    (
        "4",
        "the check could not decide (missing permissions, a managed control plane)",
    ),
    CLOSED_PIPE,
];

/// The exit statuses of a command, by its path.
fn statuses(path: &str) -> Vec<Status> {
    let failure = match path {
        "kseal validate" => (
            "1",
            "an object failed (a line per problem on stderr), or a file could not be read",
        ),
        "kseal verify" => (
            "1",
            "the cluster cannot unseal an object (why, on stderr), or it could not be asked",
        ),
        "kseal reseal" => (
            "1",
            "an object could not be resealed (why, on stderr): its file is unchanged",
        ),
        "kseal migrate" => (
            "1",
            "a SealedSecret could not convert: nothing is written (--keep-going: the others are)",
        ),
        "kseal status" => ("1", "nothing could be read from the cluster"),
        "kseal scan" => (
            "1",
            "a plaintext Secret, a secretGenerator or a broken SealedSecret was found",
        ),
        "kseal at-rest rewrite" => ERROR,
        _ if path.starts_with("kseal at-rest") => return AT_REST.to_vec(),
        _ => ERROR,
    };
    vec![SUCCESS, failure, USAGE, CLOSED_PIPE]
}

/// The text `--help` ends with.
fn after_help(path: &str) -> String {
    let mut text = String::from("Examples:\n");
    for (what, line) in examples(path) {
        text.push_str(&format!("  # {what}\n"));
        for physical in line.lines() {
            text.push_str(&format!("  {physical}\n"));
        }
        text.push('\n');
    }
    text.push_str("Exit status:\n");
    for (code, meaning) in statuses(path) {
        text.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    text
}

/// `cmd` and its subcommands, each with its examples and exit statuses after its help.
pub fn decorate(cmd: Command) -> Command {
    decorate_at(cmd, "kseal")
}

fn decorate_at(mut cmd: Command, path: &str) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = format!("{path} {name}");
        cmd = cmd.mut_subcommand(&name, |sub| decorate_at(sub, &sub_path));
    }
    if examples(path).is_empty() {
        return cmd;
    }
    cmd.after_help(after_help(path))
}

/// `kseal man DIR`: a page per command (`kseal.1`, `kseal-seal.1`, …), clap_mangen's
/// sections followed by EXAMPLES and EXIT STATUS.
pub fn write_man_pages(cmd: Command, dir: &Path) -> std::io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_page(&cmd, "kseal", dir)
}

fn write_page(cmd: &Command, path: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, &format!("{path} {}", sub.get_name()), dir)?;
    }
    // clap_mangen names the pages by the bin name clap gave each subcommand.
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let mut extra = roff::Roff::new();
    extra.control("SH", ["EXAMPLES"]);
    for (what, line) in examples(path) {
        extra.control("PP", []).text([roff::roman(*what)]);
        extra.control("RS", []).control("nf", []);
        for physical in line.lines() {
            extra.text([roff::bold(physical)]);
        }
        extra.control("fi", []).control("RE", []);
    }
    extra.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in statuses(path) {
        extra
            .control("TP", [])
            .text([roff::bold(code)])
            .text([roff::roman(meaning)]);
    }
    extra.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    let mut file = std::fs::File::create(dir.join(man.get_filename()))?;
    file.write_all(&page)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    /// Every command path, `kseal` first.
    fn paths(cmd: &Command, path: &str, out: &mut Vec<String>) {
        out.push(path.to_owned());
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                paths(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
    }

    /// The kseal invocations of an example line: each pipeline stage that runs kseal,
    /// split as a shell would, up to a redirection.
    fn invocations(line: &str) -> Vec<Vec<String>> {
        line.replace('\n', " ")
            .split(" | ")
            .filter_map(|stage| shlex::split(stage.trim()))
            .filter(|words| words.first().is_some_and(|w| w == "kseal"))
            .map(|words| {
                words
                    .into_iter()
                    .take_while(|w| !w.starts_with('>') && !w.starts_with('<'))
                    .collect()
            })
            .collect()
    }

    /// The subcommand path a parsed command line runs.
    fn ran(matches: &clap::ArgMatches) -> String {
        let mut path = String::from("kseal");
        let mut at = matches;
        while let Some((name, sub)) = at.subcommand() {
            path.push(' ');
            path.push_str(name);
            at = sub;
        }
        path
    }

    #[test]
    fn every_command_has_examples_that_parse_and_run_it() {
        let cmd = Cli::command();
        let mut all = Vec::new();
        paths(&cmd, "kseal", &mut all);
        for path in &all {
            let examples = examples(path);
            assert!(!examples.is_empty(), "{path} has no example");
            for (what, line) in examples {
                assert!(what.chars().count() <= 86, "{path}: {what:?} is too wide");
                // clap would wrap a longer one mid-command; a pipeline goes on after `|`.
                for physical in line.lines() {
                    assert!(
                        physical.chars().count() <= 90,
                        "{path}: {physical:?} is too wide"
                    );
                }
                let runs = invocations(line);
                for (code, meaning) in statuses(path) {
                    assert!(
                        meaning.chars().count() <= 84,
                        "{path}: exit {code} is too wide"
                    );
                }
                assert_eq!(runs.len(), 1, "{path}: one kseal in {line:?}");
                let matches = Cli::command()
                    .try_get_matches_from(&runs[0])
                    .unwrap_or_else(|e| panic!("{path}: {line:?} does not parse: {e}"));
                // A group's examples run one of its commands.
                let ran = ran(&matches);
                assert!(
                    &ran == path || ran.starts_with(&format!("{path} ")),
                    "{path}: {line:?} runs {ran}"
                );
            }
        }
    }

    #[test]
    fn help_ends_with_examples_and_exit_statuses() {
        let mut cmd = decorate(Cli::command());
        let help = cmd
            .find_subcommand_mut("validate")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            help.contains(
                "Examples:\n  # Structure and format, offline\n  kseal validate sealed/*.yaml\n"
            ),
            "{help}"
        );
        assert!(
            help.contains("Exit status:\n    0  success\n    1  an object failed (a line per problem on stderr)"),
            "{help}"
        );
    }
}
