//! `chaos scale-out`: grow and shrink the cluster under load with `rebalance::Rebalancer`, through the
//! cache and through fred's and redis-rs's cluster clients side by side.
//!
//! A 3 + 3 cluster with two spare nodes; the three loads set a key and read it back at once, checking that
//! the value read is the one just written (each key has one writer), and 20,000 more keys written
//! before any move are read back after. The drill adds a primary (a spare) with a replica (the other
//! spare), which moves a quarter of the slots onto it, then removes one of the original primaries,
//! which drains its slots to the others. The Rebalancer runs on a client and a thread of its own, as an
//! operator's tool in another process would: the loads' clients learn of every change through
//! redirects and their own refreshes, and the Rebalancer's work never waits in the loads' task queue.
//!
//! Then the same in client-sharded mode (ketama over standalone nodes, `rebalance::sharded`): a node
//! added, another removed, under the same checked load through the cache alone (fred and redis-rs have
//! no such mode);
//! the contrast is what a plain ring switch would miss.
//!
//! Targets for ours: no failed call, no miss and no wrong value, every key intact at the end, and a p99
//! during each move at most twice the steady p99 (the calls of the spells without a move: before,
//! between and after). fred's and redis-rs's figures are the baselines.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::{Cache, CacheConfig, ClusterClient, ClusterConfig};
use cluster_config::Mode;
use local_cluster::LocalClusterConfig;
use rebalance::sharded::{ShardedMoveConfig, ShardedRebalancer};
use rebalance::{DistributionCheck, MoveReport, RebalanceConfig, Rebalancer, Weights};

use super::drills::{error_notes, info_each, no_failed_calls, target_each};
use super::report::{DrillReport, Figure};
use super::stage::{Stage, spinner};
use super::traffic::{COMMAND_TIMEOUT, KEYS, Keys, MISS, Mix, Side, Tally, Traffic, WRONG_VALUE};

/// Load before the first move (its calls count in the steady p99, with those between and after).
const STEADY: Duration = Duration::from_secs(4);
/// Load between the two moves and after the second.
const BETWEEN: Duration = Duration::from_secs(2);
/// Keys written once before the moves and compared at the end.
const INTACT_KEYS: usize = 20_000;
/// The bound on a move's p99 as a multiple of the steady p99.
const P99_FACTOR: f64 = 2.0;

/// The phases without a move, whose calls make the steady p99: one spell of noise on a shared machine
/// weighs less in three spells than in one.
const STEADY_PHASES: [usize; 3] = [PHASE_STEADY, PHASE_BETWEEN, PHASE_AFTER];

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

    load.set_phase(PHASE_ADD);
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

    load.set_phase(PHASE_BETWEEN);
    load.hold("load between the moves", BETWEEN).await;

    load.set_phase(PHASE_REMOVE);
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

    load.set_phase(PHASE_AFTER);
    load.hold("load after the moves", BETWEEN).await;
    let t = load.stop().await;

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
    let missing = stage.missing_keys().await;
    let redirects: u64 = stage.clients.raw().node_stats().iter().map(|s| s.redirects).sum();
    checking.finish_and_clear();
    stage.close().await;

    let mut report = DrillReport::new("scale-out");
    let f = &mut report.figures;
    f.push(Figure::info(
        "add a primary + replica: slots / keys moved, took",
        moved(&added),
        "(same cluster)",
        "(same cluster)",
    ));
    f.push(Figure::info(
        "remove a primary: slots / keys moved, took",
        moved(&drained),
        "(same cluster)",
        "(same cluster)",
    ));
    f.push(no_failed_calls(&t));
    for (name, prefix) in [
        ("misses (absent right after a set)", MISS),
        ("wrong values (not the one just set)", WRONG_VALUE),
    ] {
        let ours = t.ours.errors_starting_with(prefix);
        f.push(target_each(
            name,
            &t,
            |tally| tally.errors_starting_with(prefix).to_string(),
            "0",
            ours == 0,
        ));
    }
    f.push(Figure::target(
        "keys written before the moves, intact at the end",
        format!("{intact_ok} of {INTACT_KEYS}"),
        "-",
        "-",
        "all",
        intact_ok == INTACT_KEYS,
    ));
    f.push(Figure::target(
        "load keys missing at the end",
        missing.ours,
        missing.fred,
        missing.redis_rs,
        "0",
        missing.ours == 0,
    ));
    for (name, moving) in [("p99 adding", PHASE_ADD), ("p99 removing", PHASE_REMOVE)] {
        let ratio = |tally: &Tally| {
            let (steady, during) = (p99(tally, &STEADY_PHASES), p99(tally, &[moving]));
            (steady, during, during as f64 / steady.max(1) as f64)
        };
        f.push(target_each(
            &format!("{name} / steady p99"),
            &t,
            |tally| {
                let (steady, during, ratio) = ratio(tally);
                format!("{} / {} = {ratio:.2}×", ms(during), ms(steady))
            },
            "≤ 2×",
            ratio(&t.ours).2 <= P99_FACTOR,
        ));
    }
    f.push(Figure::info("redirects followed", redirects, "-", "-"));
    f.push(info_each("calls", &t, |tally| {
        format!("{} ok, {} failed", tally.ok(), tally.failed())
    }));
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
        "(same cluster)",
    ));
    error_notes(&mut report, &t);
    report.notes.push(format!(
        "added {new_primary} (replica {new_replica}), removed {removed}; the Rebalancer ran on a client and a thread \
         of its own, with its default settings"
    ));
    println!("client-sharded mode: adding and removing a node");
    if let Err(e) = sharded(rate, &mut report).await {
        report.figures.push(Figure::target(
            "sharded half completed",
            format!("no: {e:#}"),
            "-",
            "-",
            "completes",
            false,
        ));
    }
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
    result
        .await
        .context("the Rebalancer's thread ended without a result")?
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

/// The p99 of the calls that ended in `phases`, in microseconds.
fn p99(tally: &Tally, phases: &[usize]) -> u64 {
    tally.phase_quantile_us(phases, 0.99).0
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
        .map(|i| {
            (
                format!("scale:intact:{i}"),
                format!("intact:{i}:{}", "x".repeat(64)),
                None,
            )
        })
        .collect()
}

/// The sharded half of the drill: three standalone nodes sharded by a ketama ring through the cache
/// (fred and redis-rs have no client-sharded mode: ours only), checked reads at the same rate; a fourth node is
/// added with `rebalance::sharded`, then one of the first three removed. The contrast is what a plain
/// ring switch would surface: the keys written before, read through a client that has the four-node
/// ring but no move.
pub(super) async fn sharded(rate: u32, report: &mut DrillReport) -> Result<()> {
    let servers = local_cluster::LocalStandalone::start(4)
        .await
        .context("starting 4 standalone nodes")?;
    let addrs = servers.addrs();
    let (ring, added) = (&addrs[..3], addrs[3].clone());
    let config = ClusterConfig::builder()
        .nodes(ring)
        .mode(Mode::Sharded)
        .command_timeout(COMMAND_TIMEOUT)
        .build()?;
    let cache = Cache::with_config(config, CacheConfig::default())
        .await
        .context("connecting the cache to the sharded nodes")?;
    let client = cache.client().clone();
    let intact = intact_entries();
    for chunk in intact.chunks(1_000) {
        for result in client.set_many(chunk).await {
            result.context("writing the keys checked at the end")?;
        }
    }
    // What a plain switch to the four-node ring would miss: the keys it now places on the new node.
    let plain = ClusterClient::connect(
        ClusterConfig::builder()
            .nodes(&addrs[..])
            .mode(Mode::Sharded)
            .command_timeout(COMMAND_TIMEOUT)
            .build()?,
    )
    .await
    .context("connecting a client with the four-node ring")?;
    let names: Vec<&str> = intact.iter().map(|(k, _, _)| k.as_str()).collect();
    let plain_misses = plain
        .get_many(&names)
        .await
        .iter()
        .filter(|r| !matches!(r, Ok(Some(_))))
        .count();
    plain.close().await;

    let topology = client.topology();
    let keys = Keys::new("sharded", KEYS, &topology)?;
    let started = Instant::now();
    let tally = Tally::new(started, topology.shards().len());
    let traffic = Traffic::start(
        Side::Ours(cache.clone()),
        keys.clone(),
        Mix::SetGetChecked,
        rate,
        tally.clone(),
    );
    tokio::time::sleep(STEADY).await;

    let bar = sharded_bar();
    let progress = bar.clone();
    let rebalancer = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .on_progress(move |p| progress.set_message(format!("{:?}: {} keys moved", p.phase, p.keys_moved)));
    tally.set_phase(PHASE_ADD);
    bar.set_prefix(format!("adding {added}"));
    let grown = rebalancer.add_node(&added, 1).await;
    tally.set_phase(PHASE_BETWEEN);
    tokio::time::sleep(BETWEEN).await;
    let removed = ring[0].clone();
    tally.set_phase(PHASE_REMOVE);
    bar.set_prefix(format!("removing {removed}"));
    let shrunk = match &grown {
        Ok(_) => Some(rebalancer.remove_node(&removed).await),
        Err(_) => None,
    };
    bar.finish_and_clear();
    tally.set_phase(PHASE_AFTER);
    tokio::time::sleep(BETWEEN).await;
    let tally = traffic.stop().await;
    let grown = grown.context("adding a sharded node")?;
    let shrunk = shrunk
        .context("the node was not added")?
        .context("removing a sharded node")?;
    println!("  sharded add: {grown}\n  sharded remove: {shrunk}");

    let read = client.get_many(&names).await;
    let intact_ok = read
        .iter()
        .zip(&intact)
        .filter(|(got, (_, want, _))| matches!(got, Ok(Some(v)) if v.as_ref() == want.as_bytes()))
        .count();
    client.close().await;

    let na = "n/a (no sharded mode)";
    let f = &mut report.figures;
    f.push(Figure::info(
        "sharded: add a node / remove a node, keys moved, took",
        format!(
            "{} in {:.1} s / {} in {:.1} s",
            grown.keys_moved,
            grown.elapsed.as_secs_f64(),
            shrunk.keys_moved,
            shrunk.elapsed.as_secs_f64()
        ),
        na,
        na,
    ));
    f.push(Figure::target(
        "sharded: failed calls",
        tally.failed(),
        na,
        na,
        "0",
        tally.failed() == 0,
    ));
    for (name, prefix) in [
        ("sharded: misses (absent right after a set)", MISS),
        ("sharded: wrong values (not the one just set)", WRONG_VALUE),
    ] {
        let count = tally.errors_starting_with(prefix);
        f.push(Figure::target(name, count, na, na, "0", count == 0));
    }
    f.push(Figure::target(
        "sharded: keys written before, intact at the end (a plain ring switch: found)",
        format!("{intact_ok} of {INTACT_KEYS}"),
        format!("plain switch: {} of {INTACT_KEYS}", INTACT_KEYS - plain_misses),
        na,
        "all",
        intact_ok == INTACT_KEYS,
    ));
    for (name, moving) in [
        ("sharded: p99 adding", PHASE_ADD),
        ("sharded: p99 removing", PHASE_REMOVE),
    ] {
        let (steady, during) = (p99(&tally, &STEADY_PHASES), p99(&tally, &[moving]));
        let ratio = during as f64 / steady.max(1) as f64;
        f.push(Figure::target(
            &format!("{name} / steady p99"),
            format!("{} / {} = {ratio:.2}×", ms(during), ms(steady)),
            na,
            na,
            "≤ 2×",
            ratio <= P99_FACTOR,
        ));
    }
    let top = tally.top_errors(3);
    if !top.is_empty() {
        report.notes.push(format!("sharded errors: {}", top.join("; ")));
    }
    report.notes.push(format!(
        "sharded: ketama over {} standalone nodes; added {added}, removed {removed}; a plain switch to the 4-node \
         ring would have missed {plain_misses} of the {INTACT_KEYS} keys",
        ring.len()
    ));
    Ok(())
}

fn sharded_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            .expect("constant template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
