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
/// divided by fred's cluster client's and by cluster-client's in the same round (median over rounds).
pub(crate) fn print_table(results: &[RunResult]) {
    println!(
        "\n{:<9} {:<22} {:>4} {:>10} {:>8} {:>8} {:>7} {:>8} {:>9} {:>6}",
        "workload", "client", "runs", "ops/s", "p50 µs", "p99 µs", "÷ fred", "÷ ours", "cpu µs/op", "errors"
    );
    let mut groups: Vec<(Workload, &str)> = Vec::new();
    for r in results {
        if !groups.contains(&(r.workload, r.client.as_str())) {
            groups.push((r.workload, r.client.as_str()));
        }
    }
    // Workloads in the order they ran; within one, in the order of `ClientKind`.
    groups.sort_by_key(|&(workload, client)| {
        let first = results.iter().position(|r| r.workload == workload).unwrap_or(0);
        let kind = results
            .iter()
            .find(|r| r.workload == workload && r.client == client)
            .map(|r| r.kind as usize)
            .unwrap_or(0);
        (first, kind)
    });
    for (workload, client) in groups {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.workload == workload && r.client == client)
            .collect();
        let versus = |reference: ClientKind| -> String {
            let ratios: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    results
                        .iter()
                        .find(|o| o.workload == workload && o.kind == reference && o.round == r.round)
                        .filter(|o| o.ops_per_sec > 0.0)
                        .map(|o| r.ops_per_sec / o.ops_per_sec)
                })
                .collect();
            if ratios.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}×", median(ratios))
            }
        };
        println!(
            "{:<9} {:<22} {:>4} {:>10.0} {:>8.0} {:>8.0} {:>7} {:>8} {:>9.1} {:>6}",
            format!("{workload:?}"),
            client,
            runs.len(),
            median(runs.iter().map(|r| r.ops_per_sec).collect()),
            median(runs.iter().map(|r| r.p50_us as f64).collect()),
            median(runs.iter().map(|r| r.p99_us as f64).collect()),
            versus(ClientKind::Fred),
            versus(ClientKind::Ours),
            median(runs.iter().map(|r| r.cpu_us_per_op).collect()),
            runs.iter().map(|r| r.errors).sum::<u64>()
        );
    }
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
}
