//! What cluster-client's `rcc.call` span costs a call when no subscriber is installed (the default):
//! the span is created at debug level, so it is disabled and instrumenting the call's future adds
//! one cached interest check. Compared against the same future without a span, in the same run; a
//! call on loopback takes tens of microseconds (`cargo bench -p benches --bench e2e`).
//!
//! `cargo bench -p benches --bench spans`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing::Instrument;

/// Stands in for a call's body: a ready future, so only the span's own cost is measured.
async fn body(n: u64) -> u64 {
    black_box(n) + 1
}

fn spans(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("call span (no subscriber)");
    group.bench_function("without span", |b| b.iter(|| rt.block_on(body(black_box(7)))));
    group.bench_function("with rcc.call span", |b| {
        b.iter(|| {
            rt.block_on(body(black_box(7)).instrument(tracing::debug_span!("rcc.call", command = "GET")))
        })
    });
    group.finish();
}

criterion_group!(benches, spans);
criterion_main!(benches);
