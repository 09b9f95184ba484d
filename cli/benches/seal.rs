//! Sealing cost, kseal beside the bare `age` crate in the same run (target: kseal within
//! 1.25× of age for one 64-byte item), a whole `kseal seal` process on a 5-item Secret, and
//! one item sealed and opened with a post-quantum key beside an X25519 one (and beside the
//! age crate's X25519, which has no post-quantum recipient).
//! Run: `cargo bench -p kseal-cli --bench seal`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kseal_core::item;
use kseal_core::keys::Key;
use kseal_core::recipients::RecipientSet;
use kseal_core::scope::{Binding, Scope};

const VALUE: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn bare_age(recipients: &[age::x25519::Recipient]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .unwrap();
    let mut w = encryptor.wrap_output(&mut out).unwrap();
    w.write_all(VALUE).unwrap();
    w.finish().unwrap();
    out
}

fn item_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal one 64-byte item");
    let binding = Binding::new(
        Scope::Strict,
        Some("prod"),
        Some("db-credentials"),
        "password",
    )
    .unwrap();
    for n in [1usize, 3] {
        let keys: Vec<Key> = (0..n).map(|_| Key::generate()).collect();
        let set = RecipientSet::new(keys.iter().map(|k| k.recipient().clone())).unwrap();
        let raw: Vec<age::x25519::Recipient> = keys
            .iter()
            .map(|k| k.recipient().to_string().parse().unwrap())
            .collect();
        group.bench_with_input(BenchmarkId::new("age crate", n), &raw, |b, raw| {
            b.iter(|| bare_age(raw))
        });
        group.bench_with_input(BenchmarkId::new("kseal", n), &set, |b, set| {
            b.iter(|| item::seal(set, &binding, VALUE).unwrap())
        });
    }
    group.finish();
}

fn process_seal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate();
    let recipients = dir.path().join("cluster.recipients");
    std::fs::write(&recipients, format!("{}\n", key.recipient())).unwrap();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: prod\nstringData:\n  a: alpha\n  b: bravo\n  c: charlie\n  d: delta\n  e: echo\n";
    c.bench_function("kseal seal process, 5-item Secret", |b| {
        b.iter(|| common::seal_process(&recipients, secret).stdout.len())
    });
}

fn post_quantum(c: &mut Criterion) {
    let mut group = c.benchmark_group("one 64-byte item, X25519 and post-quantum");
    let binding = Binding::new(Scope::Strict, Some("prod"), Some("db"), "password").unwrap();
    let (classic, pq) = (Key::generate(), Key::generate_pq());
    let raw: age::x25519::Recipient = classic.recipient().to_string().parse().unwrap();
    group.bench_function("seal, age crate, X25519", |b| {
        b.iter(|| bare_age(std::slice::from_ref(&raw)))
    });
    for (kind, key) in [("X25519", &classic), ("post-quantum", &pq)] {
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        group.bench_function(format!("seal, kseal, {kind}"), |b| {
            b.iter(|| item::seal(&set, &binding, VALUE).unwrap())
        });
        let sealed = item::seal(&set, &binding, VALUE).unwrap();
        let ring = kseal_core::keys::Keyring::new([key.clone()]);
        group.bench_function(format!("unseal, kseal, {kind}"), |b| {
            b.iter(|| item::open(&ring, &[], &binding, &sealed).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, item_seal, process_seal, post_quantum);
criterion_main!(benches);
