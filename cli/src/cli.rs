//! Command-line definitions. Parsing only; each subcommand's logic is in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
use kseal_core::scope::Scope;

/// Seal Kubernetes Secrets with your cluster's public key, so they are safe to commit.
///
/// Only the kseal controller in the cluster (or whoever holds one of the private keys the
/// items were sealed to) can turn a SealedSecret back into a Secret.
#[derive(Debug, Parser)]
#[command(
    name = "kseal",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Seal Secrets (YAML or JSON, one or more documents) into SealedSecrets
    Seal(SealArgs),
    /// Add, replace or remove items in an existing SealedSecret file
    Merge(MergeArgs),
    /// Generate an age identity (private key) and print its recipient (public key)
    Keygen(KeygenArgs),
    /// Show a SealedSecret's scope, items, recipients and format, without any key
    Inspect(InspectArgs),
    /// Check SealedSecret files offline: structure, format and recipients (for CI)
    Validate(ValidateArgs),
    /// Disaster recovery: open a SealedSecret with a private key and print the Secret
    Unseal(UnsealArgs),
    /// Ask the cluster's controller whether it can unseal these files (no plaintext returned)
    Verify(ServiceArgs),
    /// Re-encrypt files to the cluster's newest key through its controller, in place
    Reseal(ServiceArgs),
    /// Convert Bitnami sealed-secrets files (bitnami.com/v1alpha1) into kseal SealedSecrets, in place
    Migrate(MigrateArgs),
    /// Show the cluster's keys, the controller's leader and SealedSecrets by readiness
    Status {
        #[command(flatten)]
        cluster: crate::cluster::ClusterArgs,
        /// Count only the SealedSecrets in this namespace [default: every namespace]
        #[arg(short = 'n', long, value_name = "NAMESPACE")]
        namespace: Option<String>,
    },
    /// Is the cluster storing Secrets encrypted? Lint its config, ask its apiservers, scan etcd
    #[command(name = "at-rest", subcommand)]
    AtRest(crate::cmd::atrest::AtRest),
    /// Write man pages (kseal.1 and one per subcommand) into a directory
    Man {
        #[arg(value_name = "DIR", value_hint = ValueHint::DirPath)]
        dir: PathBuf,
    },
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

/// The recipients (public keys): the ones `seal` and `merge` seal to (every item to all of
/// them, so any one of the matching private keys opens it), and the ones `validate`
/// expects. At least one is required.
#[derive(Debug, Args, Default)]
pub struct RecipientArgs {
    /// An age recipient (age1…); repeatable, or comma-separated
    #[arg(
        short = 'r',
        long = "recipient",
        value_name = "RECIPIENT",
        env = "KSEAL_RECIPIENT",
        value_delimiter = ','
    )]
    pub recipients: Vec<String>,
    /// Every recipient in this file (age's format: one per line, # comments); repeatable
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE", env = "KSEAL_RECIPIENTS_FILE", value_hint = ValueHint::FilePath)]
    pub recipients_files: Vec<PathBuf>,
    /// The newest key of a cluster's published recipients document (a file or an http(s) URL); repeatable
    #[arg(long = "cert", value_name = "FILE|URL", env = "KSEAL_CERT")]
    pub certs: Vec<String>,
    /// Without any of the above, the cluster's newest key is read from the kseal-recipients
    /// ConfigMap through the kubeconfig
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    /// Read Secrets from this file instead of stdin
    #[arg(short = 'f', long = "file", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// Output format [default: yaml, or json when -w ends in .json]
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// Write to this file (replaced atomically, and only if sealing succeeds) instead of stdout
    #[arg(short = 'w', long = "write", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub write: Option<PathBuf>,
    /// Where the sealed values may be unsealed [default: the Secret's kseal.dev/scope annotation, else strict]
    #[arg(long, value_parser = parse_scope)]
    pub scope: Option<Scope>,
    /// Namespace, for Secrets that do not name one (and for --raw)
    #[arg(short = 'n', long, env = "KSEAL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name, for a Secret that does not name one (and for --raw)
    #[arg(long)]
    pub name: Option<String>,
    /// Seal a single value from stdin or --from-file and print only the sealed value
    #[arg(long)]
    pub raw: bool,
    /// With --raw: the item key the value will have in the Secret
    #[arg(long)]
    pub key: Option<String>,
    /// With --raw: read the value from this file ([KEY=]PATH; KEY defaults to the file name)
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    pub from_file: Option<String>,
    /// Seal Secrets that have no data (they would become empty Secrets)
    #[arg(long)]
    pub allow_empty_data: bool,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The SealedSecret file to update in place (atomically)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Add or replace an item from a literal value (visible in your shell history and ps)
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// Add or replace an item from a file's contents (KEY defaults to the file name)
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// Remove an item; repeatable
    #[arg(long = "remove", value_name = "KEY")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// SealedSecret files (each may hold several documents)
    #[arg(value_name = "FILE", required = true, value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    /// Ask the controller over HTTP at this address (e.g. http://127.0.0.1:8080 with
    /// `kubectl port-forward`) instead of through SealedSecretRequest objects
    #[arg(long, env = "KSEAL_CONTROLLER_URL", value_name = "URL")]
    pub controller_url: Option<String>,
    /// Namespace for the SealedSecretRequest objects [default: the context's namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// How long to wait for the controller's answer, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Files or directories (searched for .yaml, .yml and .json files); every Bitnami
    /// SealedSecret in them is replaced by a kseal one, other documents are kept
    #[arg(value_name = "PATH", required = true, value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,
    /// A Bitnami private key: PEM, or the key Secrets as `kubectl get secret -n
    /// kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` prints them;
    /// repeatable
    #[arg(long = "bitnami-key", value_name = "FILE", env = "KSEAL_BITNAMI_KEY", value_delimiter = ',', value_hint = ValueHint::FilePath)]
    pub bitnami_keys: Vec<PathBuf>,
    /// Without --bitnami-key: ask the cluster's kseal controller, which imported the
    /// Bitnami keys (--bitnami-keys-namespace), to migrate each SealedSecret
    #[arg(long, conflicts_with = "bitnami_keys")]
    pub via_controller: bool,
    /// Convert and report, but write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the files that converted even when others could not (by default a failure
    /// anywhere writes nothing)
    #[arg(long)]
    pub keep_going: bool,
    /// With --via-controller: namespace for the SealedSecretRequest objects [default: the
    /// context's namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// With --via-controller: how long to wait for each answer, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity to this file (mode 0600; never overwrites) and print only the recipient
    #[arg(short = 'o', long = "output", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SealedSecret file ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// SealedSecret files to check ('-' for stdin)
    #[arg(value_name = "FILE", required = true, value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    /// Also require every item to be sealed to exactly these recipients
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct UnsealArgs {
    /// An age identity file holding one or more private keys, or a backup of the
    /// controller's key Secrets (`kubectl get secret -n kseal-system -l kseal.dev/key -o
    /// yaml`); repeatable
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true, env = "KSEAL_IDENTITY", value_hint = ValueHint::FilePath)]
    pub identities: Vec<PathBuf>,
    /// Read SealedSecrets from this file instead of stdin
    #[arg(short = 'f', long = "file", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
        .map_err(|e: kseal_core::scope::UnknownScope| e.to_string())
}
