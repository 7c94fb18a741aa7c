//! `cargo xtask demo`: the README's main job. A local 3+3 cluster, a warm-up with live progress, a mixed
//! load through the cache with live progress (and fred's cluster client in the same run for scale), a
//! health summary and a per-shard table; then everything stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cache_facade::{Cache, CacheConfig, ClusterConfig, Priority, WarmupConfig};
use indicatif::{ProgressBar, ProgressStyle};
use local_cluster::{LocalCluster, LocalClusterConfig};
use serde::{Deserialize, Serialize};

use crate::load::{self, LoadArgs, Rng, Workload};

/// Options of `cargo xtask demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Entries to warm the cluster with.
    #[arg(long, default_value_t = 200_000)]
    entries: usize,
    /// Seconds of load through the cache (and again through fred's cluster client).
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Concurrent tasks of the load.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
}

/// The demo's cached value: a small product record (about 100 bytes as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
    stock: u32,
    tags: Vec<String>,
}

fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("product {id}"),
        price_cents: 100 + id % 10_000,
        stock: (id % 500) as u32,
        tags: vec![
            "demo".into(),
            if id.is_multiple_of(2) {
                "even".into()
            } else {
                "odd".into()
            },
        ],
    }
}

pub(crate) fn demo(args: &DemoArgs) -> Result<()> {
    crate::prerequisites::ensure_redis()?;
    crate::cluster::runtime()?.block_on(run(args))
}

async fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    println!("1/5  Starting a local Redis Cluster: 3 primaries, 3 replicas (real redis-server processes)...");
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    println!("     ready in {:.1} s", started.elapsed().as_secs_f64());
    crate::cluster::print_status(&cluster).await?;

    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let settings = CacheConfig::builder().namespace("demo").build()?;
    let cache = Cache::with_config(config.clone(), settings).await?;

    // Warm-up: the first 1% is critical and is written before anything else.
    println!(
        "\n2/5  Warming the cluster with {} products (1% critical first, 3 shards in parallel)...",
        args.entries
    );
    let bar = ProgressBar::new(args.entries as u64);
    bar.set_style(
        ProgressStyle::with_template("     [{bar:40}] {pos}/{len} {msg}")
            .expect("constant template")
            .progress_chars("=> "),
    );
    let progress_bar = bar.clone();
    let critical = args.entries / 100;
    let entries = (0..args.entries as u64)
        .map(|id| {
            let priority = if (id as usize) < critical {
                Priority::Critical
            } else {
                Priority::Normal
            };
            let entry = cache.entry(format!("product:{id}"), &product(id))?;
            Ok(entry.ttl(Duration::from_secs(3600)).priority(priority))
        })
        .collect::<Result<Vec<_>, cache_facade::Error>>()?;
    let report = cache
        .warm_up_with_progress(entries, WarmupConfig::default(), move |p| {
            progress_bar.set_position(p.written);
            progress_bar.set_message(format!(
                "{:>8.0} entries/s  {:>6.1} MB/s  {:?}",
                p.entries_per_second,
                p.bytes_per_second / 1e6,
                p.phase
            ));
        })
        .await?;
    bar.finish_and_clear();
    let warm_rate = report.entries_per_second();
    println!(
        "     written {} of {} ({} failed, {} rejected) in {:.2} s of writing = {:.0} entries/s; validated on replicas: {}",
        report.written,
        report.read,
        report.failed,
        report.rejected,
        report.write_elapsed.as_secs_f64(),
        warm_rate,
        report
            .validation
            .as_ref()
            .map(|v| format!("{} checked, {} bad", v.checked, v.bad_entries))
            .unwrap_or_else(|| "no".into())
    );
    // The same cluster's write ceiling, measured now: redis-benchmark's pipelined SET of as many
    // entries of the warm-up's average size, the median of three runs (one run of 200,000 SETs
    // lasts half a second, and on a shared machine one run can be off by half).
    let bytes: u64 = report.shards.iter().map(|s| s.bytes).sum();
    let value_size = (bytes / report.written.max(1)) as usize;
    let ceilings: Result<Vec<f64>> = (0..3)
        .map(|_| load::redis_benchmark::set_p16(&cluster.seeds()[0], args.entries, value_size))
        .collect();
    match ceilings {
        Ok(mut ceilings) => {
            ceilings.sort_by(f64::total_cmp);
            let ceiling = ceilings[1];
            println!(
                "     = {:.2}x `redis-benchmark --cluster -t set -P 16 -c 50 -d {value_size}` on this cluster ({ceiling:.0} SET/s, the median of {:.0}, {:.0} and {:.0}; the warm-up also versions, journals and then validates every entry)",
                warm_rate / ceiling,
                ceilings[0],
                ceilings[1],
                ceilings[2]
            )
        }
        Err(error) => println!("     (redis-benchmark for comparison did not run: {error:#})"),
    }
    println!("\n     per shard:");
    println!(
        "     {:<18} {:>10} {:>10} {:>10}",
        "primary", "written", "retried", "MB"
    );
    for shard in &report.shards {
        println!(
            "     {:<18} {:>10} {:>10} {:>10.1}",
            shard.primary,
            shard.written,
            shard.failed_attempts,
            shard.bytes as f64 / 1e6
        );
    }

    // Load: 80% get (hits on the warmed keys), 20% set, through the typed cache.
    println!(
        "\n3/5  Load: {} tasks, 80% get / 20% set, {} s through the cache, then {} s through fred's cluster client",
        args.concurrency, args.seconds, args.seconds
    );
    let load_args = LoadArgs {
        workloads: vec![Workload::Mixed],
        concurrency: args.concurrency,
        value_size: 100,
        seconds: args.seconds,
        keys: args.entries,
        batch_size: load::BATCH,
        pool_size: None,
        clients: vec![load::ClientKind::Ours, load::ClientKind::Fred],
        rounds: 1,
        tls: false,
        out: "target/demo".into(),
    };
    let keys = args.entries;
    // Start the client's latency window here, so the per-node percentiles below are the load's and
    // not the warm-up's.
    cache.client().take_node_stats();
    let facade = cache.clone();
    let mut ours = load::run(
        Workload::Mixed,
        "cache (typed, versioned)",
        &load_args,
        move |rng: &mut Rng| {
            let cache = facade.clone();
            let id = rng.next(keys) as u64;
            let write = rng.next(100) < 20;
            async move {
                let key = format!("product:{id}");
                if write {
                    cache
                        .set(&key, &product(id), Some(Duration::from_secs(3600)))
                        .await
                        .is_ok()
                } else {
                    matches!(cache.get::<Product>(&key).await, Ok(Some(_)))
                }
            }
        },
    )
    .await;
    ours.kind = load::ClientKind::Cache;
    let fred = load::fred_cluster_client(&config).await?;
    let value = Arc::new(vec![b'x'; 100]);
    let baseline = load::run_fred(&fred, Workload::Mixed, &load_args, value).await;
    let _ = fred::prelude::ClientLike::quit(&fred).await;
    let results = [ours.clone(), baseline.clone()];
    load::print_table(&results);
    std::fs::create_dir_all(&load_args.out).context("creating target/demo")?;
    crate::plot::latency_over_time(&load_args.out.join("latency.png"), &results)?;

    println!("\n4/5  Health summary (one collection round over every node):");
    // Read before the round: the round takes the latency window and starts the next one.
    let stats = cache.client().node_stats();
    let summary = cache
        .cluster_health_summary()
        .await
        .context("health collection is on by default")?;
    println!(
        "     status {:?}; nodes {}/{}; slots {}/{}; {} keys; {} ops/s; replicas per primary {:.1}",
        summary.status,
        summary.nodes_connected,
        summary.nodes_total,
        summary
            .slots_covered
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into()),
        summary.slots_total,
        summary.keys,
        summary.ops_per_sec,
        summary.replication.replicas_per_primary,
    );
    println!(
        "     {:<18} {:>12} {:>10} {:>10} {:>10}",
        "node", "memory MB", "commands", "p50 µs", "p99 µs"
    );
    let micros = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), |d| d.as_micros().to_string());
    for memory in &summary.memory {
        let node = stats.iter().find(|s| s.node == memory.addr);
        println!(
            "     {:<18} {:>12.1} {:>10} {:>10} {:>10}",
            memory.addr,
            memory.used_bytes as f64 / 1e6,
            node.map(|n| n.commands).unwrap_or(0),
            micros(node.and_then(|n| n.latency_p50)),
            micros(node.and_then(|n| n.latency_p99)),
        );
    }
    if summary.active_alerts.is_empty() {
        println!("     no active alerts");
    }
    for alert in &summary.active_alerts {
        println!("     ALERT {alert:?}");
    }
    for note in &summary.unknown {
        println!("     unknown: {note}");
    }

    let stats = cache.stats();
    println!("\n5/5  Figures");
    println!(
        "     warm-up           {warm_rate:>10.0} entries/s ({} entries)",
        report.written
    );
    println!(
        "     cache load        {:>10.0} ops/s  p50 {} µs  p99 {} µs  errors {}",
        ours.ops_per_sec, ours.p50_us, ours.p99_us, ours.errors
    );
    println!(
        "     fred cluster      {:>10.0} ops/s  p50 {} µs  p99 {} µs  (same cluster, same run; ratio {:.2}×)",
        baseline.ops_per_sec,
        baseline.p50_us,
        baseline.p99_us,
        ours.ops_per_sec / baseline.ops_per_sec.max(1.0)
    );
    println!(
        "     cache hits/misses {:>10}/{}; stale writes refused {}",
        stats.hits, stats.misses, stats.stale_refused
    );
    println!("     latency plot      target/demo/latency.png");
    println!(
        "\nDone in {:.0} s; stopping the cluster.",
        started.elapsed().as_secs_f64()
    );
    drop(cache);
    drop(cluster);
    Ok(())
}
