//! `kseal-test-cluster`: runs a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, built from `tests/cluster/go.mod` when missing) in the
//! foreground until SIGINT or SIGTERM, then stops every process. For trying kseal by
//! hand, demos and benchmarks:
//!
//! ```sh
//! cargo run -p kseal-tests --bin kseal-test-cluster -- --kubeconfig /tmp/kseal.kubeconfig
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kseal_tests::cluster::{ControlPlane, Options};

/// A real Kubernetes control plane on loopback, for trying kseal locally.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Write an admin kubeconfig here (user kseal-admin, group system:masters)
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// Default namespace of the kubeconfig's context
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Encrypt Secrets with this EncryptionConfiguration (`--encryption-provider-config`)
    #[arg(long, value_name = "FILE")]
    encryption_config: Option<PathBuf>,
    /// Run without kube-controller-manager (no garbage collection)
    #[arg(long)]
    no_controller_manager: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let encryption_config = match &args.encryption_config {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let plane = ControlPlane::start(Options {
        controller_manager: !args.no_controller_manager,
        encryption_config,
        ..Options::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("starting the control plane")?;
    plane
        .write_kubeconfig(&args.kubeconfig, &plane.admin, &args.namespace)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    println!(
        "kseal-test-cluster ready at {} in {:.1} s; kubeconfig: {}; logs: {}; Ctrl-C stops it",
        plane.url,
        started.elapsed().as_secs_f64(),
        args.kubeconfig.display(),
        plane.path("").display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    plane.shutdown();
    println!("kseal-test-cluster stopped");
    Ok(())
}
