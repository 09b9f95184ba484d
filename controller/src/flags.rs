//! Command-line flags of `kseal-controller` (each also an environment variable), and the
//! kube client they pick.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::Client;

/// kseal's in-cluster controller: unseals SealedSecrets into Secrets, owns and rotates the
/// cluster keys, publishes the public recipients, serves health and metrics.
#[derive(Debug, Parser)]
#[command(
    name = "kseal-controller",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default)
    Run(Box<RunArgs>),
    /// Create a new sealing key now (for a CronJob) and exit
    RotateKey(RotateArgs),
    /// Move the key Secrets onto key custody (wrap) or off it (unwrap)
    #[command(subcommand)]
    Custody(CustodyCommand),
    /// Print the SealedSecret CustomResourceDefinition as YAML
    Crd,
    /// Write man pages (kseal-controller.1 and one per subcommand) into a directory
    Man {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What the controller does about a cluster that stores Secrets in plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AtRestPolicy {
    /// Run no checks.
    Off,
    /// Check and report (metric, Event, `kseal status`), and unseal anyway.
    Warn,
    /// Check, report, and unseal nothing while the verdict is plaintext.
    Enforce,
}

/// The flags every command that talks to the cluster takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Namespace holding the keys, the recipients ConfigMap and the leader Lease
    #[arg(
        long,
        env = "KSEAL_CONTROLLER_NAMESPACE",
        default_value = "kseal-system"
    )]
    pub namespace: String,
    /// Log format
    #[arg(long, env = "KSEAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (or RUST_LOG for per-module filters)
    #[arg(long, env = "KSEAL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Path to a kubeconfig (in the cluster the pod's service account is used)
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// The kind of sealing key the controller makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// Classic age X25519 keys (age1…): what every age reads.
    X25519,
    /// Post-quantum hybrid ML-KEM-768 + X25519 keys (age1pq1…; Go age 1.3 and newer read them).
    Pq,
}

/// The flags of `rotate-key`.
#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The kind of key to make
    #[arg(long, env = "KSEAL_KEY_TYPE", value_enum, default_value_t = KeyType::X25519)]
    pub key_type: KeyType,
    #[command(flatten)]
    pub custody: CustodyArgs,
}

/// The flags of `run`, the controller itself.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Watch only these namespaces (comma-separated) instead of all
    #[arg(long, env = "KSEAL_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Never unseal into these namespaces (comma-separated), besides --namespace and
    /// --bitnami-keys-namespace, which are always refused
    #[arg(long, env = "KSEAL_DENY_NAMESPACES", value_delimiter = ',')]
    pub deny_namespaces: Vec<String>,
    /// Unseal into kube-system too (refused by default: the apiserver and add-ons act on
    /// Secrets there with cluster-wide power; bootstrap tokens stay refused)
    #[arg(long, env = "KSEAL_ALLOW_KUBE_SYSTEM")]
    pub allow_kube_system: bool,
    /// Label and annotation key prefixes a template may set although they are refused by
    /// default (comma-separated; e.g. reflector.v1.k8s.emberstack.com/ to let reflector
    /// copy unsealed Secrets). kseal.dev/ and the Bitnami key label cannot be allowed
    #[arg(long, env = "KSEAL_ALLOW_TEMPLATE_METADATA", value_delimiter = ',')]
    pub allow_template_metadata: Vec<String>,
    /// Import the Bitnami sealed-secrets keys from this namespace (Secrets labelled
    /// sealedsecrets.bitnami.com/sealed-secrets-key=active, as the Bitnami controller
    /// makes them; watched, so renewals are picked up), to answer kseal migrate
    /// --via-controller and, with --bitnami-drop-in, to unseal Bitnami SealedSecrets
    #[arg(long, env = "KSEAL_BITNAMI_KEYS_NAMESPACE", value_name = "NAMESPACE")]
    pub bitnami_keys_namespace: Option<String>,
    /// Also unseal Bitnami SealedSecrets (bitnami.com/v1alpha1) with the imported keys,
    /// taking over the Secrets the Bitnami controller made (needs --bitnami-keys-namespace)
    #[arg(
        long,
        env = "KSEAL_BITNAMI_DROP_IN",
        requires = "bitnami_keys_namespace"
    )]
    pub bitnami_drop_in: bool,
    /// The kind of key to make: when the newest key is of the other kind, a key of this
    /// kind is made at once (a rotation; the older keys keep unsealing what they sealed)
    #[arg(long, env = "KSEAL_KEY_TYPE", value_enum, default_value_t = KeyType::X25519)]
    pub key_type: KeyType,
    /// Create a new key when the newest is this old (e.g. 30d, 12h)
    #[arg(long, env = "KSEAL_KEY_ROTATION_PERIOD", default_value = "30d", value_parser = parse_duration)]
    pub key_rotation_period: Duration,
    /// Keys created before this RFC 3339 time are retired: neither used nor published
    #[arg(long, env = "KSEAL_KEY_CUTOFF")]
    pub key_cutoff: Option<String>,
    /// Also serve /v1/verify and /v1/reseal on --listen-addr, to any client that reaches
    /// the port (off: kseal verify and kseal reseal use SealedSecretRequest objects, which
    /// Kubernetes RBAC governs)
    #[arg(long, env = "KSEAL_HTTP_SERVICES")]
    pub http_services: bool,
    /// Address for /healthz, /readyz, /v1/recipients (and /v1/verify, /v1/reseal with
    /// --http-services)
    #[arg(long, env = "KSEAL_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Address for /metrics
    #[arg(long, env = "KSEAL_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    pub metrics_addr: SocketAddr,
    /// This replica's identity for leader election (defaults to the hostname)
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration for leader election
    #[arg(long, env = "KSEAL_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// SealedSecrets reconciled at the same time (bounds memory and API load)
    #[arg(long, env = "KSEAL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Requests per second each client may make to /v1/verify and /v1/reseal
    #[arg(long, env = "KSEAL_RATE_LIMIT", default_value_t = 5)]
    pub rate_limit: u32,
    /// Burst allowed above --rate-limit
    #[arg(long, env = "KSEAL_RATE_LIMIT_BURST", default_value_t = 10)]
    pub rate_limit_burst: u32,
    /// What to do when the cluster stores Secrets in plaintext: off (no checks), warn
    /// (report it), enforce (also stop unsealing while the verdict is plaintext)
    #[arg(long, env = "KSEAL_REQUIRE_ENCRYPTION_AT_REST", value_enum, default_value_t = AtRestPolicy::Warn)]
    pub require_encryption_at_rest: AtRestPolicy,
    /// How often to re-run the encryption-at-rest checks
    #[arg(long, env = "KSEAL_AT_REST_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub at_rest_interval: Duration,
    #[command(flatten)]
    pub custody: CustodyArgs,
}

/// The flags of `custody wrap` and `custody unwrap`.
#[derive(Debug, Clone, Args)]
pub struct CustodyCommandArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub custody: CustodyArgs,
}

/// Moving the key Secrets onto custody, or off it.
#[derive(Debug, Subcommand)]
pub enum CustodyCommand {
    /// Wrap every key Secret that holds its identity in plaintext, in place (one atomic
    /// update per key; the running controller keeps its keys throughout)
    Wrap(CustodyCommandArgs),
    /// Write every wrapped key's identity back in plaintext, in place: the way off a
    /// custodian being retired (run it before the controller drops --custody)
    Unwrap(CustodyCommandArgs),
}

/// Who holds the key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CustodyKind {
    /// No custody: key Secrets hold their identity in plaintext (as before custody).
    None,
    /// A Kubernetes KMS v2 plugin on a unix socket (a sidecar, or the control plane's).
    KmsV2,
    /// A non-extractable AES key on a PKCS#11 token (an HSM); needs the dynamically
    /// linked controller, which can load the module.
    Pkcs11,
}

/// The custody flags, taken by `run`, `rotate-key` and `custody`.
#[derive(Debug, Clone, Args)]
pub struct CustodyArgs {
    /// Who holds the key-encryption key that wraps the cluster's keys
    #[arg(long = "custody", env = "KSEAL_CUSTODY", value_enum, default_value_t = CustodyKind::None)]
    pub kind: CustodyKind,
    /// The KMS v2 plugin's unix socket (--custody kms-v2)
    #[arg(
        long,
        env = "KSEAL_CUSTODY_KMS_SOCKET",
        default_value = "/var/run/kseal-kms/kms.sock"
    )]
    pub custody_kms_socket: PathBuf,
    /// How long one call to the custodian may take
    #[arg(long, env = "KSEAL_CUSTODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub custody_timeout: Duration,
    /// The PKCS#11 module (a shared library) (--custody pkcs11)
    #[arg(long, env = "KSEAL_CUSTODY_PKCS11_MODULE")]
    pub custody_pkcs11_module: Option<PathBuf>,
    /// The label of the token holding the key-encryption key (--custody pkcs11)
    #[arg(long, env = "KSEAL_CUSTODY_PKCS11_TOKEN")]
    pub custody_pkcs11_token: Option<String>,
    /// The label of the AES key new keys are wrapped under; changing it rotates the KEK
    /// (keys are wrapped again, the old key stays on the token to unwrap until then)
    #[arg(long, env = "KSEAL_CUSTODY_PKCS11_KEY")]
    pub custody_pkcs11_key: Option<String>,
    /// The token's user PIN (from a Secret, as an environment variable)
    #[arg(long, env = "KSEAL_CUSTODY_PKCS11_PIN", hide_env_values = true, value_parser = parse_pin)]
    pub custody_pkcs11_pin: Option<Pin>,
    /// A file holding the token's user PIN (a mounted Secret), instead of
    /// --custody-pkcs11-pin; a trailing newline is ignored
    #[arg(
        long,
        env = "KSEAL_CUSTODY_PKCS11_PIN_FILE",
        conflicts_with = "custody_pkcs11_pin"
    )]
    pub custody_pkcs11_pin_file: Option<PathBuf>,
    /// How often the leader asks the custodian for its current KEK, to wrap keys again
    /// after a KEK rotation (also whenever the keys change)
    #[arg(long, env = "KSEAL_CUSTODY_CHECK_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub custody_check_interval: Duration,
    /// The cluster identity wrapped keys are bound to (default: the UID of the
    /// kube-system namespace); set it to the old cluster's when restoring keys into a
    /// new one
    #[arg(long, env = "KSEAL_CUSTODY_CLUSTER_ID")]
    pub custody_cluster_id: Option<String>,
}

/// `30d`, `12h`, `15m`, `45s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30d, 12h, 15m or 45s"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" | "" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use d, h, m, s or ms)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// A kube client from `--kubeconfig`, else the usual in-cluster or `KUBECONFIG` lookup.
pub async fn client(args: &CommonArgs) -> anyhow::Result<Client> {
    Ok(Client::try_from(kube_config(args).await?)?)
}

/// A token PIN given as a flag or variable: wiped on drop, and `[redacted]` wherever the
/// parsed flags are printed with `{:?}`.
#[derive(Clone)]
pub struct Pin(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

fn parse_pin(text: &str) -> Result<Pin, std::convert::Infallible> {
    Ok(Pin(zeroize::Zeroizing::new(text.to_owned())))
}

/// The client configuration (the at-rest probe pins one client per apiserver from it).
pub async fn kube_config(args: &CommonArgs) -> anyhow::Result<kube::Config> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &args.kubeconfig {
        Some(path) => {
            // kube's message names the file and repeats its cause: one line instead.
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| match e {
                kube::config::KubeconfigError::ReadConfig(io, _) => {
                    anyhow::anyhow!("kubeconfig {}: {io}", path.display())
                }
                other => anyhow::anyhow!("kubeconfig {}: {other}", path.display()),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("finding cluster credentials")?,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn a_pin_given_as_a_flag_never_prints() {
        let flags = Cli::try_parse_from([
            "kseal-controller",
            "custody",
            "wrap",
            "--custody",
            "pkcs11",
            "--custody-pkcs11-pin",
            "0918-not-printed",
        ])
        .unwrap();
        let printed = format!("{flags:?}");
        assert!(!printed.contains("0918-not-printed"), "{printed}");
        assert!(printed.contains("Pin([redacted])"), "{printed}");
    }
}
