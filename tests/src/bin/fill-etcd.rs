//! Fills an etcd with N Secrets in kube-apiserver's formats, for `bench/scan-etcd.sh`:
//! mostly kms v2 and secretbox, some aescbc on an old key, 2% plaintext protobuf.
//!
//! `fill-etcd --endpoint http://127.0.0.1:2379 --count 100000 [--prefix /registry]`

use anyhow::{Context, Result};
use clap::Parser;
use kseal_tests::stored_values as v;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    #[arg(long, default_value = "/registry")]
    prefix: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut client = kseal_etcd::Client::connect(&[&args.endpoint], Default::default())
        .await
        .with_context(|| format!("--endpoint {}", args.endpoint))?;
    let key = [7u8; 32];
    let value = vec![b'x'; 600];
    let mut batch = Vec::new();
    for i in 0..args.count {
        let ns = format!("team-{}", i % 200);
        let name = format!("app-secret-{i:06}");
        let etcd_key = format!("{}/secrets/{ns}/{name}", args.prefix);
        let plain = v::secret_protobuf(&ns, &name, &[("config", &value), ("token", b"abc")]);
        let stored = match i % 50 {
            0 => plain,
            1..=5 => v::aescbc("key1", &key, &plain),
            6..=20 => v::secretbox("key2", &key, &plain),
            _ => v::kms_v2("vault", "kek-2026-11", &plain, &etcd_key),
        };
        batch.push((etcd_key.into_bytes(), stored));
        if batch.len() == 100 || i + 1 == args.count {
            client.put_all(std::mem::take(&mut batch)).await?;
        }
    }
    println!(
        "wrote {} Secrets under {}/secrets/",
        args.count, args.prefix
    );
    Ok(())
}
