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
    #[command(visible_long_flag_alias = "merge-into")]
    Merge(MergeArgs),
    /// Generate an age identity (private key) and print its recipient (public key)
    Keygen(KeygenArgs),
    /// Print the cluster's recipients document (its public keys, which --cert reads), or the fingerprints of recipients
    #[command(visible_long_flag_alias = "fetch-cert")]
    Recipients(RecipientsArgs),
    /// Show a SealedSecret's scope, items, recipients and format, without any key
    Inspect(InspectArgs),
    /// Check SealedSecret files for CI: structure, format and recipients; offline unless --cluster
    #[command(mut_arg("with_cluster", |a| a.help("Check the recipients against the keys the cluster publishes (read through the kubeconfig): each object must be sealed to one of them, and to nothing else but the recipients named with -r/-R/--cert. One sealed to an older key the cluster still holds passes, with a notice to reseal it")))]
    Validate(ValidateArgs),
    /// Disaster recovery: open a SealedSecret with a private key and print the Secret
    Unseal(UnsealArgs),
    /// Ask the cluster's controller whether it can unseal these files (no plaintext returned)
    Verify(ServiceArgs),
    /// Re-encrypt what is not sealed to its current recipients (a rotated key, a changed rule), in place
    #[command(visible_long_flag_alias = "re-encrypt")]
    Reseal(ResealArgs),
    /// Report which files are sealed to which keys, which need resealing, and which rule each follows
    Audit(AuditArgs),
    /// Find plaintext Secrets (and kustomize secretGenerators) in YAML/JSON files: for CI and pre-commit
    Scan(ScanArgs),
    /// Convert Bitnami sealed-secrets files (bitnami.com/v1alpha1) into kseal SealedSecrets, in place
    Migrate(MigrateArgs),
    /// Show the cluster's keys, the controller's leader and SealedSecrets by readiness
    Status(StatusArgs),
    /// Is the cluster storing Secrets encrypted? Lint its config, ask its apiservers, scan etcd
    #[command(name = "at-rest", subcommand)]
    AtRest(AtRest),
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
    /// Print kseal's version (as --version; kubectl's and kubeseal's habit)
    #[command(hide = true)]
    Version,
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
#[derive(Debug, Args, Default, Clone)]
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
    /// The cluster's newest key too, read through the kubeconfig from the kseal-recipients
    /// ConfigMap: with the flags above, "the cluster plus these". Without any of them,
    /// the cluster's key is used anyway
    #[arg(long = "cluster")]
    pub with_cluster: bool,
    /// Allow post-quantum (age1pq1…) and classic (age1…) recipients in one value. Refused
    /// by default: whoever breaks X25519 opens such a value through its classic stanza
    #[arg(long)]
    pub allow_classic_with_pq: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
    /// Where the sealed values may be unsealed [default: the Secret's kseal.dev/scope annotation,
    /// or kubeseal's sealedsecrets.bitnami.com/cluster-wide or namespace-wide, else strict]
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
    /// Seal Secrets for kube-system (the controller refuses them unless it runs with
    /// --allow-kube-system)
    #[arg(long)]
    pub allow_kube_system: bool,
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
    /// SealedSecret files (each may hold several documents) and directories (searched for
    /// .yaml, .yml and .json; documents that are not kseal SealedSecrets are passed over)
    #[arg(value_name = "PATH", required = true, value_hint = ValueHint::AnyPath)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub ask: AskArgs,
    /// Output format: a line per object, or one JSON report on stdout
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How the cluster's controller is asked (verify, reseal).
#[derive(Debug, Args, Clone)]
pub struct AskArgs {
    /// Ask the controller over HTTP at this address (e.g. http://127.0.0.1:8080 with
    /// `kubectl port-forward`) instead of through SealedSecretRequest objects
    #[arg(long, env = "KSEAL_CONTROLLER_URL", value_name = "URL")]
    pub controller_url: Option<String>,
    /// Namespace for the SealedSecretRequest objects [default: the context's namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// How long to wait for each of the controller's answers, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ResealArgs {
    /// SealedSecret files, or directories searched for .yaml, .yml and .json files
    #[arg(value_name = "PATH", required = true, value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,
    /// Reseal offline with this private key (an age identity file, or a backup of the
    /// controller's key Secrets), to exactly the recipients the rule or the flags name,
    /// like `sops updatekeys`; repeatable. Without it, the cluster's controller
    /// re-encrypts from its old keys to its newest, keeping every other recipient
    #[arg(short = 'i', long = "identity", value_name = "FILE", env = "KSEAL_IDENTITY", value_hint = ValueHint::FilePath)]
    pub identities: Vec<PathBuf>,
    /// Report what would be resealed, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Files resealed at once (requests in flight to a controller)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    #[command(flatten)]
    pub ask: AskArgs,
    /// Output format: a line per object resealed (and a progress bar on a terminal), or
    /// one JSON report on stdout
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    /// The recipients every object must end up sealed to, instead of its file's
    /// `.kseal.yaml` rule (with -i)
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Files or directories (searched for .yaml, .yml and .json) [default: .]
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,
    /// Do not read the clusters of the rules' contexts (their keys and key ages)
    #[arg(long)]
    pub offline: bool,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
    /// Convert nothing; only annotate each Bitnami SealedSecret's template so that the
    /// Bitnami controller leaves its Secret without an owner and kseal may take it over.
    /// Step 1 of a Flux or Argo CD migration, with no keys: commit it and let it apply
    /// before committing the converted files
    #[arg(long, conflicts_with_all = ["bitnami_keys", "via_controller"])]
    pub hand_over: bool,
    /// Convert and report, but write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the files that converted even when others could not (by default a failure
    /// anywhere writes nothing)
    #[arg(long)]
    pub keep_going: bool,
    /// With --via-controller: the namespace of SealedSecrets that name none [default: the
    /// context's namespace]; each request is made in its SealedSecret's namespace
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// With --via-controller: how long to wait for each answer, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Output format: a summary on stderr, or one JSON report on stdout (the files
    /// converted, whether they were written, the failures)
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories (searched for .yaml, .yml and .json) [default: .]
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath, conflicts_with = "staged")]
    pub paths: Vec<PathBuf>,
    /// Scan what git has staged for the next commit (the index, not the working tree)
    #[arg(long)]
    pub staged: bool,
    /// Output format: a line per finding on stderr, or one JSON report on stdout
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
}

#[derive(Debug, Args)]
pub struct RecipientsArgs {
    /// Output format [default: json for the cluster's document, as --cert reads it; text,
    /// one `FINGERPRINT RECIPIENT` line each, for recipients named with -r/-R/--cert]
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<InspectFormat>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Count only the SealedSecrets in this namespace [default: every namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity to this file (mode 0600; never overwrites) and print only the recipient
    #[arg(short = 'o', long = "output", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Make no key: print the recipient of each identity in KEYFILE, as age-keygen -y does
    #[arg(short = 'y', value_name = "KEYFILE", conflicts_with_all = ["output", "pq"], value_hint = ValueHint::FilePath)]
    pub to_public: Option<PathBuf>,
    /// A post-quantum key (ML-KEM-768 + X25519: AGE-SECRET-KEY-PQ-1…, age1pq1…), as
    /// `age-keygen -pq` makes, instead of an X25519 one
    #[arg(long)]
    pub pq: bool,
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
    /// SealedSecret files and directories to check ('-' for stdin; directories are searched
    /// for .yaml, .yml and .json, and documents that are not kseal SealedSecrets are
    /// passed over)
    #[arg(value_name = "PATH", required = true, value_hint = ValueHint::AnyPath)]
    pub files: Vec<PathBuf>,
    /// Output format: a line per object (problems and notices on stderr), or one JSON report
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
    /// The recipients every object must be sealed to: exactly these, or with --cluster,
    /// these beside one of the cluster's keys. Without any, only the structure is checked
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Pass objects in kube-system (when the controller runs with --allow-kube-system)
    #[arg(long)]
    pub allow_kube_system: bool,
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

/// kubeseal's flags that kseal spells differently (the ones spelled the same, and
/// `--fetch-cert`, `--merge-into` and `--re-encrypt`, just work), with what to use instead.
/// clap's own suggestion for them points the wrong way (`--secret-file` is not
/// `--recipients-file`).
pub const KUBESEAL_FLAGS: &[(&str, &str)] = &[
    (
        "--secret-file",
        "-f/--file FILE (kseal seal -f secret.yaml)",
    ),
    (
        "--sealed-secret-file",
        "-w/--write FILE (kseal seal -f secret.yaml -w sealed.yaml)",
    ),
    ("--format", "-o/--output yaml|json"),
    ("--recovery-unseal", "kseal unseal -i KEY -f sealed.yaml"),
    ("--recovery-private-key", "kseal unseal -i/--identity KEY"),
    (
        "--validate",
        "kseal validate FILE (offline), or kseal verify FILE (asks the controller)",
    ),
    (
        "--controller-name",
        "--controller-namespace NAMESPACE (the controller is found by its namespace)",
    ),
    (
        "--key-cutoff-time",
        "kseal reseal FILE (re-encrypts to the cluster's newest key)",
    ),
];

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
        .map_err(|e: kseal_core::scope::UnknownScope| e.to_string())
}

/// Where the cluster is and where kseal-controller runs in it.
#[derive(Debug, Args, Default, Clone)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, value_name = "FILE", env = "KUBECONFIG", value_hint = clap::ValueHint::FilePath)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace kseal-controller runs in
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "KSEAL_CONTROLLER_NAMESPACE",
        default_value = "kseal-system"
    )]
    pub controller_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum AtRest {
    /// Lint an EncryptionConfiguration file (YAML or JSON): validity, and what it does to Secrets
    Lint(LintArgs),
    /// Ask each apiserver how it stores Secrets: flags, health, metrics and a canary write
    Check(CheckArgs),
    /// Read every Secret's stored value from etcd and classify it (plaintext, provider, key)
    ScanEtcd(ScanEtcdArgs),
    /// Write Secrets back unchanged so the apiserver stores them under its current provider and key
    Rewrite(RewriteArgs),
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The file kube-apiserver's --encryption-provider-config names
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespace for the canary Secret [default: the context's namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Do not write the canary Secret (the verdict then rests on flags and metrics only)
    #[arg(long)]
    pub no_canary: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScanEtcdArgs {
    /// etcd endpoints, comma-separated (as etcdctl's --endpoints)
    #[arg(
        long,
        value_name = "URLS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's serving certificate (kubeadm: /etc/kubernetes/pki/etcd/ca.crt)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (kubeadm: /etc/kubernetes/pki/apiserver-etcd-client.crt)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key for --cert
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, requires = "cert")]
    pub key: Option<PathBuf>,
    /// kube-apiserver's --etcd-prefix
    #[arg(long, value_name = "PREFIX", default_value = "/registry")]
    pub prefix: String,
    /// The EncryptionConfiguration the apiservers run: marks values on an old provider or key as stale
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Keys read per request
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub page_size: i64,
    /// Give up on an unreachable endpoint after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RewriteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Only Secrets in this namespace [default: every namespace]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only the Secrets a `kseal at-rest scan-etcd --json` report lists as plaintext or stale
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub from_scan: Option<PathBuf>,
    /// Record progress here after each page, and resume from it when it exists
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub checkpoint: Option<PathBuf>,
    /// Secrets per page (one list request, then one checkpoint)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,
    /// Secrets rewritten at once
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Print the Secrets it would rewrite, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}
