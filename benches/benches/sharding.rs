//! `sharding` hot paths against baselines measured in the same run.
//!
//! - `key_slot/*`: our `key_slot` (hash-tag scan + slicing-by-16 CRC) against redis-protocol's
//!   `redis_keyslot` (what fred uses) and the `crc16` crate's XMODEM (CRC only, no tag scan, so a
//!   generous baseline), on 16-byte and 1 KiB keys.
//! - `ketama/*`: `KetamaRing::node_for` (md5 of the key + ring search) at 3, 6 and 100 nodes, with
//!   md5 alone (`key_hash`) as the baseline, and the ring search alone (`node_index_for_hash`).
//! - `group_by_shard/*`: grouping 1,000 keys, against collecting into a `HashMap<shard, Vec<&[u8]>>`.
//!
//! Every benchmark runs over a batch of distinct keys (so branch predictors cannot learn one key)
//! and reports throughput per key; divide the batch time by the batch size for the time per key.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sharding::{KetamaRing, KeyRange, Sharder, SlotTable, crc16_xmodem, key_slot};

/// `count` distinct keys of exactly `len` bytes with no `{`, so no hash tag shortens the work.
fn keys(count: usize, len: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| {
                    // xorshift64: cheap, deterministic, and every byte value but `{` is possible.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    match (state >> 56) as u8 {
                        b'{' => b'x',
                        byte => byte,
                    }
                })
                .collect()
        })
        .collect()
}

fn bench_key_slot(c: &mut Criterion) {
    for (label, count, len) in [("16B", 1024, 16), ("1KiB", 16, 1024)] {
        let keys = keys(count, len);
        let mut group = c.benchmark_group(format!("key_slot/{label}"));
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function("sharding::key_slot", |b| {
            b.iter(|| {
                keys.iter()
                    .map(|k| u32::from(key_slot(black_box(k))))
                    .sum::<u32>()
            })
        });
        group.bench_function("redis_protocol::redis_keyslot", |b| {
            b.iter(|| {
                keys.iter()
                    .map(|k| u32::from(redis_protocol::redis_keyslot(black_box(k))))
                    .sum::<u32>()
            })
        });
        group.bench_function("crc16::XMODEM (crc only)", |b| {
            b.iter(|| {
                keys.iter()
                    .map(|k| u32::from(crc16::State::<crc16::XMODEM>::calculate(black_box(k)) & 0x3FFF))
                    .sum::<u32>()
            })
        });
        group.bench_function("sharding::crc16_xmodem (crc only)", |b| {
            b.iter(|| {
                keys.iter()
                    .map(|k| u32::from(crc16_xmodem(black_box(k)) & 0x3FFF))
                    .sum::<u32>()
            })
        });
        group.finish();
    }
}

fn ring(nodes: usize) -> KetamaRing {
    KetamaRing::new((0..nodes).map(|i| (format!("10.0.{}.{}:6379", i / 256, i % 256), 1)))
        .expect("a ring of distinct nodes with weight 1 is valid")
}

fn bench_ketama(c: &mut Criterion) {
    let keys = keys(1024, 16);
    let hashes: Vec<u32> = keys.iter().map(|k| KetamaRing::key_hash(k)).collect();
    let mut group = c.benchmark_group("ketama");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("md5 key_hash only (baseline)", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| KetamaRing::key_hash(black_box(k)))
                .fold(0u32, u32::wrapping_add)
        })
    });
    for nodes in [3, 6, 100] {
        let ring = ring(nodes);
        group.bench_function(format!("node_for/{nodes} nodes"), |b| {
            b.iter(|| {
                keys.iter()
                    .map(|k| ring.node_for(black_box(k)).len())
                    .sum::<usize>()
            })
        });
        group.bench_function(format!("ring search only/{nodes} nodes"), |b| {
            b.iter(|| {
                hashes
                    .iter()
                    .map(|&h| ring.node_index_for_hash(black_box(h)))
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

fn bench_grouping(c: &mut Criterion) {
    let keys = keys(1000, 16);
    let cluster = SlotTable::from_ranges([(0..=5460, "a:1"), (5461..=10922, "b:1"), (10923..=16383, "c:1")])
        .expect("three disjoint ranges are a valid slot table");
    let layout = KeyRange::with_equal_weights((0..6).map(|i| format!("10.0.0.{i}:6379")))
        .expect("six distinct nodes are a valid key-range layout");
    let ring = ring(6);
    let mut group = c.benchmark_group("group_by_shard/1000 keys");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("slot table, 3 shards", |b| {
        b.iter(|| cluster.group_by_shard(black_box(&keys)))
    });
    group.bench_function("HashMap<shard, Vec<&[u8]>> baseline, 3 shards", |b| {
        b.iter(|| {
            let mut groups: HashMap<Option<usize>, Vec<&[u8]>> = HashMap::new();
            for key in black_box(&keys) {
                groups.entry(cluster.shard_of(key)).or_default().push(key);
            }
            groups
        })
    });
    group.bench_function("key-range, 6 nodes", |b| {
        b.iter(|| layout.group_by_shard(black_box(&keys)))
    });
    group.bench_function("ketama, 6 nodes", |b| {
        b.iter(|| ring.group_by_shard(black_box(&keys)))
    });
    group.finish();
}

criterion_group!(benches, bench_key_slot, bench_ketama, bench_grouping);
criterion_main!(benches);
