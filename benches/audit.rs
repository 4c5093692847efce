//! What one statement record costs the audit writer: serialization, hashing
//! (chain seal) and a buffered write, separately and together.
//!
//! `cargo bench --bench audit -- --warm-up-time 1 --measurement-time 2`
//!
//! Measured on the 2-core dev machine (ns per record, ~480-byte line):
//! serialize ≈ 285, SHA-256 of the line ≈ 229, seal (prefix, timestamp,
//! SHA-256) ≈ 428, buffered write ≈ 1 160 (the page-cache write amortized
//! over the 256 KiB buffer), all together ≈ 1 540.
//!
//! The proxy thread only pays for building the event and a channel send; all
//! of this runs on the writer thread, off the statement's path.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::Digest;
use sqlgate::audit::chain::Chain;
use std::hint::black_box;
use std::io::Write;
use std::time::SystemTime;

/// A typical statement record body (what `Event::Statement` serializes to).
fn body() -> serde_json::Value {
    serde_json::json!({
        "kind": "statement", "session": "6f1c2a9e-01", "agent": "billing-bot",
        "client": "10.0.3.17:51544", "database": "app", "command": "SELECT",
        "fingerprint": "select id, total from invoices where customer_id = ? and status = ?",
        "sql_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "classes": ["read"], "tables": ["invoices"], "rule": "default-read",
        "action": "allow", "outcome": "ok", "rows": 12, "duration_us": 431,
    })
}

fn bench(c: &mut Criterion) {
    let v = body();
    let mut g = c.benchmark_group("audit_record");
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("serialize", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&v)).unwrap();
            black_box(buf.len())
        })
    });
    let serialized = serde_json::to_vec(&v).unwrap();
    g.bench_function("sha256_line", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(&serialized[..]))))
    });
    let now = SystemTime::now();
    let mut chain = Chain::new();
    let mut line = Vec::with_capacity(1024);
    g.bench_function("seal (prefix + timestamp + sha256)", |b| {
        b.iter(|| black_box(chain.seal(now, black_box(&serialized), &mut line)))
    });
    // What the writer does: the seal plus the record's MAC.
    let mac = sqlgate::audit::sign::SigningKey::from_seed(&[7; 32]);
    g.bench_function("seal_mac (seal + HMAC-SHA256)", |b| {
        b.iter(|| {
            black_box(chain.seal_mac(now, black_box(&serialized), &mut line, mac.record_mac()))
        })
    });
    let path = std::env::temp_dir().join(format!("sqlgate-bench-{}.jsonl", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    g.bench_function("buffered_write", |b| {
        b.iter(|| {
            out.write_all(black_box(&line)).unwrap();
            out.write_all(b"\n").unwrap();
        })
    });
    g.bench_function("all (serialize + seal + write)", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&v)).unwrap();
            chain.seal_mac(SystemTime::now(), &buf, &mut line, mac.record_mac());
            out.write_all(&line).unwrap();
            out.write_all(b"\n").unwrap();
        })
    });
    g.finish();
    drop(out);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
