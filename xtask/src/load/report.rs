//! What a run reports: the summary table on stdout and the results.json document.

use serde::Serialize;

use super::harness::RunResult;
use super::{ClientKind, Workload};

#[derive(Debug, Serialize)]
pub(super) struct Report<'a> {
    pub(super) command: String,
    pub(super) concurrency: usize,
    pub(super) value_size: usize,
    pub(super) seconds: u64,
    pub(super) keys: usize,
    pub(super) results: &'a [RunResult],
}

/// The summary table, one line per workload and client: medians over rounds, and each client's ops/s
/// divided by the faster variant of fred's cluster client, of redis-rs's, and by cluster-client's in the
/// same round (median over rounds), and its keys/s divided by `redis-benchmark -P 16`'s.
pub(crate) fn print_table(results: &[RunResult]) {
    println!(
        "\n{:<9} {:<22} {:>4} {:>10} {:>10} {:>8} {:>8} {:>7} {:>8} {:>9} {:>7} {:>7} {:>9} {:>6} {:>6}",
        "workload",
        "client",
        "runs",
        "ops/s",
        "keys/s",
        "p50 µs",
        "p99 µs",
        "÷ fred",
        "÷ redis",
        "÷ rr-cache",
        "÷ ours",
        "÷ P16",
        "cpu µs/op",
        "errors",
        "hits"
    );
    for (workload, client) in groups(results) {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.workload == workload && r.client == client)
            .collect();
        let show = |ratio: Option<f64>| ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}×"));
        println!(
            "{:<9} {:<22} {:>4} {:>10.0} {:>10.0} {:>8.0} {:>8.0} {:>7} {:>8} {:>9} {:>7} {:>7} {:>9.1} {:>6} {:>6}",
            format!("{workload:?}"),
            client,
            runs.len(),
            median(runs.iter().map(|r| r.ops_per_sec).collect()),
            median(runs.iter().map(|r| r.keys_per_sec).collect()),
            median(runs.iter().map(|r| r.p50_us as f64).collect()),
            median(runs.iter().map(|r| r.p99_us as f64).collect()),
            show(versus(results, &runs, ClientKind::Fred, Rate::Ops)),
            show(versus(results, &runs, ClientKind::RedisRs, Rate::Ops)),
            show(versus(results, &runs, ClientKind::RedisRsCached, Rate::Ops)),
            show(versus(results, &runs, ClientKind::Ours, Rate::Ops)),
            show(versus(results, &runs, ClientKind::RedisBenchmarkP16, Rate::Keys)),
            median(runs.iter().map(|r| r.cpu_us_per_op).collect()),
            runs.iter().map(|r| r.errors).sum::<u64>(),
            {
                let hits: Vec<f64> = runs.iter().filter_map(|r| r.hit_ratio).collect();
                if hits.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0}%", 100.0 * median(hits))
                }
            }
        );
    }
}

/// (workload, client) pairs: workloads in the order they ran; within one, in the order of
/// `ClientKind`, and then of first appearance.
pub(crate) fn groups(results: &[RunResult]) -> Vec<(Workload, &str)> {
    let mut groups: Vec<(Workload, &str)> = Vec::new();
    for r in results {
        if !groups.contains(&(r.workload, r.client.as_str())) {
            groups.push((r.workload, r.client.as_str()));
        }
    }
    groups.sort_by_key(|&(workload, client)| {
        let first = results.iter().position(|r| r.workload == workload).unwrap_or(0);
        let kind = results
            .iter()
            .find(|r| r.workload == workload && r.client == client)
            .map(|r| r.kind as usize)
            .unwrap_or(0);
        (first, kind)
    });
    groups
}

/// (workload, client, median ops/s over rounds) for every group of [`groups`], for the throughput plot.
pub(crate) fn median_ops_per_sec(results: &[RunResult]) -> Vec<(Workload, &str, f64)> {
    groups(results)
        .into_iter()
        .map(|(workload, client)| {
            let ops = results
                .iter()
                .filter(|r| r.workload == workload && r.client == client)
                .map(|r| r.ops_per_sec)
                .collect();
            (workload, client, median(ops))
        })
        .collect()
}

/// Which rate a ratio compares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rate {
    Ops,
    Keys,
}

impl Rate {
    fn of(self, r: &RunResult) -> f64 {
        match self {
            Rate::Ops => r.ops_per_sec,
            Rate::Keys => r.keys_per_sec,
        }
    }
}

/// The median over rounds of `runs`' rate divided by the faster run of kind `reference` in the same
/// workload and round: a peer measured both with its defaults and at its best settings is compared at
/// whichever of the two was faster that round. `None` when no round had such a run.
pub(crate) fn versus(
    results: &[RunResult],
    runs: &[&RunResult],
    reference: ClientKind,
    rate: Rate,
) -> Option<f64> {
    let ratios: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let best = results
                .iter()
                .filter(|o| o.workload == r.workload && o.kind == reference && o.round == r.round)
                .map(|o| rate.of(o))
                .fold(0.0, f64::max);
            (best > 0.0).then(|| rate.of(r) / best)
        })
        .collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    fn result(workload: Workload, kind: ClientKind, client: &str, round: usize, ops: f64) -> RunResult {
        RunResult {
            workload,
            client: client.to_string(),
            kind,
            variant: None,
            round,
            ops: 0,
            errors: 0,
            seconds: 1.0,
            ops_per_sec: ops,
            keys_per_sec: ops * workload.keys_per_call() as f64,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            cpu_us_per_op: 0.0,
            hit_ratio: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn ratios_are_against_the_faster_variant_of_a_peer_in_each_round() {
        use ClientKind::{Fred, Ours};
        let results = vec![
            result(Workload::Get, Ours, "ours", 0, 120.0),
            result(Workload::Get, Fred, "fred (default)", 0, 100.0),
            result(Workload::Get, Fred, "fred (best)", 0, 150.0),
            result(Workload::Get, Ours, "ours", 1, 90.0),
            // In round 1 the default variant was the faster one.
            result(Workload::Get, Fred, "fred (default)", 1, 100.0),
            result(Workload::Get, Fred, "fred (best)", 1, 60.0),
            // Another workload's fred does not count.
            result(Workload::Set, Fred, "fred (best)", 0, 1.0),
        ];
        let ours: Vec<&RunResult> = results.iter().filter(|r| r.client == "ours").collect();
        // Round 0: 120 / 150 = 0.8; round 1: 90 / 100 = 0.9; median 0.85.
        let ratio = versus(&results, &ours, Fred, Rate::Ops).unwrap_or(f64::NAN);
        assert!((ratio - 0.85).abs() < 1e-9, "{ratio}");
        assert_eq!(versus(&results, &ours, ClientKind::RedisRs, Rate::Ops), None);
        let fred_default: Vec<&RunResult> = results.iter().filter(|r| r.client == "fred (default)").collect();
        let ratio = versus(&results, &fred_default, Fred, Rate::Ops).unwrap_or(f64::NAN);
        assert!((ratio - (100.0 / 150.0 + 1.0) / 2.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn batches_compare_keys_per_second_with_the_pipelined_benchmark() {
        let results = vec![
            result(Workload::GetMany, ClientKind::Ours, "ours", 0, 4_000.0),
            result(
                Workload::GetMany,
                ClientKind::RedisBenchmarkP16,
                "redis-benchmark -P16",
                0,
                0.0,
            ),
        ];
        // redis-benchmark's requests are one key each: its keys/s is its ops/s.
        let mut results = results;
        results[1].ops_per_sec = 800_000.0;
        results[1].keys_per_sec = 800_000.0;
        assert_eq!(results[0].keys_per_sec, 400_000.0);
        let ours: Vec<&RunResult> = results.iter().take(1).collect();
        assert_eq!(
            versus(&results, &ours, ClientKind::RedisBenchmarkP16, Rate::Keys),
            Some(0.5)
        );
        assert_eq!(
            versus(&results, &ours, ClientKind::RedisBenchmarkP16, Rate::Ops),
            Some(4_000.0 / 800_000.0)
        );
    }
}
