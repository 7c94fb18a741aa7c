//! `cargo xtask cluster-scale`: add primaries (from the spare nodes `cluster-up` started), remove a
//! primary, or rebalance slots, on the cluster from `cargo xtask cluster-up`, through
//! `rebalance::Rebalancer`; a progress bar while slots move, then slots, keys and memory per primary
//! before and after, the move report and the distribution verdict.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cluster_client::ClusterClient;
use cluster_config::ClusterConfig;
use indicatif::{ProgressBar, ProgressStyle};
use local_cluster::{ClusterNode, LocalCluster};
use rebalance::{DistributionCheck, MoveReport, Progress, RebalanceConfig, Rebalancer, Weights};
use sharding::{DistributionReport, Verdict, Violation};

/// Options of `cargo xtask cluster-scale`: exactly one of `--add-primaries`, `--remove-primary`,
/// `--rebalance`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["add_primaries", "remove_primary", "rebalance"])))]
pub(crate) struct ScaleArgs {
    /// Add this many primaries, each from a spare node of `cluster-up` with `--replicas` more spares as
    /// its replicas, then move slots onto them (one plan for all of them).
    #[arg(long)]
    add_primaries: Option<usize>,
    /// Replicas of each added primary.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Drain this primary (`host:port`) to the others, re-attach its replicas, and forget it.
    #[arg(long, value_name = "ADDR")]
    remove_primary: Option<String>,
    /// Move slots so that every primary holds its weighted share.
    #[arg(long)]
    rebalance: bool,
    /// Weights for `--rebalance` (and the distribution check), `host:port=w,...`; unnamed primaries
    /// weigh 1, weight 0 drains a primary.
    #[arg(long, value_delimiter = ',', value_name = "ADDR=W")]
    weights: Vec<String>,
    /// Keys per MIGRATE.
    #[arg(long, default_value_t = 100)]
    keys_per_batch: usize,
    /// Slots moving at once (never two from one source or to one target).
    #[arg(long, default_value_t = 4)]
    concurrent_slots: usize,
    /// Primaries within this percentage of their weighted share are left alone (redis-cli's default: 2).
    #[arg(long, default_value_t = 2.0)]
    threshold_percent: f64,
}

pub(crate) fn scale(args: &ScaleArgs) -> Result<()> {
    let weights = parse_weights(&args.weights)?;
    if args.add_primaries == Some(0) {
        bail!("--add-primaries must be at least 1");
    }
    crate::cluster::runtime()?.block_on(async {
        let Some(cluster) = crate::cluster::running()? else {
            bail!("no local cluster is running; start one with `cargo xtask cluster-up`");
        };
        let topology = crate::cluster::widest_topology(&cluster).await?;
        let config = ClusterConfig::builder()
            .nodes(member_addrs(&topology))
            .command_timeout(Duration::from_secs(2))
            .build()?;
        let client = ClusterClient::connect(config)
            .await
            .context("connecting to the local cluster")?;
        let settings = RebalanceConfig::builder()
            .keys_per_batch(args.keys_per_batch)
            .concurrent_slots(args.concurrent_slots)
            .threshold_percent(args.threshold_percent)
            .build()?;
        let bar = move_bar();
        let progress = bar.clone();
        let rebalancer =
            Rebalancer::new(client.clone(), settings).on_progress(move |p: &Progress| show(&progress, p));
        let before = rebalancer
            .validate_distribution(&weights)
            .await
            .context("reading slots, keys and memory per primary")?;
        let result = run(args, &cluster, &topology, &rebalancer, &weights, &bar).await;
        bar.finish_and_clear();
        let report = result?;
        let after = rebalancer
            .validate_distribution(&weights)
            .await
            .context("reading slots, keys and memory per primary")?;
        print_loads(&before, &after);
        print_report(&report);
        print_verdict(&after);
        client.close().await;
        Ok(())
    })
}

/// The action itself.
async fn run(
    args: &ScaleArgs,
    cluster: &LocalCluster,
    topology: &[ClusterNode],
    rebalancer: &Rebalancer,
    weights: &Weights,
    bar: &ProgressBar,
) -> Result<MoveReport> {
    if let Some(addr) = &args.remove_primary {
        println!("Removing primary {addr}: draining its slots to the others.");
        return Ok(rebalancer.remove_primary(addr).await?);
    }
    if args.rebalance {
        let plan = rebalancer.plan(weights).await?;
        if plan.is_empty() {
            println!(
                "Every primary is within {}% of its share: nothing to move.",
                args.threshold_percent
            );
            return Ok(MoveReport::default());
        }
        println!("Plan: {plan}");
        bar.reset();
        return Ok(rebalancer.execute(&plan).await?);
    }
    let count = args.add_primaries.unwrap_or(0);
    let free = free_spares(cluster, topology);
    let needed = count * (1 + args.replicas);
    if free.len() < needed {
        bail!(
            "adding {count} primar{} with {} replica(s) each needs {needed} spare nodes, {} are free ({}); start \
             the cluster with more: `cargo xtask cluster-down && cargo xtask cluster-up --spares {needed}`",
            if count == 1 { "y" } else { "ies" },
            args.replicas,
            free.len(),
            if free.is_empty() {
                "none".to_string()
            } else {
                free.join(" ")
            }
        );
    }
    let mut report = MoveReport::default();
    let mut spares = free.into_iter();
    for i in 0..count {
        let primary = spares.next().context("a free spare")?;
        let replicas: Vec<String> = spares.by_ref().take(args.replicas).collect();
        let replica_refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
        // Primaries joined before the last one join with weight 0 (nothing moves yet); the last one's
        // plan then moves slots onto all of them at once, so that no slot moves twice.
        let mut joined_weights = weights.clone();
        if i + 1 < count {
            joined_weights.set(primary.clone(), 0.0);
        }
        println!(
            "Adding primary {primary}{}.",
            if replicas.is_empty() {
                String::new()
            } else {
                format!(" with replica(s) {}", replicas.join(" "))
            }
        );
        bar.reset();
        let step = rebalancer
            .add_primary_with_weights(&primary, &replica_refs, &joined_weights)
            .await?;
        report.slots.extend(step.slots);
        report.keys += step.keys;
        report.bytes += step.bytes;
        report.took += step.took;
        report.busy_keys.extend(step.busy_keys);
    }
    Ok(report)
}

/// `host:port=w` pairs.
fn parse_weights(pairs: &[String]) -> Result<Weights> {
    let mut weights = Weights::new();
    for pair in pairs {
        let Some((addr, weight)) = pair.split_once('=') else {
            bail!("--weights takes host:port=weight pairs, got {pair:?}");
        };
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .with_context(|| format!("the weight in {pair:?} must be a number of at least 0"))?;
        weights.set(addr.trim().to_string(), weight);
    }
    Ok(weights)
}

/// The addresses of the cluster's members (not failing), for the client's seed list.
fn member_addrs(topology: &[ClusterNode]) -> Vec<String> {
    topology
        .iter()
        .filter(|e| !e.is_failing())
        .filter_map(|e| e.port.map(|p| format!("127.0.0.1:{p}")))
        .collect()
}

/// Spare nodes that are running and not in the cluster, in port order.
fn free_spares(cluster: &LocalCluster, topology: &[ClusterNode]) -> Vec<String> {
    let members: BTreeSet<u16> = topology.iter().filter_map(|e| e.port).collect();
    cluster
        .spares()
        .iter()
        .filter(|n| n.is_running() && !members.contains(&n.port()))
        .map(|n| n.addr())
        .collect()
}

/// The bar `show` feeds: slots done of the run's total, keys, bytes, keys/s, the current slot.
pub(crate) fn move_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("moving slots [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Shows one of the Rebalancer's progress snapshots on `bar`.
pub(crate) fn show(bar: &ProgressBar, p: &Progress) {
    bar.set_length(p.slots_total as u64);
    bar.set_position(p.slots_done as u64);
    let seconds = p.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        p.keys_moved as f64 / seconds
    } else {
        0.0
    };
    bar.set_message(format!(
        "slots, {} keys, {}, {rate:.0} keys/s{}",
        p.keys_moved,
        bytes(p.bytes_moved),
        p.current_slot.map(|s| format!(", slot {s}")).unwrap_or_default()
    ));
}

/// `12.3 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Slots, keys and memory per primary, before → after; a primary that joined or left shows `-`.
fn print_loads(before: &DistributionCheck, after: &DistributionCheck) {
    let nodes: BTreeSet<&str> = before
        .primaries
        .iter()
        .chain(&after.primaries)
        .map(|p| p.node.as_str())
        .collect();
    println!(
        "\n{:<17} {:>17} {:>23} {:>25}",
        "primary", "slots", "keys", "memory"
    );
    let cell = |check: &DistributionCheck, node: &str, f: &dyn Fn(&rebalance::PrimaryLoad) -> String| {
        check
            .primaries
            .iter()
            .find(|p| p.node == node)
            .map_or_else(|| "-".to_string(), f)
    };
    for node in nodes {
        let column = |f: &dyn Fn(&rebalance::PrimaryLoad) -> String| {
            format!("{} → {}", cell(before, node, f), cell(after, node, f))
        };
        println!(
            "{:<17} {:>17} {:>23} {:>25}",
            node,
            column(&|p| p.slots.to_string()),
            column(&|p| p.keys.to_string()),
            column(&|p| bytes(p.used_memory)),
        );
    }
}

fn print_report(report: &MoveReport) {
    println!("\nmoved: {report}");
    let mut pairs: std::collections::BTreeMap<(&str, &str), (usize, u64)> = Default::default();
    for slot in &report.slots {
        let entry = pairs.entry((&slot.from, &slot.to)).or_default();
        entry.0 += 1;
        entry.1 += slot.keys;
    }
    for ((from, to), (slots, keys)) in pairs {
        println!("  {from} → {to}: {slots} slots, {keys} keys");
    }
    if let Some(slowest) = report.slots.iter().max_by_key(|s| s.took) {
        println!(
            "  slowest slot: {} ({} keys) in {:.1?}",
            slowest.slot, slowest.keys, slowest.took
        );
    }
}

fn print_verdict(check: &DistributionCheck) {
    let verdict = |report: &DistributionReport| match &report.verdict {
        Verdict::Balanced => format!(
            "balanced (busiest {:.2}x the mean, coefficient of variation {:.3})",
            report.max_over_mean, report.coefficient_of_variation
        ),
        Verdict::Skewed(violations) => format!(
            "SKEWED: {}",
            violations.iter().map(violation).collect::<Vec<_>>().join(", ")
        ),
        Verdict::TooFewKeys { keys, needed } => format!("too few to judge ({keys} of {needed} needed)"),
        other => format!("{other:?}"),
    };
    println!(
        "\ndistribution: {}",
        if check.is_balanced() { "balanced" } else { "skewed" }
    );
    println!("  slots:  {}", verdict(&check.slots));
    println!("  keys:   {}", verdict(&check.keys));
    println!("  memory: {}", verdict(&check.memory));
}

/// One crossed bound, for a person.
fn violation(v: &Violation) -> String {
    match v {
        Violation::CoefficientOfVariation { value, limit } => {
            format!("coefficient of variation {value:.3} (bound {limit:.2})")
        }
        Violation::MaxOverMean { shard, value, limit } => {
            format!("{shard} holds {value:.2}x the mean (bound {limit:.2}x)")
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_bad_ones_are_refused() {
        let weights = parse_weights(&["127.0.0.1:7000=2".into(), " 127.0.0.1:7001 = 0 ".into()]).unwrap();
        assert_eq!(weights.of("127.0.0.1:7000"), 2.0);
        assert_eq!(weights.of("127.0.0.1:7001"), 0.0);
        assert_eq!(weights.of("127.0.0.1:7002"), 1.0);
        for bad in ["127.0.0.1:7000", "127.0.0.1:7000=-1", "127.0.0.1:7000=x", "a=NaN"] {
            assert!(parse_weights(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(100 * 1024 * 1024), "100.0 MiB");
    }
}
