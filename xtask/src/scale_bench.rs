//! `cargo xtask scale-bench`: the time to move 1,000 slots holding 1 M keys of 100 B, with our
//! `rebalance::Rebalancer` and with `redis-cli --cluster rebalance` / `reshard --cluster-pipeline 100`,
//! on the same data, same machine, same run.
//!
//! Every trial starts a fresh 3-primary cluster whose first primary (A) serves exactly the slots to
//! move, loads the keys into those slots with one pipelined loader, and asks one mover to empty A:
//! ours and `redis-cli --cluster rebalance` with A's weight at 0 (its slots go to the two others),
//! `redis-cli --cluster reshard` all of them to one other primary. Only the move is timed. Afterwards
//! every trial checks that A serves no slot and holds no key, and that every key is on the others.
//! Movers take turns in rotated order, one fresh cluster each, and the medians of the runs are
//! compared.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cluster_client::ClusterClient;
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, Node};
use rebalance::{RebalanceConfig, Rebalancer, Weights};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chaos::spinner;
use crate::results::SCALE_BENCH;

/// Commands per write of the loader: big enough that the server reads whole buffers.
const LOAD_BATCH: usize = 5_000;

/// One way of moving the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Mover {
    /// `rebalance::Rebalancer::rebalance` with the source's weight at 0.
    Ours,
    /// `redis-cli --cluster rebalance --cluster-weight <source>=0` (its defaults: pipeline 10).
    RedisCliRebalance,
    /// `redis-cli --cluster reshard --cluster-slots N --cluster-pipeline 100` to one primary.
    RedisCliReshard,
}

impl Mover {
    fn label(self) -> &'static str {
        match self {
            Mover::Ours => "ours (Rebalancer::rebalance)",
            Mover::RedisCliRebalance => "redis-cli --cluster rebalance",
            Mover::RedisCliReshard => "redis-cli --cluster reshard --cluster-pipeline 100",
        }
    }
}

/// Options of `cargo xtask scale-bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScaleBenchArgs {
    /// Slots moved (all of the source primary's), 1 to 5,461.
    #[arg(long, default_value_t = 1_000)]
    slots: u16,
    /// Keys in the moved slots, spread evenly over them.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Runs: each mover gets a fresh cluster per run, in rotated order; the medians are compared.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The movers to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ours,redis-cli-rebalance,redis-cli-reshard"
    )]
    movers: Vec<Mover>,
    /// Replicas per primary (they receive every moved key too, as in production).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Where the figures go (a section of their own), relative to the workspace root.
    #[arg(long, default_value = "docs/RESULTS.md")]
    results: PathBuf,
    /// Print the figures only; leave the results file alone.
    #[arg(long)]
    no_write: bool,
}

/// One timed move.
#[derive(Debug, Clone, Copy)]
struct Trial {
    took: Duration,
    keys: u64,
}

impl Trial {
    fn keys_per_second(self) -> f64 {
        self.keys as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

pub(crate) fn scale_bench(args: &ScaleBenchArgs) -> Result<()> {
    if !(1..=5_461).contains(&args.slots) {
        bail!("--slots must be 1 to 5461 (the slots of one primary of three)");
    }
    if args.keys < usize::from(args.slots) || args.keys > 20_000_000 {
        bail!("--keys must be at least --slots (one key per slot) and at most 20,000,000");
    }
    if !(1..=1_000_000).contains(&args.value_bytes) {
        bail!("--value-bytes must be 1 to 1000000");
    }
    if args.runs == 0 || args.movers.is_empty() {
        bail!("give at least one run and one mover");
    }
    if args.movers.iter().any(|m| *m != Mover::Ours) && !crate::prerequisites::on_path("redis-cli") {
        bail!("redis-cli is not installed (it comes with redis-server: `apt-get install redis-tools`)");
    }
    crate::prerequisites::ensure_redis()?;
    let runtime = crate::cluster::runtime()?;
    let mut movers = args.movers.clone();
    movers.sort();
    movers.dedup();
    let mut trials: BTreeMap<Mover, Vec<Trial>> = BTreeMap::new();
    for run in 0..args.runs {
        for i in 0..movers.len() {
            let mover = movers[(run + i) % movers.len()];
            println!("run {} of {}: {}", run + 1, args.runs, mover.label());
            let trial = runtime.block_on(async {
                let _lock = local_cluster::test_lock::exclusive()
                    .await
                    .context("taking the exclusive test lock")?;
                trial(args, mover).await
            })?;
            println!(
                "  moved {} keys in {:.2} s: {:.0} keys/s",
                trial.keys,
                trial.took.as_secs_f64(),
                trial.keys_per_second()
            );
            trials.entry(mover).or_default().push(trial);
        }
    }
    let text = report(args, &trials);
    println!("\n{text}");
    if !args.no_write {
        let path = SCALE_BENCH.write(&args.results, &text)?;
        println!("Wrote the scale-bench section of {}.", path.display());
    }
    Ok(())
}

/// The markdown section: the command, the setup, a table of medians and the ratios.
fn report(args: &ScaleBenchArgs, trials: &BTreeMap<Mover, Vec<Trial>>) -> String {
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "## Moving slots (`scale-bench`)\n\n`{command}`, {} on a machine with {cpus} CPU(s), {}: {} slots holding {} keys of \
         {} B move off one primary of three ({} replica(s) each), a fresh cluster per trial, movers in rotated order, \
         {} run(s) each, `cluster-allow-replica-migration no`; only the move is timed, and every trial checks afterwards that the source serves no slot and \
         holds no key and that every key is on the other primaries.\n\n\
         | mover | median time | median keys/s | runs (keys/s) | ours ÷ this |\n|---|---|---|---|---|\n",
        crate::chaos::utc_today(),
        redis_cli_version(),
        args.slots,
        args.keys,
        args.value_bytes,
        args.replicas,
        args.runs
    );
    let medians: BTreeMap<Mover, (f64, f64)> = trials
        .iter()
        .map(|(mover, runs)| {
            let times = median(runs.iter().map(|t| t.took.as_secs_f64()).collect());
            let rates = median(runs.iter().map(|t| t.keys_per_second()).collect());
            (*mover, (times, rates))
        })
        .collect();
    let ours = medians.get(&Mover::Ours).map(|(_, rate)| *rate);
    for (mover, runs) in trials {
        let (time, rate) = medians[mover];
        let each: Vec<String> = runs
            .iter()
            .map(|t| format!("{:.0}", t.keys_per_second()))
            .collect();
        let ratio = match ours {
            Some(ours) if *mover != Mover::Ours => format!("{:.2}×", ours / rate),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {time:.2} s | {rate:.0} | {} | {ratio} |\n",
            mover.label(),
            each.join(", ")
        ));
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One fresh cluster, loaded, one timed move, checked.
async fn trial(args: &ScaleBenchArgs, mover: Mover) -> Result<Trial> {
    let spinner = spinner("starting a 3-primary cluster");
    let mut shape = LocalClusterConfig {
        masters: 3,
        replicas_per_master: args.replicas,
        ..LocalClusterConfig::default()
    };
    // An emptied primary stays a primary (by default Redis makes it a replica of the node that took its
    // last slot), for every mover alike: the comparison is about moving keys.
    shape.settings.set("cluster-allow-replica-migration", "no");
    let cluster = LocalCluster::start(shape)
        .await
        .context("starting the local cluster")?;
    let source = cluster.primary_for_slot(0).await?;
    let first_other = cluster.primary_for_slot(sharding::SLOT_COUNT / 2).await?;
    let second_other = cluster.primary_for_slot(sharding::SLOT_COUNT - 1).await?;
    // The source keeps slots 0..slots; the rest of its slots, still empty, go half to each other
    // primary, so that after the move the two others hold the same number.
    let excess = 5_461 - usize::from(args.slots);
    spinner.set_message(format!(
        "leaving {} slots on {} (moving {excess} empty ones away)",
        args.slots,
        source.addr()
    ));
    cluster
        .migrate_slots(excess.div_ceil(2), source, first_other)
        .await
        .context("moving empty slots away from the source")?;
    cluster
        .migrate_slots(excess / 2, source, second_other)
        .await
        .context("moving empty slots away from the source")?;
    cluster.wait_until_healthy(Duration::from_secs(30)).await?;
    spinner.set_message(format!(
        "loading {} keys of {} B into slots 0-{} on {}",
        args.keys,
        args.value_bytes,
        args.slots - 1,
        source.addr()
    ));
    let loaded = Instant::now();
    load(&source.addr(), args.slots, args.keys, args.value_bytes).await?;
    let keys = dbsize(source).await?;
    if keys != args.keys as u64 {
        bail!("the source holds {keys} keys after loading {}", args.keys);
    }
    spinner.finish_and_clear();
    println!("  loaded {keys} keys in {:.2} s", loaded.elapsed().as_secs_f64());

    let started = Instant::now();
    match mover {
        Mover::Ours => move_ours(&cluster, source).await?,
        Mover::RedisCliRebalance => {
            let id = source.node_id().await?;
            redis_cli(&[
                "--cluster",
                "rebalance",
                &source.addr(),
                "--cluster-weight",
                &format!("{id}=0"),
                "--cluster-yes",
            ])
            .await?
        }
        Mover::RedisCliReshard => {
            let (from, to) = (source.node_id().await?, first_other.node_id().await?);
            redis_cli(&[
                "--cluster",
                "reshard",
                &source.addr(),
                "--cluster-from",
                &from,
                "--cluster-to",
                &to,
                "--cluster-slots",
                &args.slots.to_string(),
                "--cluster-pipeline",
                "100",
                "--cluster-yes",
            ])
            .await?
        }
    }
    let took = started.elapsed();
    check_moved(&cluster, source, keys).await?;
    Ok(Trial { took, keys })
}

/// Ours: a client and the Rebalancer with its default settings, the source's weight at 0, progress on
/// a bar. The client's connection counts in the time, as redis-cli's start does in theirs.
async fn move_ours(cluster: &LocalCluster, source: &Node) -> Result<()> {
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(Duration::from_secs(2))
        .build()?;
    let client = ClusterClient::connect(config)
        .await
        .context("connecting to the cluster")?;
    let bar = crate::scale::move_bar();
    let progress = bar.clone();
    let rebalancer = Rebalancer::new(client.clone(), RebalanceConfig::default())
        .on_progress(move |p| crate::scale::show(&progress, p));
    let result = rebalancer
        .rebalance(&Weights::new().with(source.addr(), 0.0))
        .await;
    bar.finish_and_clear();
    client.close().await;
    let report = result.context("moving the slots with the Rebalancer")?;
    println!("  Rebalancer: {report}");
    Ok(())
}

/// Runs redis-cli with a spinner; its output is shown only when it fails.
async fn redis_cli(args: &[&str]) -> Result<()> {
    let spinner = spinner(&format!("redis-cli {}", args.join(" ")));
    let output = tokio::process::Command::new("redis-cli")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running redis-cli")?;
    spinner.finish_and_clear();
    let text = String::from_utf8_lossy(&output.stdout);
    // redis-cli exits 0 after some failures and prints `[ERR]` instead.
    if !output.status.success() || text.contains("[ERR]") {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "`redis-cli {}` failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// After a move: the source serves no slot and holds no key, and the other primaries hold every key.
async fn check_moved(cluster: &LocalCluster, source: &Node, keys: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topology = cluster.topology().await?;
        let source_slots: usize = topology
            .iter()
            .filter(|e| e.port == Some(source.port()))
            .flat_map(|e| &e.slots)
            .map(|r| r.len())
            .sum();
        let mut elsewhere = 0;
        for entry in topology
            .iter()
            .filter(|e| e.is_primary() && e.port != Some(source.port()))
        {
            if let Some(node) = entry.port.and_then(|p| cluster.node_by_port(p)) {
                elsewhere += dbsize(node).await?;
            }
        }
        let left = dbsize(source).await?;
        if source_slots == 0 && left == 0 && elsewhere == keys {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "after the move the source serves {source_slots} slots and holds {left} keys, the others {elsewhere} \
                 of {keys}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dbsize(node: &Node) -> Result<u64> {
    node.command::<u64, _, _>(["DBSIZE"])
        .await
        .with_context(|| format!("DBSIZE on {}", node.addr()))
}

/// A hash tag per slot of `0..slots`: a short string whose key slot is that slot, so that keys
/// `{tag}:i` land in it.
fn slot_tags(slots: u16) -> Vec<String> {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(slots)];
    let mut missing = usize::from(slots);
    let mut n = 0u64;
    while missing > 0 {
        let tag = n.to_string();
        let slot = usize::from(sharding::key_slot(tag.as_bytes()));
        if slot < tags.len() && tags[slot].is_none() {
            tags[slot] = Some(tag);
            missing -= 1;
        }
        n += 1;
    }
    tags.into_iter().flatten().collect()
}

/// Loads `keys` keys of `value_bytes` bytes, spread evenly over slots `0..slots`, into `addr` with
/// pipelined `SET`s on one connection: every command written in large buffers while a reader task
/// checks that each reply is `+OK`.
async fn load(addr: &str, slots: u16, keys: usize, value_bytes: usize) -> Result<()> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let expected = keys * 5;
    let replies = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = 0usize;
        while seen < expected {
            let n = reader
                .read(&mut buf)
                .await
                .context("reading the loader's replies")?;
            if n == 0 {
                bail!(
                    "the node closed the loader's connection after {} replies",
                    seen / 5
                );
            }
            for &byte in &buf[..n] {
                if byte != b"+OK\r\n"[seen % 5] {
                    let mut rest = String::from_utf8_lossy(&buf[..n]).into_owned();
                    rest.truncate(200);
                    bail!("reply {} to the loader is not +OK: {rest}", seen / 5);
                }
                seen += 1;
            }
        }
        Ok(())
    });
    let tags = slot_tags(slots);
    let value = vec![b'v'; value_bytes];
    let mut out = Vec::with_capacity(LOAD_BATCH * (value_bytes + 64));
    for i in 0..keys {
        let key = format!("{{{}}}:{i}", tags[i % tags.len()]);
        out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
        out.extend_from_slice(format!("${}\r\n", key.len()).as_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(format!("\r\n${value_bytes}\r\n").as_bytes());
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
        if (i + 1) % LOAD_BATCH == 0 || i + 1 == keys {
            writer
                .write_all(&out)
                .await
                .context("writing the loader's commands")?;
            out.clear();
        }
    }
    writer.flush().await?;
    replies.await.context("the loader's reply task")?
}

/// `redis-cli 7.0.15`, or a note that it could not be run.
fn redis_cli_version() -> String {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "redis-cli (version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_gets_a_tag_of_its_own() {
        let tags = slot_tags(1_000);
        assert_eq!(tags.len(), 1_000);
        for (slot, tag) in tags.iter().enumerate() {
            assert_eq!(
                usize::from(sharding::key_slot(format!("{{{tag}}}:7").as_bytes())),
                slot
            );
        }
    }

    #[test]
    fn medians_of_odd_and_even_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
