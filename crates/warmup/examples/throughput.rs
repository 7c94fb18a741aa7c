//! Warm-up throughput against `redis-benchmark` on the same cluster, in the same run.
//!
//! ```text
//! cargo run --release -p warmup --example throughput [-- ROUNDS]
//! ```
//!
//! Starts a local 3 + 3 cluster, then, `ROUNDS` times (default 5), alternately:
//! `redis-benchmark --cluster -h 127.0.0.1 -p PORT -t set -n 1000000 -d 100 -P 16 -c 50 -r 1000000 -q`
//! and a warm-up of 1,000,000 entries of 100 bytes (validation off, so that both only write), with
//! `FLUSHALL` in between. Prints every figure, the medians and their ratio. Then the same with a 1 h TTL
//! on every entry, against `redis-benchmark … SET key:{tag}:__rand_int__ <100 bytes> PX 3600000`, and
//! one run each with validation and with rollback capture, to show what those cost.

use std::process::Command;
use std::time::Duration;

use cluster_client::ClusterClient;
use local_cluster::{LocalCluster, LocalClusterConfig};
use warmup::{Entry, Source, Warmup, WarmupConfig};

const ENTRIES: usize = 1_000_000;
const VALUE_BYTES: usize = 100;

type Failure = Box<dyn std::error::Error>;

/// Runs `redis-benchmark` on the cluster: the `SET` test (`-t set -d 100`), or with `ttl`, the
/// custom command `SET key:{tag}:__rand_int__ <100 bytes> PX <ms>` (`{tag}` routes keys in cluster
/// mode). Returns requests per second and the command line.
fn benchmark(port: u16, ttl: Option<Duration>) -> Result<(f64, String), Failure> {
    let port = port.to_string();
    let n = ENTRIES.to_string();
    let value = "x".repeat(VALUE_BYTES);
    let ms = ttl.map(|t| t.as_millis().to_string()).unwrap_or_default();
    let mut args: Vec<&str> = vec![
        "--cluster",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-n",
        &n,
        "-P",
        "16",
        "-c",
        "50",
    ];
    args.extend(["-r", &n, "-q"]);
    let d = VALUE_BYTES.to_string();
    match ttl {
        None => args.extend(["-t", "set", "-d", &d]),
        Some(_) => args.extend(["SET", "key:{tag}:__rand_int__", &value, "PX", &ms]),
    }
    let shown: Vec<&str> = args
        .iter()
        .map(|a| if a.len() > 40 { "<100 bytes>" } else { a })
        .collect();
    let command = format!("redis-benchmark {}", shown.join(" "));
    let output = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .map_err(|e| format!("running redis-benchmark (it comes with redis-server): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` rewrites a progress line with `\r`; the final figure is the last segment.
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))
        .ok_or_else(|| format!("no figure in redis-benchmark's output: {text}"))?;
    let rate = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("unreadable redis-benchmark line: {line}"))?;
    Ok((rate, command))
}

async fn flush(cluster: &LocalCluster) -> Result<(), Failure> {
    for primary in cluster.primaries().await? {
        primary.command::<(), _, _>(["FLUSHALL"]).await?;
    }
    // Let replicas apply the flush before the next writer starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// A million entries, each with its own 100-byte value (as if read from a file), built before the
/// clock starts.
fn entries() -> Vec<Entry> {
    (0..ENTRIES)
        .map(|i| {
            Entry::new(
                format!("warm:{i:07}"),
                format!("{i:0width$}", width = VALUE_BYTES),
            )
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let port = cluster.nodes()[0].port();
    let config = cluster_config::ClusterConfig::builder()
        .nodes(cluster.seeds())
        .build()?;
    let client = ClusterClient::connect(config).await?;
    let plain = Warmup::new(client.clone(), WarmupConfig::default().validation(None))?;

    let mut bench_rates = Vec::new();
    let mut warm_rates = Vec::new();
    let mut command = String::new();
    for round in 1..=rounds {
        flush(&cluster).await?;
        let (rate, cmd) = benchmark(port, None)?;
        command = cmd;
        println!("round {round}: redis-benchmark {rate:>10.0} SET/s");
        bench_rates.push(rate);

        flush(&cluster).await?;
        let report = plain.run(Source::entries(entries())).await?;
        assert_eq!(report.written, ENTRIES as u64, "{report}");
        println!(
            "round {round}: warm-up         {:>10.0} entries/s  ({report})",
            report.entries_per_second()
        );
        warm_rates.push(report.entries_per_second());
    }
    let bench = median(&mut bench_rates);
    let warm = median(&mut warm_rates);
    println!();
    println!("baseline: {command}");
    println!("median redis-benchmark: {bench:.0} SET/s");
    println!("median warm-up:         {warm:.0} entries/s");
    println!("ratio warm-up / redis-benchmark: {:.2}", warm / bench);

    // With TTLs, against redis-benchmark's `SET … PX` in the same run.
    let ttl = Duration::from_secs(3600);
    flush(&cluster).await?;
    let (bench_ttl, command_ttl) = benchmark(port, Some(ttl))?;
    flush(&cluster).await?;
    let with_ttl: Vec<Entry> = entries().into_iter().map(|e| e.ttl(ttl)).collect();
    let report = plain.run(Source::entries(with_ttl)).await?;
    assert_eq!(report.written, ENTRIES as u64, "{report}");
    println!();
    println!("baseline: {command_ttl}");
    println!("redis-benchmark SET … PX: {bench_ttl:.0} SET/s");
    println!(
        "warm-up, every entry with a 1 h TTL: {:.0} entries/s, ratio {:.2}",
        report.entries_per_second(),
        report.entries_per_second() / bench_ttl
    );

    // What validation and rollback cost, one run each on an empty cluster.
    let variants = [
        (
            "validation of every entry on the replicas",
            WarmupConfig::default(),
        ),
        (
            "rollback on (previous values captured) and validation",
            WarmupConfig::default().rollback_above(0.01),
        ),
    ];
    println!();
    for (name, config) in variants {
        flush(&cluster).await?;
        let report = Warmup::new(client.clone(), config)?
            .run(Source::entries(entries()))
            .await?;
        assert_eq!(report.written, ENTRIES as u64, "{report}");
        println!(
            "{name}: {:.0} entries/s writing ({:.2} of the median redis-benchmark), {:.2?} in all",
            report.entries_per_second(),
            report.entries_per_second() / bench,
            report.elapsed
        );
    }
    client.close().await;
    Ok(())
}
