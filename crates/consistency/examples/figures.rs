//! The consistency figures, each against a baseline measured in the same run on a fresh local
//! 3 + 3 cluster:
//!
//! - versioned set (the last-write-wins script) against plain `SET`: latency of one writer, and
//!   throughput of 32 concurrent writers;
//! - the audit of 100,000 keys (primaries and replicas compared) against reading the same keys'
//!   values from the primaries (`SCAN` + batched `GET`).
//!
//! Run with `cargo run --release -p consistency --example figures`.

use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use consistency::{AuditOptions, ConsistencyConfig, Versioned, WriteOptions};
use futures::StreamExt;
use local_cluster::{LocalCluster, LocalClusterConfig};

const VALUE: &[u8] = &[b'x'; 100];
const LATENCY_OPS: usize = 5_000;
const THROUGHPUT_OPS: usize = 40_000;
const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;
const AUDIT_KEYS: usize = 100_000;

#[derive(Clone, Copy)]
enum Writer {
    Plain,
    Versioned,
}

async fn write(client: &ClusterClient, store: &Versioned, writer: Writer, key: &[u8]) {
    match writer {
        Writer::Plain => {
            client
                .set(key, VALUE, SetOptions::default())
                .await
                .expect("plain set");
        }
        Writer::Versioned => {
            store
                .set(key, VALUE, None, WriteOptions::default())
                .await
                .expect("versioned set");
        }
    }
}

/// Median and 99th percentile of one writer's sequential calls.
async fn latency(
    client: &ClusterClient,
    store: &Versioned,
    writer: Writer,
    round: usize,
) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(LATENCY_OPS);
    for i in 0..LATENCY_OPS {
        let key = format!("lat:{round}:{i}");
        let started = Instant::now();
        write(client, store, writer, key.as_bytes()).await;
        took.push(started.elapsed());
    }
    took.sort();
    (took[took.len() / 2], took[took.len() * 99 / 100])
}

/// Writes per second with `CONCURRENCY` writers in flight.
async fn throughput(client: &ClusterClient, store: &Versioned, writer: Writer, round: usize) -> f64 {
    let started = Instant::now();
    futures::stream::iter(0..THROUGHPUT_OPS)
        .for_each_concurrent(CONCURRENCY, |i| async move {
            let key = format!("tput:{round}:{i}");
            write(client, store, writer, key.as_bytes()).await;
        })
        .await;
    THROUGHPUT_OPS as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Keys per second of reading every key's value from the primaries: SCAN, then one batched GET per step.
async fn read_all(client: &ClusterClient) -> (u64, f64) {
    let started = Instant::now();
    let mut keys_read = 0u64;
    for shard in client.topology().shards() {
        let mut cursor = 0;
        loop {
            let (next, keys) = client
                .scan_node(&shard.primary, cursor, Some(b"audit:*"), 500)
                .await
                .expect("scan");
            keys_read += client.get_many(&keys).await.len() as u64;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    (keys_read, keys_read as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _lock = local_cluster::test_lock::exclusive().await?;
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let client = ClusterClient::connect(config).await?;
    let store = Versioned::new(client.clone(), ConsistencyConfig::default())?;

    // Warm up connections and load the script everywhere.
    for i in 0..2_000 {
        let key = format!("warm:{i}");
        write(&client, &store, Writer::Plain, key.as_bytes()).await;
        write(&client, &store, Writer::Versioned, key.as_bytes()).await;
    }

    // Plain and versioned rounds alternate, so that drift on a shared machine hits both alike.
    let (mut plain_lat, mut versioned_lat) = (Vec::new(), Vec::new());
    let (mut plain_ops, mut versioned_ops) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        plain_lat.push(latency(&client, &store, Writer::Plain, round).await);
        versioned_lat.push(latency(&client, &store, Writer::Versioned, round).await);
        plain_ops.push(throughput(&client, &store, Writer::Plain, round).await);
        versioned_ops.push(throughput(&client, &store, Writer::Versioned, round).await);
    }
    let p50 = |v: &[(Duration, Duration)]| median(v.iter().map(|l| l.0.as_secs_f64() * 1e6).collect());
    let p99 = |v: &[(Duration, Duration)]| median(v.iter().map(|l| l.1.as_secs_f64() * 1e6).collect());
    let (plain_p50, versioned_p50) = (p50(&plain_lat), p50(&versioned_lat));
    let (plain_p99, versioned_p99) = (p99(&plain_lat), p99(&versioned_lat));
    let (plain_ops, versioned_ops) = (median(plain_ops), median(versioned_ops));
    println!("set, one writer, {LATENCY_OPS} calls x {ROUNDS} rounds (medians of rounds):");
    println!(
        "  p50: plain {plain_p50:.0} µs, versioned {versioned_p50:.0} µs, ratio {:.2}x (target <= 1.3x)",
        versioned_p50 / plain_p50
    );
    println!(
        "  p99: plain {plain_p99:.0} µs, versioned {versioned_p99:.0} µs, ratio {:.2}x",
        versioned_p99 / plain_p99
    );
    println!(
        "set, {CONCURRENCY} writers, {THROUGHPUT_OPS} calls x {ROUNDS} rounds: plain {plain_ops:.0} ops/s, \
         versioned {versioned_ops:.0} ops/s, ratio {:.2}x",
        versioned_ops / plain_ops
    );

    // The audit of 100,000 keys.
    futures::stream::iter(0..AUDIT_KEYS)
        .for_each_concurrent(64, |i| {
            let store = &store;
            async move {
                let key = format!("audit:{i}");
                store
                    .set(key.as_bytes(), VALUE, None, WriteOptions::default())
                    .await
                    .expect("versioned set");
            }
        })
        .await;
    let (keys_read, read_rate) = read_all(&client).await;
    let options = AuditOptions::default().pattern("audit:*");
    let full = store.audit(&options, |_| {}).await?;
    let primaries_only = store.audit(&options.clone().scan_replicas(false), |_| {}).await?;
    assert_eq!(keys_read, AUDIT_KEYS as u64);
    assert!(
        full.is_clean() && full.keys_scanned == AUDIT_KEYS as u64,
        "{full}"
    );
    println!("audit of {AUDIT_KEYS} keys (3 primaries + 3 replicas):");
    println!("  baseline, SCAN + GET of every value on the primaries: {read_rate:.0} keys/s");
    println!(
        "  audit, primaries and replicas compared, replicas scanned too: {:.0} keys/s ({:.2}x the baseline), {full}",
        full.keys_per_second(),
        full.keys_per_second() / read_rate
    );
    println!(
        "  audit without the replica scan: {:.0} keys/s ({:.2}x the baseline)",
        primaries_only.keys_per_second(),
        primaries_only.keys_per_second() / read_rate
    );
    client.close().await;
    Ok(())
}
