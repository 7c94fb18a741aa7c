//! `redis-benchmark --cluster` as one more client: running it and reading its CSV output.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cluster_config::NodeAddr;

use super::harness::{RunResult, progress_bar};
use super::{ClientKind, LoadArgs, Workload};

/// `redis-benchmark --cluster` for the workloads it has (SET, GET), same concurrency, no pipelining.
pub(super) fn run(workload: Workload, args: &LoadArgs, seed: &str) -> Result<Option<RunResult>> {
    let test = match workload {
        Workload::Set => "set",
        Workload::Get => "get",
        _ => return Ok(None),
    };
    let seed: NodeAddr = seed.parse().context("reading the seed node's address")?;
    let (host, port) = (seed.host(), seed.port().to_string());
    let requests = 200_000usize.max(args.concurrency * 1000);
    let bar = progress_bar(1, &format!("{workload:?} via redis-benchmark"));
    bar.set_message(format!("{requests} requests"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let output = Command::new("redis-benchmark")
        .args(["--cluster", "-h", host, "-p", &port, "-t", test, "-q", "--csv"])
        .args(["-c", &args.concurrency.to_string(), "-n", &requests.to_string()])
        .args(["-d", &args.value_size.to_string(), "-r", &args.keys.to_string()])
        .output()
        .context("running redis-benchmark (it comes with the redis-server package)")?;
    bar.finish_and_clear();
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(result) = parse_benchmark_csv(&text, workload) else {
        bail!("could not read redis-benchmark's output:\n{text}");
    };
    println!(
        "{:<9} {:<22} {:>10.0} ops/s  p50 {:>6} µs  p99 {:>6} µs",
        format!("{workload:?}"),
        result.client,
        result.ops_per_sec,
        result.p50_us,
        result.p99_us
    );
    Ok(Some(result))
}

/// Parses `--csv` output: a header line, then `"SET","123.45","0.1","0.0","0.1","0.2","0.3","1.0"`
/// (rps, avg, min, p50, p95, p99, max in ms).
fn parse_benchmark_csv(text: &str, workload: Workload) -> Option<RunResult> {
    let line = text
        .lines()
        .find(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|f| f.trim_matches('"').parse().ok())
        .collect();
    let us = |ms: f64| (ms * 1000.0) as u64;
    Some(RunResult {
        workload,
        client: "redis-benchmark".into(),
        kind: ClientKind::RedisBenchmark,
        round: 0,
        ops: 0,
        errors: 0,
        seconds: 0.0,
        ops_per_sec: *fields.first()?,
        p50_us: us(*fields.get(3)?),
        p99_us: us(*fields.get(5)?),
        p999_us: 0,
        cpu_us_per_op: 0.0,
        timeline: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"81234.50\",\"0.500\",\"0.100\",\"0.450\",\"0.900\",\"1.500\",\"5.000\"\n";
        let r = parse_benchmark_csv(text, Workload::Set).unwrap();
        assert_eq!(r.ops_per_sec, 81234.5);
        assert_eq!(r.p50_us, 450);
        assert_eq!(r.p99_us, 1500);
        assert!(parse_benchmark_csv("garbage", Workload::Get).is_none());
    }
}
