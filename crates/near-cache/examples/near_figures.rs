//! The near cache's memory and invalidation delay, measured on a real 3 + 3 cluster:
//! `cargo run --release -p near-cache --example near_figures`.
//!
//! - Memory: the process's resident memory (`/proc/self/statm`) before and after 100,000 keys of
//!   100-byte values are read through the near cache and kept, per entry and per 100 k entries, beside
//!   the bytes the store counts against `max_bytes`.
//! - Invalidation delay: another client writes a kept key; the time from the write's reply until the
//!   near cache no longer holds the old value (polled in a tight loop), over 2,000 writes: p50, p99,
//!   max.

use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig};
use near_cache::{NearCache, NearSettings};

const ENTRIES: usize = 100_000;
const VALUE: usize = 100;
const SAMPLES: usize = 2_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let writer = ClusterClient::connect(config.clone()).await?;
    let near = NearCache::new(
        ClusterClient::connect(config).await?,
        NearSettings {
            max_entries: 200_000,
            max_bytes: 256 << 20,
            ..NearSettings::default()
        },
    )?;
    let value = [b'x'; VALUE];
    let keys: Vec<String> = (0..ENTRIES).map(|i| format!("figures:{i}")).collect();
    for chunk in keys.chunks(1_000) {
        let entries: Vec<(&String, &[u8], Option<Duration>)> =
            chunk.iter().map(|k| (k, &value[..], None)).collect();
        for result in writer.set_many(&entries).await {
            result?;
        }
    }
    // Warm the read path first, so the figure is the entries' and not the connections'.
    for key in keys.iter().take(1_000) {
        near.get(key.as_bytes()).await?;
    }
    near.clear();
    let before = resident_bytes();
    for key in &keys {
        near.get(key.as_bytes()).await?;
    }
    let after = resident_bytes();
    let stats = near.stats();
    let per_entry = after.saturating_sub(before) as f64 / stats.entries.max(1) as f64;
    println!(
        "memory: {} entries kept of {ENTRIES} read ({VALUE}-byte values, keys of ~14 bytes); resident memory grew by \
         {:.1} MiB = {per_entry:.0} bytes per entry = {:.1} MiB per 100 k entries; the store counted {:.1} MiB",
        stats.entries,
        after.saturating_sub(before) as f64 / (1 << 20) as f64,
        per_entry * 100_000.0 / (1 << 20) as f64,
        stats.bytes as f64 / (1 << 20) as f64,
    );

    let mut delays = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let key = keys[i % 1_000].as_bytes();
        while near.lookup(key).is_none() {
            near.get(key).await?;
        }
        writer
            .set(key, format!("v{i}").as_bytes(), SetOptions::default())
            .await?;
        let written = Instant::now();
        while near.lookup(key).is_some() {
            if written.elapsed() > Duration::from_secs(1) {
                return Err(format!("the write of {key:?} was not invalidated within 1 s").into());
            }
            tokio::task::yield_now().await;
        }
        delays.push(written.elapsed());
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    println!(
        "invalidation delay over {SAMPLES} writes by another client (write's reply to the old value gone): p50 {:?}, \
         p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
