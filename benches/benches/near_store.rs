//! The near cache's store: quick_cache (S3-FIFO, sharded locks) against moka (TinyLFU, Caffeine's
//! design), both bounded by weight, on the near cache's hot path: a hit on one of 1,000 hot keys from
//! one thread and from two at once, and an insert (a miss being kept). `cargo bench -p benches --bench
//! near_store`; the choice and the figures are in docs/RESULTS.md ("Near cache").

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const HOT: usize = 1_000;
const CAPACITY_BYTES: u64 = 64 << 20;

#[derive(Clone)]
struct Entry {
    value: Option<Bytes>,
    token: u64,
    expires: Instant,
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Bytes, Entry> for Weigh {
    fn weight(&self, key: &Bytes, entry: &Entry) -> u64 {
        (key.len() + entry.value.as_ref().map_or(0, Bytes::len) + 96) as u64
    }
}

trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Option<Entry>;
    fn insert(&self, key: Bytes, entry: Entry);
}

impl Store for quick_cache::sync::Cache<Bytes, Entry, Weigh> {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        quick_cache::sync::Cache::get(self, key)
    }
    fn insert(&self, key: Bytes, entry: Entry) {
        quick_cache::sync::Cache::insert(self, key, entry);
    }
}

impl Store for moka::sync::Cache<Bytes, Entry> {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        moka::sync::Cache::get(self, key)
    }
    fn insert(&self, key: Bytes, entry: Entry) {
        moka::sync::Cache::insert(self, key, entry);
    }
}

fn keys() -> Vec<Bytes> {
    (0..HOT).map(|i| Bytes::from(format!("load:{i}"))).collect()
}

fn entry() -> Entry {
    Entry {
        value: Some(Bytes::from(vec![b'x'; 100])),
        token: 1,
        expires: Instant::now() + Duration::from_secs(60),
    }
}

fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
    let quick: quick_cache::sync::Cache<Bytes, Entry, Weigh> =
        quick_cache::sync::Cache::with_weighter(100_000, CAPACITY_BYTES, Weigh);
    let moka: moka::sync::Cache<Bytes, Entry> = moka::sync::Cache::builder()
        .max_capacity(CAPACITY_BYTES)
        .weigher(|k: &Bytes, e: &Entry| (k.len() + e.value.as_ref().map_or(0, Bytes::len) + 96) as u32)
        .build();
    vec![("quick_cache", Arc::new(quick)), ("moka", Arc::new(moka))]
}

fn hits(c: &mut Criterion) {
    let keys = Arc::new(keys());
    let mut group = c.benchmark_group("near_store");
    for (name, store) in stores() {
        for key in keys.iter() {
            store.insert(key.clone(), entry());
        }
        group.bench_function(BenchmarkId::new("hit, 1 thread", name), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 7) % HOT;
                let hit = store.get(&keys[i]).expect("kept");
                std::hint::black_box(hit.token);
            })
        });
        group.bench_function(BenchmarkId::new("hit, 2 threads (time per hit)", name), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..2 {
                        let (store, keys) = (store.clone(), keys.clone());
                        scope.spawn(move || {
                            let mut i = t * 13;
                            for _ in 0..iters / 2 {
                                i = (i + 7) % HOT;
                                std::hint::black_box(store.get(&keys[i]).map(|e| e.expires));
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("insert (a miss kept)", name), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 7) % HOT;
                store.insert(keys[i].clone(), entry());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
