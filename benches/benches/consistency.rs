//! `consistency` hot paths against baselines measured in the same run.
//!
//! - `envelope_encode/*`: wrapping a payload in the versioned envelope, against copying the payload
//!   into a new `Vec` (the least any encoder must do), at 100 B and 16 KiB.
//! - `envelope_decode/*`: decoding a stored value (header checks, version, payload slice), against
//!   `starts_with(MAGIC)` alone (the check every reader needs to tell plain values apart).
//! - `hlc/*`: `Clock::now` (wall clock + compare-and-swap) against `SystemTime::now` alone, and
//!   against a relaxed `fetch_add` (the cheapest monotonic counter).
//!
//! The versioned-vs-plain `SET` figures over the network are printed by
//! `cargo run --release -p consistency --example figures`, which measures both in one run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use consistency::{Clock, Envelope, Hlc, MAGIC, Version, WriterId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn version() -> Version {
    Version::new(Hlc::new(1_700_000_000_000, 7), WriterId(42))
}

fn bench_envelope(c: &mut Criterion) {
    for len in [100usize, 16 * 1024] {
        let payload = vec![b'x'; len];
        let mut group = c.benchmark_group("envelope_encode");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("encode/{len}"), |b| {
            b.iter(|| {
                Envelope::Value {
                    version: version(),
                    payload: black_box(&payload),
                }
                .encode()
            })
        });
        group.bench_function(format!("baseline_copy/{len}"), |b| {
            b.iter(|| black_box(&payload).to_vec())
        });
        group.finish();

        let stored = Envelope::Value {
            version: version(),
            payload: &payload,
        }
        .encode();
        let mut group = c.benchmark_group("envelope_decode");
        group.throughput(Throughput::Bytes(stored.len() as u64));
        group.bench_function(format!("decode/{len}"), |b| {
            b.iter(|| Envelope::decode(black_box(&stored)).map(|e| e.version()))
        });
        group.bench_function(format!("baseline_magic_check/{len}"), |b| {
            b.iter(|| black_box(&stored).starts_with(&MAGIC))
        });
        group.finish();
    }
}

fn bench_hlc(c: &mut Criterion) {
    let mut group = c.benchmark_group("hlc");
    let clock = Clock::new();
    group.bench_function("clock_now", |b| b.iter(|| clock.now()));
    group.bench_function("baseline_system_time_now", |b| b.iter(SystemTime::now));
    let counter = AtomicU64::new(0);
    group.bench_function("baseline_fetch_add", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::Relaxed))
    });
    group.finish();
}

criterion_group!(benches, bench_envelope, bench_hlc);
criterion_main!(benches);
