//! `kseal-test-apiserver`: runs the Kubernetes API test server until SIGINT or SIGTERM,
//! writing a kubeconfig for the admin identity. For benchmarks, demos and trying kubectl
//! against it by hand:
//!
//! ```sh
//! cargo run -p kseal-tests --bin kseal-test-apiserver -- --kubeconfig /tmp/kubeconfig &
//! kubectl --kubeconfig /tmp/kubeconfig apply --validate=false -f manifests/crd.yaml
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kseal_tests::apiserver::{Config, TestServer};

/// A Kubernetes API test server (HTTPS, in memory) for kseal's tests and benchmarks.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Write an admin kubeconfig here
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// Default namespace of the kubeconfig's context
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Change events kept for watches to resume from (older resourceVersions get 410)
    #[arg(long, default_value_t = 100_000)]
    history_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let server = TestServer::start(Config {
        addr: args.addr,
        history_limit: args.history_limit,
        ..Config::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("starting the server")?;
    server
        .write_kubeconfig(&args.kubeconfig, &server.admin_token, &args.namespace)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    println!(
        "kseal-test-apiserver listening on {} (ready in {} ms); kubeconfig: {}",
        server.url,
        started.elapsed().as_millis(),
        args.kubeconfig.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
