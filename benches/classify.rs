//! Classifier cost: cold (parse) versus cached (scan + lookup), large
//! statements, and the fingerprint scanner alone.

use criterion::{criterion_group, criterion_main, Criterion};
use sqlgate::classify::{cache_key, Classifier, ClassifierOptions, Dialect};
use std::hint::black_box;

const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = ";

/// An INSERT of about `bytes` bytes with many literal rows.
fn big_insert(bytes: usize) -> String {
    let mut s = String::from("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ");
    let mut i = 0;
    while s.len() < bytes {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("({i}, 1, {i}, -4200, '2024-01-01 00:00:00')"));
        i += 1;
    }
    s
}

fn bench(c: &mut Criterion) {
    let no_cache = ClassifierOptions {
        cache_capacity: 0,
        ..Default::default()
    };
    let cold = Classifier::new(Dialect::Postgres, no_cache);
    let warm = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
    let mut n = 0u64;

    c.bench_function("pgbench select cold", |b| {
        b.iter(|| {
            n += 1;
            black_box(cold.classify(&format!("{PGBENCH}{n}")))
        })
    });
    let texts: Vec<String> = (0..1024).map(|i| format!("{PGBENCH}{i}")).collect();
    c.bench_function("pgbench select cached", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % texts.len();
            black_box(warm.classify(&texts[i]))
        })
    });
    for size in [1024, 16 * 1024] {
        let sql = big_insert(size);
        c.bench_function(&format!("insert {} KiB cold", size / 1024), |b| {
            b.iter(|| black_box(cold.classify(&sql)))
        });
    }
    c.bench_function("fingerprint pgbench select", |b| {
        b.iter(|| black_box(cache_key(Dialect::Postgres, &texts[7])))
    });
    let sql = big_insert(16 * 1024);
    c.bench_function("fingerprint 16 KiB", |b| {
        b.iter(|| black_box(cache_key(Dialect::Postgres, &sql)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
