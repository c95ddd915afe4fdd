//! Costs of the operations on Keyhold's hot paths: sealing a record, wrapping
//! a data key, computing a blind index, and hashing a password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyhold_crypto::{open, seal, DataKey, IndexKey, MasterKey, MasterKeyring, PasswordHasher};

fn aead(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    let aad = b"patient=8f0c;record=12ab;v=3";
    let record = vec![0x5au8; 4096];
    let sealed = seal(&key, aad, &record).unwrap();

    let mut g = c.benchmark_group("aead_4KiB");
    g.throughput(Throughput::Bytes(record.len() as u64));
    g.bench_function("seal", |b| {
        b.iter(|| seal(&key, black_box(aad), black_box(&record)).unwrap())
    });
    g.bench_function("open", |b| {
        b.iter(|| open(&key, black_box(aad), black_box(&sealed)).unwrap())
    });
    g.finish();
}

fn kek(c: &mut Criterion) {
    let ring = MasterKeyring::new(vec![MasterKey::generate()]).unwrap();
    let dek = DataKey::generate().unwrap();
    let wrapped = ring.wrap(&dek).unwrap();

    let mut g = c.benchmark_group("data_key");
    g.bench_function("wrap", |b| b.iter(|| ring.wrap(black_box(&dek)).unwrap()));
    g.bench_function("unwrap", |b| {
        b.iter(|| ring.unwrap(black_box(&wrapped)).unwrap())
    });
    g.finish();
}

fn blind(c: &mut Criterion) {
    let key = IndexKey::generate().unwrap();
    c.bench_function("blind_index", |b| {
        b.iter(|| key.blind(black_box("nhs-number"), black_box(b"9434765919")))
    });
}

fn password(c: &mut Criterion) {
    let hasher = PasswordHasher::owasp();
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    g.bench_function("hash_owasp", |b| {
        b.iter(|| {
            hasher
                .hash(black_box(b"correct horse battery staple"))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, aead, kek, blind, password);
criterion_main!(benches);
