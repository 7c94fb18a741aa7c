//! The harness: runs one call from many tasks for a fixed time and measures throughput, latency
//! percentiles, a per-second timeline and CPU cost.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::calls::Rng;
use super::{ClientKind, LoadArgs, Workload};

/// One workload run through one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    pub(crate) workload: Workload,
    pub(crate) client: String,
    /// Which kind of client (for the summary's ratios); `Ours` for runs the demo makes itself.
    pub(crate) kind: ClientKind,
    /// For a peer measured more than one way: `default` (as its users build it) or `best` (its best
    /// documented settings).
    pub(crate) variant: Option<&'static str>,
    /// Which round of `--rounds` (0-based).
    pub(crate) round: usize,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) ops_per_sec: f64,
    /// Keys per second: `ops_per_sec` times the keys one call touches (100 for a get-many).
    pub(crate) keys_per_sec: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    /// CPU time this process spent per call (user + system, µs): a cost figure that holds up on a busy
    /// machine better than ops/s.
    pub(crate) cpu_us_per_op: f64,
    /// Per second of the run: (ops, p99 in µs).
    pub(crate) timeline: Vec<(u64, u64)>,
    /// For a client with a local cache: hits over reads during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hit_ratio: Option<f64>,
}

/// Runs `op` from `args.concurrency` tasks for `args.seconds`, with a live progress bar.
pub(crate) async fn run<F, Fut>(workload: Workload, client: &str, args: &LoadArgs, op: F) -> RunResult
where
    F: Fn(&mut Rng) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let duration = Duration::from_secs(args.seconds);
    let cpu_before = cpu_time();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let seconds = args.seconds as usize + 1;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            let op = op.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let mut all = new_histogram();
                let mut per_second: Vec<Histogram<u64>> = (0..seconds).map(|_| new_histogram()).collect();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let call = Instant::now();
                    let ok = op(&mut rng).await;
                    let micros = (call.elapsed().as_micros() as u64).max(1);
                    let _ = all.record(micros);
                    let second = (call.duration_since(started).as_secs() as usize).min(seconds - 1);
                    let _ = per_second[second].record(micros);
                    if !ok {
                        errors += 1;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                (all, per_second, errors)
            })
        })
        .collect();
    let bar = progress_bar(args.seconds * 10, &format!("{workload:?} via {client}"));
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed().as_secs_f64();
        bar.set_position((elapsed * 10.0) as u64);
        bar.set_message(format!(
            "{:>9.0} ops/s",
            counter.load(Ordering::Relaxed) as f64 / elapsed
        ));
    }
    let mut all = new_histogram();
    let mut per_second: Vec<Histogram<u64>> = (0..seconds).map(|_| new_histogram()).collect();
    let mut errors = 0;
    for task in tasks {
        if let Ok((h, seconds, e)) = task.await {
            let _ = all.add(&h);
            for (total, part) in per_second.iter_mut().zip(&seconds) {
                let _ = total.add(part);
            }
            errors += e;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let result = RunResult {
        cpu_us_per_op: cpu.as_micros() as f64 / all.len().max(1) as f64,
        workload,
        client: client.to_string(),
        kind: ClientKind::Ours,
        variant: None,
        round: 0,
        ops: all.len(),
        errors,
        seconds: elapsed,
        ops_per_sec: all.len() as f64 / elapsed,
        keys_per_sec: (all.len() * workload.keys_per_call() as u64) as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
        p999_us: all.value_at_quantile(0.999),
        timeline: per_second
            .iter()
            .take(args.seconds as usize)
            .map(|h| (h.len(), h.value_at_quantile(0.99)))
            .collect(),
        hit_ratio: None,
    };
    println!(
        "{:<9} {:<22} {:>10.0} ops/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  cpu {:>5.1} µs/op  errors {}",
        format!("{workload:?}"),
        client,
        result.ops_per_sec,
        result.p50_us,
        result.p99_us,
        result.p999_us,
        result.cpu_us_per_op,
        result.errors
    );
    result
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    rusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// User + system CPU time of the children of this process that have ended and been waited for (such
/// as redis-benchmark after `Command::output`).
pub(crate) fn children_cpu_time() -> Duration {
    rusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
}

fn rusage(who: nix::sys::resource::UsageWho) -> Duration {
    use nix::sys::resource::getrusage;
    match getrusage(who) {
        Ok(usage) => {
            let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
        }
        Err(_) => Duration::ZERO,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

pub(crate) fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<34} [{bar:30}] {msg}")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
