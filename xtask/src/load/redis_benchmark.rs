//! `redis-benchmark --cluster` as one more client: running it and reading its CSV output.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cluster_config::NodeAddr;

use super::harness::{RunResult, children_cpu_time, progress_bar};
use super::{ClientKind, LoadArgs, Workload};

/// How deep `redis-benchmark -P` pipelines for the batch baseline.
pub(super) const PIPELINE: usize = 16;

/// The command redis-benchmark runs for the `del` baseline: a random key of the run's key space (`-r`);
/// `{tag}` lets `--cluster` send each client's keys to the node it is connected to.
const DEL_COMMAND: [&str; 2] = ["DEL", "key:{tag}:__rand_int__"];

/// Which redis-benchmark test stands for `workload`: SET and GET without pipelining for
/// [`ClientKind::RedisBenchmark`]; for [`ClientKind::RedisBenchmarkP16`] also the batches, whose
/// keys/s the pipelined GET, SET or DEL is the baseline for (`del` is not one of redis-benchmark's
/// tests: it runs [`DEL_COMMAND`]). `None` where redis-benchmark has no such call.
pub(super) fn test_for(kind: ClientKind, workload: Workload) -> Option<&'static str> {
    match (kind, workload) {
        (ClientKind::RedisBenchmark | ClientKind::RedisBenchmarkP16, Workload::Set) => Some("set"),
        (ClientKind::RedisBenchmark | ClientKind::RedisBenchmarkP16, Workload::Get) => Some("get"),
        (ClientKind::RedisBenchmarkP16, Workload::SetMany) => Some("set"),
        (ClientKind::RedisBenchmarkP16, Workload::GetMany) => Some("get"),
        (ClientKind::RedisBenchmarkP16, Workload::DelMany) => Some("del"),
        _ => None,
    }
}

/// `redis-benchmark --cluster` for the workloads it has (see [`test_for`]), same concurrency,
/// pipelined [`PIPELINE`] deep for [`ClientKind::RedisBenchmarkP16`]. Its CPU cost per request is its
/// own rusage (this process's children's, before and after).
pub(super) fn run(
    kind: ClientKind,
    workload: Workload,
    args: &LoadArgs,
    seed: &str,
) -> Result<Option<RunResult>> {
    let Some(test) = test_for(kind, workload) else {
        return Ok(None);
    };
    let pipelined = kind == ClientKind::RedisBenchmarkP16;
    let seed: NodeAddr = seed.parse().context("reading the seed node's address")?;
    let (host, port) = (seed.host(), seed.port().to_string());
    // Pipelined it is several times faster: more requests keep its run about as long as the others'.
    let requests = if pipelined {
        (400_000 * args.seconds.max(1) as usize).max(args.concurrency * PIPELINE * 1000)
    } else {
        200_000usize.max(args.concurrency * 1000)
    };
    let label = if pipelined {
        format!("redis-benchmark -P{PIPELINE}")
    } else {
        "redis-benchmark".to_string()
    };
    let bar = progress_bar(1, &format!("{workload:?} via {label}"));
    bar.set_message(format!("{requests} requests"));
    bar.enable_steady_tick(Duration::from_millis(200));
    if test == "get" {
        // Its keys are its own (`key:{tag}:N`): written first, so that its GETs find values as the
        // other clients' do (a GET of a missing key costs the server less), whatever ran before.
        fill(host, &port, args)?;
    }
    let cpu_before = children_cpu_time();
    let mut command = Command::new("redis-benchmark");
    command
        .args(["--cluster", "-h", host, "-p", &port, "-q", "--csv"])
        .args(["-c", &args.concurrency.to_string(), "-n", &requests.to_string()])
        .args(["-d", &args.value_size.to_string(), "-r", &args.keys.to_string()]);
    if pipelined {
        command.args(["-P", &PIPELINE.to_string()]);
    }
    if test == "del" {
        command.args(DEL_COMMAND);
    } else {
        command.args(["-t", test]);
    }
    let text = output_of(&mut command);
    let cpu = children_cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    let text = text?;
    let Some(mut result) = parse_benchmark_csv(&text, workload) else {
        bail!("could not read redis-benchmark's output:\n{text}");
    };
    result.client = label;
    result.kind = kind;
    result.ops = requests as u64;
    result.cpu_us_per_op = cpu.as_micros() as f64 / requests as f64;
    if result.ops_per_sec > 0.0 {
        result.seconds = requests as f64 / result.ops_per_sec;
    }
    println!(
        "{:<9} {:<22} {:>10.0} ops/s  p50 {:>6} µs  p99 {:>6} µs  cpu {:>5.1} µs/op",
        format!("{workload:?}"),
        result.client,
        result.ops_per_sec,
        result.p50_us,
        result.p99_us,
        result.cpu_us_per_op
    );
    Ok(Some(result))
}

/// Writes redis-benchmark's own key space (`-r keys`, five SETs a key, so that all but a few of them
/// are there) with values of the run's size, untimed.
fn fill(host: &str, port: &str, args: &LoadArgs) -> Result<()> {
    let requests = (args.keys * 5).to_string();
    output_of(
        Command::new("redis-benchmark")
            .args(["--cluster", "-h", host, "-p", port, "-q", "-t", "set", "-P", "16"])
            .args(["-c", &args.concurrency.to_string(), "-n", &requests])
            .args(["-d", &args.value_size.to_string(), "-r", &args.keys.to_string()]),
    )
    .context("filling redis-benchmark's keys")?;
    Ok(())
}

/// Runs a `redis-benchmark` command to its end: its standard output, or why it failed.
fn output_of(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .context("running redis-benchmark (it comes with the redis-server package)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `redis-benchmark --cluster -t set -P 16 -c 50` of `requests` SETs of `value_size` bytes over
/// `requests` random keys, against the cluster of `seed`: the write ceiling a warm-up is compared with.
/// Its SETs per second.
pub(crate) fn set_p16(seed: &str, requests: usize, value_size: usize) -> Result<f64> {
    let seed: NodeAddr = seed.parse().context("reading the seed node's address")?;
    let text = output_of(
        Command::new("redis-benchmark")
            .args(["--cluster", "-h", seed.host(), "-p", &seed.port().to_string()])
            .args([
                "-t",
                "set",
                "-q",
                "--csv",
                "-c",
                "50",
                "-P",
                &PIPELINE.to_string(),
            ])
            .args(["-n", &requests.to_string(), "-r", &requests.to_string()])
            .args(["-d", &value_size.max(1).to_string()]),
    )?;
    match parse_benchmark_csv(&text, Workload::Set) {
        Some(result) => Ok(result.ops_per_sec),
        None => bail!("could not read redis-benchmark's output:\n{text}"),
    }
}

/// Parses `--csv` output: a header line, then `"SET","123.45","0.1","0.0","0.1","0.2","0.3","1.0"`
/// (rps, avg, min, p50, p95, p99, max in ms); a command's line names the command
/// (`"DEL key:{tag}:__rand_int__",...`).
fn parse_benchmark_csv(text: &str, workload: Workload) -> Option<RunResult> {
    let line = text.lines().find(|l| {
        ["\"SET\"", "\"GET\"", "\"DEL "]
            .iter()
            .any(|test| l.starts_with(test))
    })?;
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
        variant: None,
        round: 0,
        ops: 0,
        errors: 0,
        seconds: 0.0,
        ops_per_sec: *fields.first()?,
        // Every redis-benchmark request is one key, pipelined or not.
        keys_per_sec: *fields.first()?,
        p50_us: us(*fields.get(3)?),
        p99_us: us(*fields.get(5)?),
        p999_us: 0,
        cpu_us_per_op: 0.0,
        hit_ratio: None,
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
        assert_eq!(r.keys_per_sec, 81234.5);
        let del = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"DEL key:{tag}:__rand_int__\",\"1593625.62\",\"0.341\",\"0.040\",\"0.311\",\"0.679\",\"0.903\",\"12.079\"\n";
        let r = parse_benchmark_csv(del, Workload::DelMany).unwrap();
        assert_eq!(r.ops_per_sec, 1593625.62);
        assert_eq!(r.p99_us, 903);
    }

    #[test]
    fn the_pipelined_baseline_stands_for_the_batches_too() {
        use ClientKind::{RedisBenchmark, RedisBenchmarkP16};
        assert_eq!(test_for(RedisBenchmark, Workload::Get), Some("get"));
        assert_eq!(test_for(RedisBenchmark, Workload::GetMany), None);
        assert_eq!(test_for(RedisBenchmarkP16, Workload::GetMany), Some("get"));
        assert_eq!(test_for(RedisBenchmarkP16, Workload::SetMany), Some("set"));
        assert_eq!(test_for(RedisBenchmarkP16, Workload::DelMany), Some("del"));
        assert_eq!(test_for(RedisBenchmark, Workload::DelMany), None);
        assert_eq!(test_for(RedisBenchmarkP16, Workload::Mixed), None);
        assert_eq!(test_for(RedisBenchmarkP16, Workload::HotGet), None);
        assert_eq!(test_for(ClientKind::Ours, Workload::Get), None);
    }
}
