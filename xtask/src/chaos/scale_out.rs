//! `chaos scale-out`: grow and shrink the cluster under load with `rebalance::Rebalancer`, through the
//! cache and through fred's cluster client side by side.
//!
//! A 3 + 3 cluster with two spare nodes; both loads set a key and read it back at once, checking that
//! the value read is the one just written (each key has one writer), and 20,000 more keys written
//! before any move are read back after. The drill adds a primary (a spare) with a replica (the other
//! spare), which moves a quarter of the slots onto it, then removes one of the original primaries,
//! which drains its slots to the others. The Rebalancer runs on a client and a thread of its own, as an
//! operator's tool in another process would: the loads' clients learn of every change through
//! redirects and their own refreshes, and the Rebalancer's work never waits in the loads' task queue.
//!
//! Targets for ours: no failed call, no miss and no wrong value, every key intact at the end, and a p99
//! during each move at most twice the steady p99 measured before it. fred's figures are the baseline.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::{CacheConfig, ClusterClient, ClusterConfig};
use local_cluster::LocalClusterConfig;
use rebalance::{DistributionCheck, MoveReport, RebalanceConfig, Rebalancer, Weights};

use super::drills::{error_notes, no_failed_calls};
use super::report::{DrillReport, Figure};
use super::stage::{Load, Stage, spinner};
use super::traffic::{MISS, Mix, Tally, WRONG_VALUE};

/// Load before the first move: the steady p99 comes from it.
const STEADY: Duration = Duration::from_secs(4);
/// Load between the two moves and after the second.
const BETWEEN: Duration = Duration::from_secs(2);
/// Keys written once before the moves and compared at the end.
const INTACT_KEYS: usize = 20_000;
/// The bound on a move's p99 as a multiple of the steady p99.
const P99_FACTOR: f64 = 2.0;

/// Phases of the loads' latencies.
const PHASE_STEADY: usize = 0;
const PHASE_ADD: usize = 1;
const PHASE_BETWEEN: usize = 2;
const PHASE_REMOVE: usize = 3;
const PHASE_AFTER: usize = 4;

pub(super) async fn scale_out(rate: u32) -> Result<DrillReport> {
    let shape = LocalClusterConfig {
        spares: 2,
        ..LocalClusterConfig::default()
    };
    let stage = Stage::start_on(rate, CacheConfig::default(), shape).await?;
    let [new_primary, new_replica] = stage.cluster.spares() else {
        bail!("the cluster started without its two spare nodes");
    };
    let (new_primary, new_replica) = (new_primary.addr(), new_replica.addr());
    // An original primary, not the one added: the slots it serves were moved to and from before.
    let removed = stage.cluster.primary_for_slot(0).await?.addr();
    let intact = intact_entries();
    let writing = spinner(&format!("writing {INTACT_KEYS} keys to check at the end"));
    for chunk in intact.chunks(1_000) {
        for result in stage.clients.raw().set_many(chunk).await {
            result.context("writing the keys checked at the end")?;
        }
    }
    writing.finish_and_clear();

    let seeds = stage.cluster.seeds();
    let load = stage.load(Mix::SetGetChecked);
    load.hold("steady load before the moves", STEADY).await;

    phase(&load, PHASE_ADD);
    load.mark(Instant::now());
    println!("adding primary {new_primary} with replica {new_replica}");
    let added = operate(
        &seeds,
        Step::Add {
            primary: new_primary.clone(),
            replica: new_replica.clone(),
        },
    )
    .await
    .context("adding a primary")?
    .0;
    println!("  {added}");

    phase(&load, PHASE_BETWEEN);
    load.hold("load between the moves", BETWEEN).await;

    phase(&load, PHASE_REMOVE);
    println!("removing primary {removed}");
    let (drained, distribution) = operate(
        &seeds,
        Step::Remove {
            primary: removed.clone(),
        },
    )
    .await
    .context("removing a primary")?;
    println!("  {drained}");

    phase(&load, PHASE_AFTER);
    load.hold("load after the moves", BETWEEN).await;
    let (ours, fred) = load.stop().await;

    let checking = spinner("reading every key back");
    let read = stage
        .clients
        .raw()
        .get_many(&intact.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>())
        .await;
    let intact_ok = read
        .iter()
        .zip(&intact)
        .filter(|(got, (_, want, _))| matches!(got, Ok(Some(v)) if v.as_ref() == want.as_bytes()))
        .count();
    let (ours_missing, fred_missing) = stage.missing_keys().await;
    let redirects: u64 = stage.clients.raw().node_stats().iter().map(|s| s.redirects).sum();
    checking.finish_and_clear();
    stage.close().await;

    let mut report = DrillReport::new("scale-out");
    let f = &mut report.figures;
    f.push(Figure::info(
        "add a primary + replica: slots / keys moved, took",
        moved(&added),
        "(same cluster)",
    ));
    f.push(Figure::info(
        "remove a primary: slots / keys moved, took",
        moved(&drained),
        "(same cluster)",
    ));
    f.push(no_failed_calls(&ours, &fred));
    for (name, prefix) in [
        ("misses (absent right after a set)", MISS),
        ("wrong values (not the one just set)", WRONG_VALUE),
    ] {
        let (o, r) = (
            ours.errors_starting_with(prefix),
            fred.errors_starting_with(prefix),
        );
        f.push(Figure::target(name, o, r, "0", o == 0));
    }
    f.push(Figure::target(
        "keys written before the moves, intact at the end",
        format!("{intact_ok} of {INTACT_KEYS}"),
        "-",
        "all",
        intact_ok == INTACT_KEYS,
    ));
    f.push(Figure::target(
        "load keys missing at the end",
        ours_missing,
        fred_missing,
        "0",
        ours_missing == 0,
    ));
    for (name, moving) in [("p99 adding", PHASE_ADD), ("p99 removing", PHASE_REMOVE)] {
        let (ours_steady, ours_move) = (p99(&ours, PHASE_STEADY), p99(&ours, moving));
        let (fred_steady, fred_move) = (p99(&fred, PHASE_STEADY), p99(&fred, moving));
        let ratio = |steady: u64, moving: u64| moving as f64 / steady.max(1) as f64;
        f.push(Figure::target(
            &format!("{name} / steady p99"),
            format!(
                "{} / {} = {:.2}×",
                ms(ours_move),
                ms(ours_steady),
                ratio(ours_steady, ours_move)
            ),
            format!(
                "{} / {} = {:.2}×",
                ms(fred_move),
                ms(fred_steady),
                ratio(fred_steady, fred_move)
            ),
            "≤ 2×",
            ratio(ours_steady, ours_move) <= P99_FACTOR,
        ));
    }
    f.push(Figure::info("redirects followed", redirects, "-"));
    f.push(Figure::info(
        "calls",
        format!("{} ok, {} failed", ours.ok(), ours.failed()),
        format!("{} ok, {} failed", fred.ok(), fred.failed()),
    ));
    f.push(Figure::info(
        "distribution after (slots, keys, memory)",
        match &distribution {
            Some(check) if check.is_balanced() => "balanced".to_string(),
            Some(check) => format!(
                "skewed: slots {:.2}×, keys {:.2}×, memory {:.2}× the mean at most",
                check.slots.max_over_mean, check.keys.max_over_mean, check.memory.max_over_mean
            ),
            None => "not read".to_string(),
        },
        "(same cluster)",
    ));
    error_notes(&mut report, &ours, &fred);
    report.notes.push(format!(
        "added {new_primary} (replica {new_replica}), removed {removed}; the Rebalancer ran on a client and a thread \
         of its own, with its default settings"
    ));
    Ok(report)
}

/// What the operator does on its thread.
enum Step {
    Add { primary: String, replica: String },
    Remove { primary: String },
}

/// Runs `step` with a Rebalancer (default settings, progress on a bar) on a client connected to
/// `seeds`, on a thread and runtime of its own; after a removal, also reads the distribution.
async fn operate(seeds: &[String], step: Step) -> Result<(MoveReport, Option<DistributionCheck>)> {
    let seeds = seeds.to_vec();
    let (reply, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rebalancer".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the Rebalancer's runtime")
                .and_then(|runtime| runtime.block_on(run_step(seeds, step)));
            let _ = reply.send(outcome);
        })
        .context("starting the Rebalancer's thread")?;
    result.await.context("the Rebalancer's thread ended without a result")?
}

async fn run_step(seeds: Vec<String>, step: Step) -> Result<(MoveReport, Option<DistributionCheck>)> {
    let config = ClusterConfig::builder()
        .nodes(seeds)
        .command_timeout(Duration::from_secs(2))
        .build()?;
    let client = ClusterClient::connect(config)
        .await
        .context("connecting the Rebalancer's own client")?;
    let bar = crate::scale::move_bar();
    let progress = bar.clone();
    let rebalancer = Rebalancer::new(client.clone(), RebalanceConfig::default())
        .on_progress(move |p| crate::scale::show(&progress, p));
    let moved = match &step {
        Step::Add { primary, replica } => rebalancer.add_primary(primary, &[replica.as_str()]).await,
        Step::Remove { primary } => rebalancer.remove_primary(primary).await,
    };
    bar.finish_and_clear();
    let distribution = match step {
        Step::Remove { .. } if moved.is_ok() => rebalancer.validate_distribution(&Weights::new()).await.ok(),
        _ => None,
    };
    client.close().await;
    Ok((moved?, distribution))
}

/// Starts `phase` in both loads' latencies.
fn phase(load: &Load, phase: usize) {
    load.tallies.0.set_phase(phase);
    load.tallies.1.set_phase(phase);
}

fn p99(tally: &Tally, phase: usize) -> u64 {
    tally.phase_quantile_us(phase, 0.99).0
}

/// `1.23 ms`.
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn moved(report: &MoveReport) -> String {
    format!(
        "{} / {}, {:.1} s",
        report.slot_count(),
        report.keys,
        report.took.as_secs_f64()
    )
}

/// The keys written before the moves and their values.
fn intact_entries() -> Vec<(String, String, Option<Duration>)> {
    (0..INTACT_KEYS)
        .map(|i| (format!("scale:intact:{i}"), format!("intact:{i}:{}", "x".repeat(64)), None))
        .collect()
}
