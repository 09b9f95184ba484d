//! What opening one sealed item costs, beside the one X25519 operation it needs, in the
//! same run: `openssl speed ecdhx25519` (the primitive on this machine), aws-lc-rs's
//! X25519 (what kseal opens with) and x25519-dalek's (what the age crate's own identity
//! uses, twice per stanza). Target: an item within 1.5× of the primitive.
//! - in process: `item::open` with a one-key ring, and with a ring of five keys where
//!   the item's recipients hint names one (only that key is tried) or none (all are);
//! - a whole `kseal unseal` process on a 1,000-item SealedSecret: its CPU time per item.
//!
//! Run: `cargo bench -p kseal-cli --bench unseal` (needs `openssl` on the PATH).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use aws_lc_rs::agreement;
use kseal_core::item;
use kseal_core::keys::{Key, Keyring};
use kseal_core::recipients::RecipientSet;
use kseal_core::scope::{Binding, Scope};

const VALUE: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ROUNDS: usize = 5;

/// The best of a few rounds of `n` calls, in µs per call (the least disturbed by the
/// rest of the machine).
fn per_call_us(n: usize, mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..n {
                f();
            }
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// `openssl speed ecdhx25519`: µs per X25519 operation.
fn openssl_us() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdhx25519"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: ` 253 bits ecdh (X25519)   0.0000s  31039.4` (seconds per op, ops/s).
    let line = text.lines().rfind(|l| l.contains("X25519"))?;
    let ops: f64 = line.split_whitespace().last()?.parse().ok()?;
    Some(1e6 / ops)
}

/// CPU seconds (user + system) of this process's waited-for children, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn children_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with `)`): cutime and cstime are the
    // 14th and 15th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[13].parse::<f64>().unwrap() + fields[14].parse::<f64>().unwrap();
    ticks / 100.0
}

fn process_unseal(openssl: Option<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate();
    let identity = dir.path().join("key.txt");
    std::fs::write(
        &identity,
        key.to_identity_file("2026-01-01T00:00:00Z").as_str(),
    )
    .unwrap();
    let recipients = dir.path().join("cluster.recipients");
    std::fs::write(&recipients, format!("{}\n", key.recipient())).unwrap();
    let items = 1_000;
    let mut secret = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: prod\nstringData:\n",
    );
    for i in 0..items {
        secret.push_str(&format!("  item-{i:04}: value-{i:04}-0123456789abcdef\n"));
    }
    let sealed = common::seal_process(&recipients, &secret);
    let file = dir.path().join("sealed.yaml");
    std::fs::write(&file, &sealed.stdout).unwrap();
    let runs = 5;
    let before = children_cpu_s();
    for _ in 0..runs {
        let out = Command::new(env!("CARGO_BIN_EXE_kseal"))
            .args(["unseal", "-i"])
            .arg(&identity)
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    }
    let per_item_us = (children_cpu_s() - before) * 1e6 / (runs * items) as f64;
    let ratio = openssl.map_or(String::new(), |o| {
        format!(" ({:.2}× openssl's X25519)", per_item_us / o)
    });
    println!(
        "  kseal unseal process, {items}-item SealedSecret: {per_item_us:.1} µs CPU per item{ratio}"
    );
}

fn main() {
    println!("opening one sealed 64-byte item (release; µs per call, best of {ROUNDS} rounds)");
    let openssl = openssl_us();
    match openssl {
        Some(us) => println!("  openssl speed ecdhx25519: {us:.1} µs per operation"),
        None => println!("  openssl speed ecdhx25519: not available (openssl missing?)"),
    }
    let secret = x25519_dalek::StaticSecret::from(rand::random::<[u8; 32]>());
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(rand::random::<
        [u8; 32],
    >()));
    let dalek = per_call_us(4_000, || {
        std::hint::black_box(secret.diffie_hellman(std::hint::black_box(&peer)));
    });
    println!("  x25519-dalek diffie_hellman: {dalek:.1} µs");
    let key =
        agreement::PrivateKey::from_private_key(&agreement::X25519, &rand::random::<[u8; 32]>())
            .unwrap();
    let peer = peer.to_bytes();
    let aws_lc = per_call_us(4_000, || {
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, &peer);
        let _ = std::hint::black_box(agreement::agree(&key, peer, (), |s| Ok::<_, ()>(s[0])));
    });
    println!("  aws-lc-rs X25519 agree (what kseal opens with): {aws_lc:.1} µs");

    let binding = Binding::new(Scope::Strict, Some("prod"), Some("app"), "password").unwrap();
    let cluster = Key::generate();
    let older: Vec<Key> = (0..4).map(|_| Key::generate()).collect();
    let set = RecipientSet::new([cluster.recipient().clone()]).unwrap();
    let sealed = item::seal(&set, &binding, VALUE).unwrap();
    let hint = [cluster.fingerprint().clone()];
    let one = Keyring::new([cluster.clone()]);
    let five = Keyring::new(older.iter().cloned().chain([cluster.clone()]));
    let cases: [(&str, &Keyring, &[_]); 3] = [
        ("item::open, one key", &one, &hint),
        ("item::open, five keys, the hint names one", &five, &hint),
        ("item::open, five keys, no hint", &five, &[]),
    ];
    for (name, ring, hint) in cases {
        let us = per_call_us(2_000, || {
            std::hint::black_box(item::open(ring, hint, &binding, &sealed).unwrap());
        });
        let ratio = openssl.map_or(String::new(), |o| format!(", {:.2}× openssl", us / o));
        println!(
            "  {name}: {us:.1} µs ({:.2}× aws-lc-rs{ratio})",
            us / aws_lc
        );
    }
    process_unseal(openssl);
}
