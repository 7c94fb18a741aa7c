//! `cargo xtask chaos <drill>`: failover drills under load.
//!
//! Each drill starts its own local 3 + 3 cluster and runs three loads side by side at the same rate,
//! each on keys of its own: one through the cache (`cache_facade::Cache`, cluster-client underneath),
//! one through fred's own cluster client built from the same `ClusterConfig`, one through redis-rs's
//! async cluster client built as its users build it with the same command timeout
//! (`RedisRs::with_timeouts` in `redis_rs_baseline.rs`). It injects one fault through local-cluster,
//! keeps the loads going past the recovery, and prints its figures for the three clients. Targets apply
//! to ours only; fred's and redis-rs's figures are baselines measured in the same run. The command exits
//! non-zero when a target is missed. `chaos all` runs every drill and writes the table to
//! `docs/RESULTS.md`.
//!
//! `chaos safety` is of another kind: a history checker. Many clients, every fault kind in a seeded
//! schedule, every call recorded and checked per key for lost acknowledged writes, regressions, deletes
//! undone, deadlines, memory and the process clock (see `chaos/safety.rs`). It writes a section of its
//! own in `docs/RESULTS.md`, which `chaos all` keeps. `all` does not run it: it takes a minute or more
//! and judges correctness, not the drills' figures.
//!
//! Drills hold `local_cluster::test_lock::exclusive()`, so they never overlap with fault tests that
//! run on this machine at the same time.

mod checker;
mod drills;
mod history;
mod near;
mod report;
mod safety;
mod scale_out;
mod schedule;
mod stage;
mod steady;
mod traffic;
mod write_loss;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use self::report::{DrillReport, Figure, markdown, merge_runs, utc_date};
pub(crate) use self::stage::spinner;

/// Today's date and time, `2026-12-07 11:40 UTC`, as every results section writes it.
pub(crate) fn utc_today() -> String {
    utc_date(SystemTime::now())
}

/// Minutes of the steady drill without --minutes.
const STEADY_MINUTES: u64 = 10;

/// A drill, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Drill {
    /// kill -9 a primary under load (--runs times): promotion time, failed calls on healthy and dead
    /// shards, longest call, acknowledged writes lost with and without WAIT, journal repair.
    KillMaster,
    /// SIGSTOP a primary for 6 s (past the node timeout): no call beyond its timeout.
    PauseMasterLong,
    /// SIGSTOP a primary for 1 s (below the node timeout): no call beyond its timeout, no failover.
    PauseMasterShort,
    /// CLUSTER FAILOVER on a replica under load.
    ManualFailover,
    /// Move 100 slots between primaries under load.
    Reshard,
    /// kill -9 a primary while the clients are idle, then start traffic.
    FailoverWhileIdle,
    /// kill -9 every node and restart them all under load.
    WholeClusterRestart,
    /// CLIENT PAUSE every node for 5 s: calls fail at their timeout, memory stays bounded.
    ClientPause,
    /// kill -9 the replica that serves reads: reads fall back to the primary within 1 s.
    KillReadReplica,
    /// Load without faults for --minutes: no error, no epoch change, equal primary/replica digests.
    Steady,
    /// History checker: --clients clients through the cache and versioned writes under a seeded fault
    /// schedule (--seed) for 60 s (or --minutes); every call checked per key for lost WAIT-acked
    /// writes, regressions, deletes undone, deadlines, memory and clock adoption; fred as contrast.
    /// Writes its own section of docs/RESULTS.md; exits non-zero on any anomaly of ours. Not in `all`.
    Safety,
    /// Add a primary with a replica (spare nodes) and remove another primary under load, with the
    /// Rebalancer: no error, miss or wrong value surfaced, every key intact, p99 during each move at most
    /// 2× the steady p99. Writes its own section of docs/RESULTS.md. Not in `all`.
    ScaleOut,
    /// The near cache's history checker under faults, side by side with redis-rs's client-side cache
    /// (see `chaos/near.rs`); writes its own section of docs/RESULTS.md.
    NearCache,
    /// Every drill, then the table in docs/RESULTS.md.
    All,
}

impl Drill {
    /// Every drill `all` runs, in order.
    const EVERY: [Drill; 10] = [
        Drill::KillMaster,
        Drill::PauseMasterLong,
        Drill::PauseMasterShort,
        Drill::ManualFailover,
        Drill::Reshard,
        Drill::FailoverWhileIdle,
        Drill::WholeClusterRestart,
        Drill::ClientPause,
        Drill::KillReadReplica,
        Drill::Steady,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| format!("{self:?}"))
    }
}

/// Options of `cargo xtask chaos`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChaosArgs {
    /// The drill to run, or `all`.
    #[arg(value_enum)]
    pub(crate) drill: Drill,
    /// Runs of kill-master.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Minutes of load in the steady drill (default 10), and of the safety run (default: 60 s).
    #[arg(long)]
    pub(crate) minutes: Option<u64>,
    /// Minutes of the steady drill when running `all` (default: --minutes).
    #[arg(long)]
    pub(crate) steady_minutes: Option<u64>,
    /// Calls per second of each load (ours, fred's and redis-rs's each get this rate).
    #[arg(long, default_value_t = 2_000)]
    pub(crate) rate: u32,
    /// Seed of the safety run's fault schedule, key choice and operation mix (default: from the time;
    /// printed at the start).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Load clients of the safety run (half through the cache, half through versioned writes), plus
    /// three through fred's cluster client.
    #[arg(long, default_value_t = 12)]
    pub(crate) clients: u16,
    /// Where `all` writes its table and `safety` its section, relative to the workspace root.
    #[arg(long, default_value = "docs/RESULTS.md")]
    pub(crate) results: PathBuf,
}

pub(crate) fn chaos(args: &ChaosArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.minutes == Some(0) || args.steady_minutes == Some(0) {
        bail!("the steady drill and the safety run need at least 1 minute (--minutes 1 for a quick run)");
    }
    if !(2..=1_000).contains(&args.clients) {
        bail!("--clients must be 2 to 1000 (half go through the cache, half through versioned writes)");
    }
    if !(100..=100_000).contains(&args.rate) {
        bail!("--rate must be 100 to 100000 calls per second");
    }
    crate::prerequisites::ensure_redis()?;
    let started = SystemTime::now();
    let runtime = crate::cluster::runtime()?;
    let minutes = args.minutes.unwrap_or(STEADY_MINUTES);
    let reports: Vec<DrillReport> = match args.drill {
        Drill::Safety => {
            let seed = args.seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs() % 1_000_000)
            });
            let safety_args = safety::SafetyArgs {
                seed,
                duration: args
                    .minutes
                    .map_or(Duration::from_secs(60), |m| Duration::from_secs(m * 60)),
                clients: args.clients,
                results: args.results.clone(),
            };
            let report = runtime
                .block_on(safety::safety(&safety_args))
                .unwrap_or_else(|e| DrillReport::aborted("safety", &e));
            print!("{}", report.render());
            let missed = report.missed();
            if missed > 0 {
                bail!("chaos safety: {missed} check(s) failed (seed {seed}); see the anomalies above");
            }
            println!("\nNo anomaly of ours.");
            return Ok(());
        }
        Drill::NearCache => {
            let (verdicts, notes) = runtime.block_on(near::near_cache(args.rate))?;
            let (table, pass) = near::table(&verdicts);
            println!("\n{table}");
            for note in &notes {
                println!("- {note}");
            }
            let command = format!(
                "cargo xtask {}",
                std::env::args().skip(1).collect::<Vec<_>>().join(" ")
            );
            let body = format!(
                "## Near cache under faults (`chaos near-cache`)\n\nProduced by `{command}` on {}, {}. A 3 + 3 \
                 cluster; {} keys written by cluster-client (one writer per key, values counting up, each write \
                 acknowledged only after `WAIT 1`); three kinds of readers read the same keys side by side: the \
                 near cache (ours, default settings), redis-rs's client-side cache (`cache-aio`, RESP3, \
                 `CacheConfig::new()`, 1 s timeouts) and plain cluster-client GETs as the control. Faults in \
                 turn: `CLIENT KILL` of every tracking connection, kill -9 of a primary, a manual failover, a \
                 migration of 1,000 slots, SIGSTOP of a primary past the node timeout. A read is stale when it \
                 returns a value older than one acknowledged before it started; its staleness is the time since \
                 that acknowledgement. Targets (ours): no stale read past {} ms, staleness p99 ≤ 5 ms.\n\n{table}\n{}\n",
                utc_today(),
                machine(),
                near::KEYS,
                near::BOUND.as_millis(),
                notes
                    .iter()
                    .map(|n| format!("- {n}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let path = crate::results::NEAR_CACHE.write(&args.results, &body)?;
            println!("\nWrote the near-cache section of {}.", path.display());
            if !pass {
                bail!("chaos near-cache: the near cache missed a target; see the table above");
            }
            println!("\nEvery target reached.");
            return Ok(());
        }
        Drill::All => {
            let steady_minutes = args.steady_minutes.unwrap_or(minutes);
            let mut reports = Vec::new();
            for (i, drill) in Drill::EVERY.into_iter().enumerate() {
                println!("\n[{}/{}] chaos {}", i + 1, Drill::EVERY.len(), drill.name());
                let report = runtime.block_on(run(drill, args, steady_minutes));
                print!("{}", report.render());
                reports.push(report);
            }
            write_results(args, &reports, started)?;
            reports
        }
        drill => {
            let report = runtime.block_on(run(drill, args, minutes));
            print!("{}", report.render());
            if drill == Drill::ScaleOut {
                let path =
                    crate::results::SCALE_OUT.write(&args.results, &scale_out_section(&report, started))?;
                println!("\nWrote the scale-out section of {}.", path.display());
            }
            vec![report]
        }
    };
    let missed: usize = reports.iter().map(DrillReport::missed).sum();
    if missed > 0 {
        bail!("{missed} target(s) missed; see the table(s) above");
    }
    println!("\nEvery target reached.");
    Ok(())
}

/// Runs one drill, each run holding the exclusive test lock; a drill that fails to finish becomes a
/// report with one missed target saying why.
async fn run(drill: Drill, args: &ChaosArgs, steady_minutes: u64) -> DrillReport {
    let name = drill.name();
    if drill == Drill::KillMaster {
        return kill_master_runs(args.runs, args.rate).await;
    }
    let result = async {
        let _lock = local_cluster::test_lock::exclusive()
            .await
            .context("taking the exclusive test lock")?;
        match drill {
            Drill::PauseMasterLong => drills::pause_master(args.rate, drills::PauseLength::Long).await,
            Drill::PauseMasterShort => drills::pause_master(args.rate, drills::PauseLength::Short).await,
            Drill::ManualFailover => drills::manual_failover(args.rate).await,
            Drill::Reshard => drills::reshard(args.rate).await,
            Drill::FailoverWhileIdle => drills::failover_while_idle(args.rate).await,
            Drill::WholeClusterRestart => drills::whole_cluster_restart(args.rate).await,
            Drill::ClientPause => drills::client_pause(args.rate).await,
            Drill::KillReadReplica => drills::kill_read_replica(args.rate).await,
            Drill::Steady => steady::steady(args.rate, steady_minutes).await,
            Drill::ScaleOut => scale_out::scale_out(args.rate).await,
            Drill::KillMaster | Drill::Safety | Drill::NearCache | Drill::All => {
                bail!("{name} is not a single drill")
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| DrillReport::aborted(&name, &e))
}

/// kill-master `runs` times, each on a fresh cluster; figures of all runs side by side.
async fn kill_master_runs(runs: usize, rate: u32) -> DrillReport {
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let mut failed = Vec::new();
    for run in 1..=runs {
        if runs > 1 {
            println!("kill-master run {run} of {runs}");
        }
        let result = async {
            let _lock = local_cluster::test_lock::exclusive()
                .await
                .context("taking the exclusive test lock")?;
            drills::kill_master(rate).await
        }
        .await;
        match result {
            Ok(mut report) => {
                if runs > 1 {
                    report.drill = format!("kill-master run {run}");
                    print!("{}", report.render());
                }
                figures.push(report.figures);
                notes.extend(report.notes.into_iter().map(|n| format!("run {run}: {n}")));
            }
            Err(e) => failed.push(format!("run {run}: {e:#}")),
        }
    }
    let mut report = DrillReport::new(&format!("kill-master ×{runs}"));
    report.figures = merge_runs(&figures);
    if !failed.is_empty() {
        report.figures.push(Figure::target(
            "runs completed",
            format!("{} of {runs}", runs - failed.len()),
            "-",
            "-",
            "all",
            false,
        ));
        notes.extend(failed);
    }
    report.notes = notes;
    report
}

/// `chaos scale-out`'s section of `docs/RESULTS.md`: the command, the date, the machine, the table.
fn scale_out_section(report: &DrillReport, started: SystemTime) -> String {
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let mut out = format!(
        "## Scale out and in under load (`chaos scale-out`)\n\nProduced by `{command}` on {}, {}. A 3 + 3 cluster \
         with two spare nodes; three loads (ours through `cache_facade::Cache`, fred through its cluster client, \
         redis-rs through its async cluster client built as in the drills above, same rate) set a key and read it \
         back, checking the value; `rebalance::Rebalancer` (on a client and thread of \
         its own) adds a primary with a replica, then removes one of the original primaries. Then client-sharded \
         mode: the cache over 3 standalone nodes (ketama), `rebalance::sharded` adds a fourth and removes one (ours \
         only; the contrast is what a plain ring switch misses). The steady p99 is that of the spells without a \
         move (before, between, after). Targets apply to ours; fred's and redis-rs's figures are the baselines of \
         the same run.\n\n| figure | ours | fred | redis-rs | target | pass |\n|---|---|---|---|---|---|\n",
        utc_date(started),
        machine()
    );
    for f in &report.figures {
        let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&f.name),
            cell(&f.ours),
            cell(&f.fred),
            cell(&f.redis_rs),
            cell(&f.target),
            match f.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "",
            }
        ));
    }
    for note in &report.notes {
        out.push_str(&format!("\n- {}", note.replace('\n', " ")));
    }
    out.push('\n');
    out
}

/// `on a machine with 2 CPU(s), redis-server 7.0.15`.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    format!("on a machine with {cpus} CPU(s), redis-server {redis}")
}

/// Writes `docs/RESULTS.md` (or `--results`) with the command, the date and the machine.
fn write_results(args: &ChaosArgs, reports: &[DrillReport], started: SystemTime) -> Result<()> {
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let mut text = markdown(reports, &command, &utc_date(started), &machine());
    let path = if args.results.is_absolute() {
        args.results.clone()
    } else {
        crate::workspace_root().join(&args.results)
    };
    // The safety section belongs to `chaos safety`: keep it.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(section) = safety::section_of(&old) {
        text = safety::replace_section(&text, &format!("{section}\n"));
    }
    // So do the sections of `scale-bench`, `chaos scale-out`, the Sentinel drill and the load baselines.
    text = crate::results::keep_sections(
        &text,
        &old,
        &[
            crate::results::SCALE_BENCH,
            crate::results::SCALE_OUT,
            crate::results::SENTINEL,
            crate::results::BASELINES,
            crate::results::TLS,
            crate::results::NEAR_CACHE,
            crate::results::NEAR_FIGURES,
        ],
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("\nWrote {}.", path.display());
    Ok(())
}
