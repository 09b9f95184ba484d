//! The security review's hostile inputs against the real controller (run as its
//! ServiceAccount under `manifests/`, with `--http-services`), measured:
//! - how long `/v1/verify` takes to refuse a sealed value with 800 stanzas (item 3) and a
//!   1 MB YAML body aliased 62 times (item 4), beside a well-formed value it opens;
//! - `/healthz` latency while four clients send both, over and over, for 10 s;
//! - the controller's peak RSS (`VmHWM`) after all of it.
//!
//! Run: `bash bench/hostile.sh` (or `cargo bench -p kseal-controller --bench hostile`).
//! Targets from the issue: `/healthz` under 100 ms, peak RSS under 64 MiB, the hostile
//! value refused in milliseconds.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use kseal_core::recipients::{RecipientSet, parse_cert};
use kseal_core::scope::Scope;
use kseal_core::sealing::seal_secret;
use zeroize::Zeroizing;

/// `POST /v1/verify`: the status code.
fn verify(port: u16, body: &[u8]) -> u16 {
    post(port, "/v1/verify", body).0
}

/// Median and maximum of `n` runs of `f`, in ms.
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[n / 2], ms[n - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut cluster = Cluster::new().await;
    let port = cluster.start_controller_with(
        "bench",
        &[
            "--http-services",
            "--rate-limit",
            "100000",
            "--rate-limit-burst",
            "100000",
        ],
    );
    let cert = cluster.recipients().await;
    let recipients =
        RecipientSet::new(parse_cert(&std::fs::read_to_string(cert).unwrap()).unwrap()).unwrap();
    wait_for_status(port, "/readyz", 200).await;

    let mut input = kseal_core::manifest::SecretInput {
        name: Some("db".into()),
        namespace: Some("shop".into()),
        ..Default::default()
    };
    input
        .data
        .insert("password".into(), Zeroizing::new(b"hunter2".to_vec()));
    let good = seal_secret(&input, Scope::Strict, &recipients).unwrap();
    let good = serde_json::to_vec(&good).unwrap();
    let mut hostile: serde_json::Value = serde_json::from_slice(&good).unwrap();
    hostile["spec"]["encryptedData"]["password"] = serde_json::json!(many_stanzas(800));
    let hostile = serde_json::to_vec(&hostile).unwrap();
    let mut alias = format!(
        "apiVersion: kseal.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a\n  namespace: shop\nspec:\n  encryptedData: {{}}\n  template:\n    data:\n      k0: &big {}\n",
        "x".repeat(1_000_000)
    );
    for i in 1..63 {
        alias.push_str(&format!("      k{i}: *big\n"));
    }
    let alias = alias.into_bytes();

    let figures = tokio::task::spawn_blocking(move || {
        assert_eq!(verify(port, &good), 200);
        assert_eq!(verify(port, &hostile), 409);
        assert_eq!(verify(port, &alias), 400);
        let good_t = time(50, || {
            verify(port, &good);
        });
        let hostile_t = time(50, || {
            verify(port, &hostile);
        });
        let alias_t = time(20, || {
            verify(port, &alias);
        });

        let until = Instant::now() + Duration::from_secs(10);
        let senders: Vec<_> = (0..4)
            .map(|i| {
                let body = if i % 2 == 0 {
                    hostile.clone()
                } else {
                    alias.clone()
                };
                std::thread::spawn(move || {
                    let mut sent = 0u32;
                    while Instant::now() < until {
                        verify(port, &body);
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        let mut health = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            let (code, _) = http_get(port, "/healthz").unwrap();
            assert_eq!(code, 200);
            health.push(t.elapsed().as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent: u32 = senders.into_iter().map(|s| s.join().unwrap()).sum();
        health.sort_by(f64::total_cmp);
        let p = |q: f64| health[((health.len() - 1) as f64 * q) as usize];
        (
            good_t,
            hostile_t,
            alias_t,
            sent,
            health.len(),
            p(0.5),
            p(0.99),
            health[health.len() - 1],
        )
    })
    .await
    .unwrap();
    let (good_t, hostile_t, alias_t, sent, n, p50, p99, max) = figures;
    let peak = cluster.peak_rss_kib("bench");
    println!("POST /v1/verify, one client, median / max of 50 (20 for the alias body):");
    println!(
        "  well-formed value (opened):          {:7.2} / {:7.2} ms",
        good_t.0, good_t.1
    );
    println!(
        "  800 stanzas, 105 KB (refused):       {:7.2} / {:7.2} ms   ratio to opening a good one: {:.2}x",
        hostile_t.0,
        hostile_t.1,
        hostile_t.0 / good_t.0
    );
    println!(
        "  1 MB body, 62 aliases (refused):     {:7.2} / {:7.2} ms",
        alias_t.0, alias_t.1
    );
    println!(
        "/healthz during 10 s of 4 clients sending both ({sent} requests): {n} probes, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (target < 100 ms)"
    );
    println!(
        "controller peak RSS (VmHWM): {:.1} MiB (target < 64 MiB)",
        peak as f64 / 1024.0
    );
}
