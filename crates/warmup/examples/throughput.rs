//! Warm-up throughput against `redis-benchmark` on the same cluster, in the same run.
//!
//! ```text
//! cargo run --release -p warmup --example throughput [-- ROUNDS]
//! ```
//!
//! Starts a local 3 + 3 cluster, then, `ROUNDS` times (default 3), alternately:
//! `redis-benchmark --cluster -h 127.0.0.1 -p PORT -t set -n 1000000 -d 100 -P 16 -c 50 -r 1000000 -q`
//! and a warm-up of 1,000,000 entries of 100 bytes (validation off, so that both only write), with
//! `FLUSHALL` in between. Prints every figure, the medians and their ratio, then one more warm-up with
//! validation of every entry on the replicas, to show what proving the copies costs.

use std::process::Command;
use std::time::Duration;

use cluster_client::{Bytes, ClusterClient, Value};
use local_cluster::{ClusterSpec, LocalCluster};
use warmup::{Entry, Source, Warmup, WarmupConfig};

const ENTRIES: usize = 1_000_000;
const VALUE_BYTES: usize = 100;

type Failure = Box<dyn std::error::Error>;

fn benchmark(port: u16) -> Result<(f64, String), Failure> {
    let port = port.to_string();
    let n = ENTRIES.to_string();
    let d = VALUE_BYTES.to_string();
    let r = ENTRIES.to_string();
    let args = [
        "--cluster",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "set",
        "-n",
        &n,
        "-d",
        &d,
        "-P",
        "16",
        "-c",
        "50",
        "-r",
        &r,
        "-q",
    ];
    let command = format!("redis-benchmark {}", args.join(" "));
    let output = Command::new("redis-benchmark")
        .args(args)
        .output()
        .map_err(|e| format!("running redis-benchmark (it comes with redis-server): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` rewrites a progress line with `\r`; the final figure is the last segment.
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))
        .ok_or_else(|| format!("no figure in redis-benchmark's output: {text}"))?;
    let rate = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("unreadable redis-benchmark line: {line}"))?;
    Ok((rate, command))
}

async fn flush(cluster: &LocalCluster) -> Result<(), Failure> {
    for primary in cluster.primaries().await? {
        primary.command::<Value, _, _>(["FLUSHALL"]).await?;
    }
    // Let replicas apply the flush before the next writer starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

fn entries() -> Vec<Entry> {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    (0..ENTRIES)
        .map(|i| Entry::new(format!("warm:{i:07}"), value.clone()))
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
        .unwrap_or(3)
        .max(1);
    let cluster = LocalCluster::start(ClusterSpec::default()).await?;
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
        let (rate, cmd) = benchmark(port)?;
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

    flush(&cluster).await?;
    let validated = Warmup::new(client.clone(), WarmupConfig::default())?;
    let report = validated.run(Source::entries(entries())).await?;
    println!();
    println!(
        "with validation of every entry on the replicas: {:.0} entries/s writing, {:.2?} in all ({report})",
        report.entries_per_second(),
        report.elapsed
    );
    client.close().await;
    Ok(())
}
