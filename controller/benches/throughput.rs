//! The controller at scale, against a real kube-apiserver (and etcd) started by
//! `kseal_tests::cluster`, a fresh one per round:
//! - N new SealedSecrets (1,000, 10,000 and 100,000) created at once while the
//!   controller runs → time until every Secret exists; and N more created while it is
//!   stopped, then started → time until all N report Ready (the controller's own rate:
//!   per object a Secret, a status and an Event, no create beside them); both beside the
//!   apiserver's raw rates from a plain kube-rs client measured in the same run: Secret
//!   creates, Secret server-side applies, and SealedSecret status patches. A new object
//!   needs an apply and a status patch, so `1 / (1/applies + 1/status patches)` is the
//!   most any controller can reach on this apiserver (the target, 0.4× the
//!   create rate, assumed each write costs a create: a status patch on a CRD costs
//!   about twice as much);
//! - a restart with every object up to date: time until the new process has looked at
//!   every one, its decryptions and writes (its own metrics), and the apiserver's own
//!   count of requests on Secrets, SealedSecrets and Events meanwhile (target: none);
//! - controller RSS with N objects, then with 50,000 unrelated Secrets added (targets:
//!   ≤ 40 MiB at 10,000, ≤ 200 MiB at 100,000, no growth from the unrelated Secrets), and
//!   how much of it is the binary mapped from its file. `KSEAL_CONTROLLER_BIN` runs
//!   another build of the controller, such as the `dist` one the image ships.
//!
//! Run: `cargo bench -p kseal-controller --bench throughput` (about 20 minutes);
//! `-- 1000`, `-- 10000` or `-- 100000` runs one round. `KSEAL_KEY_TYPE=pq` runs the
//! controller with a post-quantum key (every object then sealed to it).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{CONCURRENCY, cpu_seconds, create_all, metric, plain_secret, start_kseal, wait_count};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kseal_core::keys::Key;
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::SealedSecret;
use kseal_tests::cluster::ControlPlane;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// The apiserver's `apiserver_request_total` summed over the requests that reach
/// Secrets, SealedSecrets and Events, excluding list and watch: (writes, gets).
async fn apiserver_requests(admin: &Client) -> (f64, f64) {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = admin.request_text(request).await.unwrap();
    let mut counts = (0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let resource = ["\"secrets\"", "\"sealedsecrets\"", "\"events\""]
            .iter()
            .any(|r| line.contains(&format!("resource={r}")));
        if !resource {
            continue;
        }
        let value: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
        if ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
            .iter()
            .any(|v| line.contains(&format!("verb=\"{v}\"")))
        {
            counts.0 += value;
        } else if line.contains("verb=\"GET\"") {
            counts.1 += value;
        }
    }
    counts
}

async fn plane() -> (ControlPlane, Client) {
    common::plane(&["raw", "kseal", "backlog", "noise", "kseal-system"], "").await
}

/// How many of the SealedSecrets in `namespace` report Ready=True for their generation.
async fn ready(admin: &Client, namespace: &str) -> usize {
    let api: Api<SealedSecret> = Api::namespaced(admin.clone(), namespace);
    let mut ready = 0;
    let mut params = ListParams::default().limit(2000);
    loop {
        let page = api.list(&params).await.unwrap();
        ready += page
            .items
            .iter()
            .filter(|ss| {
                ss.status.as_ref().is_some_and(|s| {
                    s.observed_generation == ss.metadata.generation
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return ready,
        }
    }
}

async fn round(n: usize) {
    let (plane, admin) = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let mib = |pid: u32| common::rss_kib(pid) as f64 / 1024.0;

    // The server's own write rate, from a plain client, in this run.
    let raw: Api<Secret> = Api::namespaced(admin.clone(), "raw");
    let started = Instant::now();
    create_all(&raw, (0..n).map(plain_secret).collect()).await;
    let raw_rate = n as f64 / started.elapsed().as_secs_f64();
    // The same Secrets written the way the controller writes them: a forced server-side
    // apply each (its managedFields bookkeeping costs the apiserver more than a create).
    let started = Instant::now();
    futures::stream::iter((0..n).map(|i| {
        let mut secret = plain_secret(i);
        secret.metadata.name = Some(format!("applied-{i:05}"));
        secret
    }))
    .map(|secret| {
        let raw = raw.clone();
        async move {
            let name = secret.metadata.name.clone().unwrap();
            raw.patch(
                &name,
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap()
        }
    })
    .buffer_unordered(CONCURRENCY)
    .for_each(|_| async {})
    .await;
    let apply_rate = n as f64 / started.elapsed().as_secs_f64();
    // The other write a new object needs: its status, a merge patch of the Ready
    // condition on the CRD's status subresource, as the controller sends it. (Sealed to a
    // throwaway key and deleted before the controller starts.)
    let throwaway = RecipientSet::new([Key::generate().recipient().clone()]).unwrap();
    let api: Api<SealedSecret> = Api::namespaced(admin.clone(), "raw");
    create_all(&api, common::sealed_objects(&throwaway, "raw", n)).await;
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let status = serde_json::json!({"status": {"observedGeneration": 1, "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Unsealed",
                    "message": "all items unsealed into the Secret", "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }]}});
                let name = format!("ss-{i:05}");
                let patch = Patch::Merge(&status);
                api.patch_status(&name, &PatchParams::default(), &patch)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    let status_rate = n as f64 / started.elapsed().as_secs_f64();
    // 100,000 deletions outlast the apiserver's request timeout, which ends the call
    // part way: called again until none is left.
    for attempt in 1.. {
        let done = api
            .delete_collection(&Default::default(), &ListParams::default())
            .await
            .is_ok();
        let left = api.list(&ListParams::default().limit(1)).await.unwrap();
        if done && left.items.is_empty() {
            break;
        }
        assert!(attempt < 20, "the SealedSecrets of raw are still there");
    }
    // What the two writes cost together is the most any controller can reach here.
    let ceiling = 1.0 / (1.0 / apply_rate + 1.0 / status_rate);
    println!(
        "  {n:>6} apiserver raw rates from a plain client: {raw_rate:.0} creates/s, {apply_rate:.0} server-side applies/s, {status_rate:.0} SealedSecret status patches/s; an apply and a status patch each: {ceiling:.0}/s = {:.2}x the create rate",
        ceiling / raw_rate
    );

    let port = kseal_tests::ports::free_port().unwrap();
    let mut controller = start_kseal(&plane, dir.path(), port);
    let sealed = common::kseal_objects(&admin, "kseal", n).await;
    let api: Api<SealedSecret> = Api::namespaced(admin.clone(), "kseal");
    let started = Instant::now();
    let creating = tokio::spawn(async move { create_all(&api, sealed).await });
    let unsealed: Api<Secret> = Api::namespaced(admin.clone(), "kseal");
    let (_, have) = wait_count(&unsealed, n, Duration::from_secs(3600)).await;
    assert_eq!(have, n, "only {have} of {n} Secrets");
    let elapsed = started.elapsed();
    creating.await.unwrap();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "  {n:>6} new SealedSecrets: every Secret after {:.1} s = {rate:.0}/s; apiserver raw Secret creates {raw_rate:.0}/s; ratio {:.2}x ({:.2}x of the two-write ceiling)",
        elapsed.as_secs_f64(),
        rate / raw_rate,
        rate / ceiling,
    );
    let settle = Instant::now();
    while ready(&admin, "kseal").await < n && settle.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let writes = |kind: &str| {
        metric(
            port,
            &format!("kseal_api_writes_total{{object=\"{kind}\"}}"),
        )
    };
    println!(
        "  {n:>6} all Ready after {:.1} s; per object: {:.2} decryptions of 2 items, writes {:.2} Secret + {:.2} status + {:.2} Event",
        elapsed.as_secs_f64() + settle.elapsed().as_secs_f64(),
        metric(port, "kseal_items_opened_total") / n as f64,
        writes("secret") / n as f64,
        writes("status") / n as f64,
        writes("event") / n as f64,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = mib(controller.id());

    // A restart with every object up to date.
    let _ = controller.kill();
    let _ = controller.wait();
    let before = apiserver_requests(&admin).await;
    let started = Instant::now();
    let mut controller = start_kseal(&plane, dir.path(), port);
    while metric(port, "kseal_up_to_date_total") + metric(port, "kseal_unseals_total") < n as f64
        && started.elapsed() < Duration::from_secs(1800)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(controller.id());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = apiserver_requests(&admin).await;
    println!(
        "  {n:>6} restart: every object looked at after {took:.1} s ({cpu:.1} CPU s): {} up to date, {} decryptions, {} writes (controller); apiserver: {} writes, {} gets on Secrets, SealedSecrets, Events",
        metric(port, "kseal_up_to_date_total"),
        metric(port, "kseal_items_opened_total"),
        metric(port, "kseal_api_writes_total"),
        after.0 - before.0,
        after.1 - before.1,
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted_rss = mib(controller.id());
    let unrelated: Api<Secret> = Api::namespaced(admin.clone(), "noise");
    create_all(&unrelated, (0..50_000).map(plain_secret).collect()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let noisy = mib(controller.id());
    let file = common::file_rss_kib(controller.id()) as f64 / 1024.0;
    println!(
        "  {n:>6} RSS: {rss:.1} MiB after creating them, {restarted_rss:.1} MiB after the restart, {noisy:.1} MiB with 50,000 unrelated Secrets added ({:+.1}); of it {file:.1} MiB mapped from the binary ({})",
        noisy - restarted_rss,
        common::controller_binary().display(),
    );

    // N more created while the controller is stopped; then it starts: its own rate
    // (1,000 and 10,000; the 100,000 round is there for memory).
    let _ = controller.kill();
    let _ = controller.wait();
    if n > 10_000 {
        plane.shutdown();
        return;
    }
    let backlog = common::kseal_objects(&admin, "backlog", n).await;
    create_all(&Api::namespaced(admin.clone(), "backlog"), backlog).await;
    let started = Instant::now();
    let mut controller = start_kseal(&plane, dir.path(), port);
    while metric(port, "kseal_unseals_total") < n as f64
        && started.elapsed() < Duration::from_secs(3600)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let all_ready = ready(&admin, "backlog").await;
    let rate = n as f64 / took;
    println!(
        "  {n:>6} created while the controller was stopped, then started: {all_ready} Ready after {took:.1} s = {rate:.0}/s; ratio {:.2}x of the raw rate, {:.2}x of the two-write ceiling",
        rate / raw_rate,
        rate / ceiling,
    );
    let _ = controller.kill();
    let _ = controller.wait();
    plane.shutdown();
}

#[tokio::main]
async fn main() {
    let picked: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    println!(
        "kseal-controller at scale ({}; real kube-apiserver and etcd on this machine; {CONCURRENCY} concurrent creates)",
        common::controller_binary().display()
    );
    for n in [1_000, 10_000, 100_000] {
        if picked.is_empty() || picked.contains(&n) {
            round(n).await;
        }
    }
}
