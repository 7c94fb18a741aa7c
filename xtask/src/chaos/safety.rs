//! `cargo xtask chaos safety`: a Jepsen-style history checker.
//!
//! Many clients contend for a small key space of a real 3 + 3 cluster, through `cache_facade::Cache`
//! (default settings: versioned writes) and through `consistency::Versioned` directly (with and without
//! `WAIT 1`), while a seeded fault schedule runs: kill -9 of a primary (restarted afterwards), SIGSTOP of
//! a primary past the node timeout and of a replica, a manual failover, a slot migration, a warm-up
//! with rollback over part of the keys, and a client whose clock is 10 minutes ahead. Every call is
//! recorded ([`super::history`]) and the whole history is checked per key at the end
//! ([`super::checker`] defines the checks and which writes count as acknowledged); memory is sampled
//! every second. A plain SET/GET/DEL/WAIT workload through fred's cluster client runs during the same
//! schedule on keys of its own, as contrast: its anomalies are reported but do not fail the command.
//!
//! Both the Versioned clients and the Cache read and write the same keys: the Versioned clients store
//! the cache's frame (`V`, codec 1 = JSON, then the JSON string), so `Cache::get` reads their values.

use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cache_facade::{
    Cache, CacheConfig, ClusterClient, ClusterConfig, WarmupConfig, WarmupEntry as Entry,
    WarmupSource as Source, Write,
};
use consistency::{
    Clock, ConsistencyConfig, Hlc, Version, Versioned, VersionedValue, WriteOptions, WriteOutcome, WriterId,
};
use fred::prelude::{Client, ClientLike, ClusterInterface, KeysInterface, ServerInterface};
use local_cluster::{LocalCluster, LocalClusterConfig};

use super::checker::{self, Anomaly, Check};
use super::history::{
    FILL_CLIENT, FOREIGN, FaultKind, FaultWindow, History, Kind, OP_BUDGET, Op, Outcome, Path, Recorder,
    SKEWED_CLIENT, Span, ValueId, WARMUP_CLIENT, table,
};
use super::report::{DrillReport, Figure, utc_date};
use super::schedule::{Plan, inject};
use super::stage::{rss_bytes, spinner};
use super::traffic::COMMAND_TIMEOUT;

/// Keys the clients contend for (and as many more for fred's contrast).
const KEYS: u16 = 128;
/// Keys the warm-up writes (and rolls back).
const WARM_KEYS: std::ops::Range<u16> = 0..32;
/// Entries per second of the warm-up: its 32 keys take about 1.5 s.
const WARM_UP_RATE: u32 = 20;
/// Keys the skewed client writes.
const SKEW_KEYS: std::ops::Range<u16> = 96..128;
/// How far ahead the skewed client's clock runs.
const SKEW: Duration = Duration::from_secs(600);
/// How long the skewed client writes.
const SKEW_WINDOW: Duration = Duration::from_secs(3);
/// `WAIT 1` timeout of the writes that ask for it.
const WAIT_TIMEOUT: Duration = Duration::from_millis(500);
/// A WAIT call's own deadline: cluster-client gives it the larger of the command timeout and the WAIT
/// timeout plus 500 ms; fred gives it the command timeout.
const WAIT_CALL: Duration = COMMAND_TIMEOUT;
/// Pause between one client's calls (a client starts its next call at once when one was slow).
const PACE: Duration = Duration::from_millis(4);
/// fred's contrast clients.
const FRED_CLIENTS: u16 = 3;
/// A fault starts only if at least this much of the run is left; the run ends after the last fault
/// recovered, so it may last a little longer than asked.
const LAST_FAULT_START: Duration = Duration::from_secs(5);
/// Load without faults before the first and after the last fault.
const QUIET: Duration = Duration::from_secs(2);
/// Memory the process may grow by, beyond the history itself (check 5): clients, connections, the
/// journal (bounded by its own budget), buffers. Past it, something grows with traffic unbounded.
const RSS_GROWTH_BOUND: u64 = 256 << 20;
/// Anomalies printed with their key's history, per check (the counts are always complete).
const PRINTED_PER_CHECK: usize = 5;
/// The markers around this command's section in `docs/RESULTS.md`.
pub(super) const SECTION_BEGIN: &str =
    "<!-- chaos safety: begin (rewritten by `cargo xtask chaos safety`) -->";
pub(super) const SECTION_END: &str = "<!-- chaos safety: end -->";

/// Options of `chaos safety`.
#[derive(Debug, Clone)]
pub(super) struct SafetyArgs {
    pub(super) seed: u64,
    pub(super) duration: Duration,
    pub(super) clients: u16,
    pub(super) results: PathBuf,
}

/// Run-wide state every client shares.
struct Run {
    started: Instant,
    recorder: Recorder,
    stop: AtomicBool,
    /// The cache's writer id (its versions' tie-breaker), for the bounds of its writes' versions.
    cache_writer: u64,
}

impl Run {
    fn us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

fn key_name(key: u16) -> String {
    if key < KEYS {
        format!("safety:{key}")
    } else {
        format!("safety:fred:{}", key - KEYS)
    }
}

/// The cache's frame around a JSON string, as `Cache::set::<str>` stores it (codec 1 = JSON).
fn frame(text: &str) -> Vec<u8> {
    let mut out = vec![b'V', 1];
    out.extend_from_slice(serde_json::to_string(text).unwrap_or_default().as_bytes());
    out
}

fn unframe(bytes: &[u8]) -> ValueId {
    match bytes {
        [b'V', 1, json @ ..] => serde_json::from_slice::<String>(json)
            .ok()
            .and_then(|t| ValueId::parse(&t))
            .unwrap_or(FOREIGN),
        _ => FOREIGN,
    }
}

/// Bounds of a version the process clock issued between `before` and now, for `writer`.
fn clock_span(before: Hlc, writer: u64) -> Span {
    let after = Clock::global().last().as_raw();
    let lo = (before.as_raw() + 1).min(after);
    Span {
        lo: (u128::from(lo) << 64) | u128::from(writer),
        hi: (u128::from(after) << 64) | u128::from(writer),
    }
}

fn ms(d: Duration) -> u32 {
    d.as_millis() as u32
}

/// How a load client reaches the cluster.
#[derive(Clone)]
enum Handle {
    Cache(Cache),
    Versioned(Versioned),
    Fred(Client),
}

/// One load client: calls back to back (paced), seeded choice of key and operation, until stopped or
/// the history budget is spent.
async fn client(id: u16, handle: Handle, seed: u64, run: Arc<Run>) -> Vec<Op> {
    let mut rng = fastrand::Rng::with_seed(seed ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut ops = Vec::new();
    let mut seq = 0u32;
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !run.stop.load(Ordering::Relaxed) && run.recorder.admit(1) {
        tick.tick().await;
        let slot = rng.u16(0..KEYS);
        let roll = rng.u8(0..100);
        let kind = match roll {
            0..55 => Kind::Get,
            55..93 => Kind::Set,
            _ => Kind::Delete,
        };
        let wait = !matches!(handle, Handle::Cache(_)) && rng.bool();
        if kind == Kind::Set {
            seq += 1;
        }
        let value = ValueId { client: id, seq };
        let op = match &handle {
            Handle::Cache(cache) => cache_op(cache, &run, id, slot, kind, value).await,
            Handle::Versioned(store) => versioned_op(store, &run, id, slot, kind, wait, value).await,
            Handle::Fred(fred) => fred_op(fred, &run, id, KEYS + slot, kind, wait, value).await,
        };
        ops.push(op);
    }
    ops
}

async fn cache_op(cache: &Cache, run: &Run, id: u16, key: u16, kind: Kind, value: ValueId) -> Op {
    let name = key_name(key);
    let before = Clock::global().last();
    let invoke_us = run.us();
    let (outcome, read, budget) = match kind {
        Kind::Get => match cache.get::<String>(&name).await {
            Ok(found) => (
                Outcome::Ok { acks: None },
                found.map(|t| ValueId::parse(&t).unwrap_or(FOREIGN)),
                COMMAND_TIMEOUT,
            ),
            Err(e) => (run.recorder.failure(&e.to_string()), None, COMMAND_TIMEOUT),
        },
        Kind::Set => match cache.set(&name, value.text().as_str(), None).await {
            Ok(Write::Written) => (Outcome::Ok { acks: None }, Some(value), COMMAND_TIMEOUT),
            Ok(_) => (Outcome::Stale, Some(value), COMMAND_TIMEOUT),
            Err(e) => (run.recorder.failure(&e.to_string()), Some(value), COMMAND_TIMEOUT),
        },
        // A cache delete reads the key, then writes the tombstone: two commands.
        Kind::Delete => match cache.delete(&name).await {
            Ok(_) => (Outcome::Ok { acks: None }, None, COMMAND_TIMEOUT * 2),
            Err(e) => (run.recorder.failure(&e.to_string()), None, COMMAND_TIMEOUT * 2),
        },
    };
    let complete_us = run.us();
    Op {
        client: id,
        path: Path::Cache,
        key,
        kind,
        wait: false,
        invoke_us,
        complete_us,
        budget_ms: ms(budget),
        value: read,
        version: (kind != Kind::Get).then(|| clock_span(before, run.cache_writer)),
        outcome,
    }
}

fn written(
    outcome: Result<WriteOutcome, consistency::Error>,
    run: &Run,
    exact: Option<Version>,
) -> (Outcome, Option<Span>) {
    match outcome {
        Ok(WriteOutcome::Written {
            version,
            replicas_acked,
        }) => (
            Outcome::Ok {
                acks: replicas_acked.map(|n| n.min(255) as u8),
            },
            Some(Span::exact(version)),
        ),
        Ok(WriteOutcome::Stale { .. }) => (Outcome::Stale, exact.map(Span::exact)),
        Err(e) => (run.recorder.failure(&e.to_string()), exact.map(Span::exact)),
    }
}

async fn versioned_op(
    store: &Versioned,
    run: &Run,
    id: u16,
    key: u16,
    kind: Kind,
    wait: bool,
    value: ValueId,
) -> Op {
    let name = key_name(key);
    let options = if wait {
        WriteOptions::wait(1, WAIT_TIMEOUT)
    } else {
        WriteOptions::default()
    };
    let budget = if wait && kind != Kind::Get {
        COMMAND_TIMEOUT + WAIT_CALL
    } else {
        COMMAND_TIMEOUT
    };
    let before = Clock::global().last();
    let invoke_us = run.us();
    let (outcome, read, version) = match kind {
        Kind::Get => match store.get(name.as_bytes()).await {
            Ok(Some(VersionedValue::Versioned { version, value })) => (
                Outcome::Ok { acks: None },
                Some(unframe(&value)),
                Some(Span::exact(version)),
            ),
            Ok(Some(_)) => (Outcome::Ok { acks: None }, Some(FOREIGN), None),
            Ok(None) => (Outcome::Ok { acks: None }, None, None),
            Err(e) => (run.recorder.failure(&e.to_string()), None, None),
        },
        Kind::Set => {
            let result = store
                .set(name.as_bytes(), &frame(&value.text()), None, options)
                .await;
            let (outcome, version) = written(result, run, None);
            (outcome, Some(value), version)
        }
        Kind::Delete => {
            let (outcome, version) = written(store.delete(name.as_bytes(), options).await, run, None);
            (outcome, None, version)
        }
    };
    let complete_us = run.us();
    // A write that did not store says nothing of its version: the process clock issued it meanwhile.
    let version = match (kind, version) {
        (Kind::Get, v) => v,
        (_, Some(v)) => Some(v),
        (_, None) => Some(clock_span(before, store.writer().0)),
    };
    Op {
        client: id,
        path: Path::Versioned,
        key,
        kind,
        wait: wait && kind != Kind::Get,
        invoke_us,
        complete_us,
        budget_ms: ms(budget),
        value: read,
        version,
        outcome,
    }
}

async fn fred_op(fred: &Client, run: &Run, id: u16, key: u16, kind: Kind, wait: bool, value: ValueId) -> Op {
    let name = key_name(key);
    let invoke_us = run.us();
    let wait = wait && kind != Kind::Get;
    let result: Result<(Option<ValueId>, Option<u8>), String> = async {
        match kind {
            Kind::Get => {
                let found: Option<String> = fred.get(&name).await.map_err(|e| e.to_string())?;
                return Ok((found.map(|t| ValueId::parse(&t).unwrap_or(FOREIGN)), None));
            }
            Kind::Set => fred
                .set::<(), _, _>(&name, value.text(), None, None, false)
                .await
                .map_err(|e| e.to_string())?,
            Kind::Delete => fred
                .del::<i64, _>(&name)
                .await
                .map(drop)
                .map_err(|e| e.to_string())?,
        }
        if !wait {
            return Ok((None, None));
        }
        // WAIT has no key: send it to the node that took the write, over the same connection.
        let slot = fred::util::redis_keyslot(name.as_bytes());
        let server = fred
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned())
            .ok_or_else(|| format!("fred knows no node for slot {slot}"))?;
        let acks: i64 = fred
            .with_cluster_node(server)
            .wait(1, WAIT_TIMEOUT.as_millis() as i64)
            .await
            .map_err(|e| e.to_string())?;
        Ok((None, Some(acks.clamp(0, 255) as u8)))
    }
    .await;
    let complete_us = run.us();
    let (outcome, read) = match result {
        Ok((read, acks)) => (Outcome::Ok { acks }, read),
        Err(e) => (run.recorder.failure(&e), None),
    };
    Op {
        client: id,
        path: Path::Fred,
        key,
        kind,
        wait,
        invoke_us,
        complete_us,
        budget_ms: ms(if wait {
            COMMAND_TIMEOUT + WAIT_CALL
        } else {
            COMMAND_TIMEOUT
        }),
        value: if kind == Kind::Set { Some(value) } else { read },
        // Plain writes have no version: their span is the call itself (see `Span`).
        version: (kind != Kind::Get).then_some(Span {
            lo: u128::from(invoke_us),
            hi: u128::from(complete_us),
        }),
        outcome,
    }
}

/// Writes every key once (through the cache, and plain through fred), recorded like any write.
async fn fill(cache: &Cache, fred: &Client, run: &Run) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for key in 0..KEYS {
        let value = ValueId {
            client: FILL_CLIENT,
            seq: u32::from(key),
        };
        let op = cache_op(cache, run, FILL_CLIENT, key, Kind::Set, value).await;
        if !op.outcome.acknowledged() {
            anyhow::bail!("filling {} failed: {op:?}", key_name(key));
        }
        ops.push(op);
        // Values are unique across every key: fred's fill takes the sequence numbers after ours.
        let value = ValueId {
            client: FILL_CLIENT,
            seq: u32::from(KEYS + key),
        };
        let op = fred_op(fred, run, FILL_CLIENT, KEYS + key, Kind::Set, false, value).await;
        if !op.outcome.acknowledged() {
            anyhow::bail!("filling {} failed: {op:?}", key_name(KEYS + key));
        }
        ops.push(op);
    }
    Ok(ops)
}

/// A warm-up of [`WARM_KEYS`] through the cache that rolls back at any bad entry (concurrent clients
/// overwrite some of its keys, which validation counts as bad). Each entry is recorded as a write of
/// unknown outcome: the report counts, it does not say which entry was written or rolled back.
async fn warm_up(cache: &Cache, run: &Run, round: u32) -> (Vec<Op>, String) {
    let values: Vec<(u16, ValueId)> = WARM_KEYS
        .map(|key| {
            (
                key,
                ValueId {
                    client: WARMUP_CLIENT,
                    seq: round * 1_000 + u32::from(key),
                },
            )
        })
        .collect();
    let mut entries: Vec<Entry> = values
        .iter()
        .map(|(key, value)| Entry::new(key_name(*key), frame(&value.text())))
        .collect();
    // One entry the server refuses (a DUMP payload that is not one), on a key no client reads: it is
    // a bad entry, so with a threshold of 0 every warm-up rolls back, and the rollback runs while the
    // clients keep writing the warm-up's keys. Their later writes must survive it.
    entries.push(Entry::from_dump(
        format!("safety:warmup-bad:{round}"),
        &b"not a DUMP payload"[..],
    ));
    let before = Clock::global().last();
    let invoke_us = run.us();
    let report = cache
        .warm_up_source(
            Source::entries(entries),
            // Slow enough that the clients overwrite some of its keys while it runs.
            WarmupConfig::default()
                .rollback_above(0.0)
                .max_entries_per_second(WARM_UP_RATE),
        )
        .await;
    let complete_us = run.us();
    let version = clock_span(before, run.cache_writer);
    let ops = values
        .iter()
        .map(|(key, value)| Op {
            client: WARMUP_CLIENT,
            path: Path::Warmup,
            key: *key,
            kind: Kind::Set,
            wait: false,
            invoke_us,
            complete_us,
            budget_ms: 0,
            value: Some(*value),
            version: Some(version),
            outcome: Outcome::Unknown,
        })
        .collect();
    let detail = match report {
        Ok(report) => match &report.rollback {
            Some(rollback) => format!(
                "{} keys written, bad share {:.2}, rolled back: {} restored, {} deleted, {} left alone (changed by clients since)",
                report.written,
                report.bad_share,
                rollback.restored,
                rollback.deleted,
                rollback.skipped_changed
            ),
            None => format!(
                "{} keys written, bad share {:.2}, no rollback",
                report.written, report.bad_share
            ),
        },
        Err(e) => format!("warm-up failed: {e}"),
    };
    (ops, detail)
}

/// A writer whose clock runs [`SKEW`] ahead, on [`SKEW_KEYS`], for [`SKEW_WINDOW`].
async fn skewed_writer(store: &Versioned, run: &Run, seed: u64, round: u32) -> (Vec<Op>, String) {
    let clock = Clock::with_time_source(move || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            + SKEW.as_millis() as u64
    });
    let writer = WriterId(0x5EED_0000_0000_0000 ^ seed);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5_CE3);
    let until = Instant::now() + SKEW_WINDOW;
    let mut ops = Vec::new();
    // Values stay unique across the writer's windows.
    let mut seq = round * 1_000_000;
    while Instant::now() < until && run.recorder.admit(1) {
        seq += 1;
        let key = rng.u16(SKEW_KEYS);
        let wait = rng.bool();
        let value = ValueId {
            client: SKEWED_CLIENT,
            seq,
        };
        let version = Version::new(clock.now(), writer);
        let options = if wait {
            WriteOptions::wait(1, WAIT_TIMEOUT)
        } else {
            WriteOptions::default()
        };
        let invoke_us = run.us();
        let result = store
            .set_with_version(
                key_name(key).as_bytes(),
                &frame(&value.text()),
                version,
                None,
                options,
            )
            .await;
        let (outcome, span) = written(result, run, Some(version));
        ops.push(Op {
            client: SKEWED_CLIENT,
            path: Path::Skewed,
            key,
            kind: Kind::Set,
            wait,
            invoke_us,
            complete_us: run.us(),
            budget_ms: ms(if wait {
                COMMAND_TIMEOUT + WAIT_CALL
            } else {
                COMMAND_TIMEOUT
            }),
            value: Some(value),
            version: span,
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = ops.iter().filter(|o| o.outcome.acknowledged()).count();
    let detail = format!(
        "{} writes {} s ahead on keys {}..{}, {written} stored",
        ops.len(),
        SKEW.as_secs(),
        SKEW_KEYS.start,
        SKEW_KEYS.end
    );
    (ops, detail)
}

/// What a run measured, for the terminal and `docs/RESULTS.md`.
struct Outcomes {
    history: History,
    anomalies: Vec<Anomaly>,
    rss_baseline: u64,
    rss_peak: u64,
    rss_bound: u64,
    /// The largest sum of the two write journals' bytes seen, and their summed byte budgets.
    journal_peak: u64,
    journal_budget: u64,
    notes: Vec<String>,
    elapsed: Duration,
}

/// Runs the command: the cluster, the clients, the schedule, the checks, the report.
pub(super) async fn safety(args: &SafetyArgs) -> Result<DrillReport> {
    println!(
        "chaos safety: seed {} ({} s, {} clients + {} fred clients); rerun with --seed {} for the same schedule",
        args.seed,
        args.duration.as_secs(),
        args.clients,
        FRED_CLIENTS,
        args.seed
    );
    let _lock = local_cluster::test_lock::exclusive()
        .await
        .context("taking the exclusive test lock")?;
    let starting = spinner("starting a 3 + 3 cluster");
    let cluster = LocalCluster::start(LocalClusterConfig::default())
        .await
        .context("starting the local cluster")?;
    starting.set_message("connecting the cache, the versioned clients and fred's cluster client");
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(COMMAND_TIMEOUT)
        .build()?;
    let cache = Cache::with_config(config.clone(), CacheConfig::default())
        .await
        .context("connecting the cache")?;
    let raw = ClusterClient::connect(config.clone())
        .await
        .context("connecting the versioned clients' cluster client")?;
    let store = Versioned::new(raw.clone(), ConsistencyConfig::default())?;
    let fred = crate::load::fred_cluster_client(&config).await?;
    starting.finish_and_clear();
    let cache_writer = cache
        .versioned()
        .map(|v| v.writer().0)
        .context("the cache's default settings write versioned")?;
    let run = Arc::new(Run {
        started: Instant::now(),
        recorder: Recorder::default(),
        stop: AtomicBool::new(false),
        cache_writer,
    });
    let start_wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut extra = fill(&cache, &fred, &run).await?;

    let rss_baseline = rss_bytes();
    let peak = Arc::new(AtomicU64::new(rss_baseline));
    // The two write journals (the cache's and the versioned clients') are the memory that grows with
    // write traffic: their peak is checked against their byte budget.
    let journals: Vec<Versioned> = [cache.versioned().cloned(), Some(store.clone())]
        .into_iter()
        .flatten()
        .collect();
    let journal_budget: u64 = journals
        .iter()
        .filter_map(|v| v.journal().map(|j| j.config().max_bytes as u64))
        .sum();
    let journal_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (run, peak, journal_peak) = (run.clone(), peak.clone(), journal_peak.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            while !run.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                let held: u64 = journals
                    .iter()
                    .filter_map(|v| v.journal().map(|j| j.bytes() as u64))
                    .sum();
                journal_peak.fetch_max(held, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(10) {
                    println!(
                        "[{:>6.1} s] {} calls recorded, RSS {} MiB",
                        run.started.elapsed().as_secs_f64(),
                        run.recorder.recorded(),
                        rss_bytes() >> 20
                    );
                }
            }
        })
    };
    let tasks: Vec<_> = (0..args.clients + FRED_CLIENTS)
        .map(|id| {
            let handle = if id >= args.clients {
                Handle::Fred(fred.clone())
            } else if id % 2 == 0 {
                Handle::Cache(cache.clone())
            } else {
                Handle::Versioned(store.clone())
            };
            let id = if id >= args.clients { 100 + id } else { id };
            tokio::spawn(client(id, handle, args.seed, run.clone()))
        })
        .collect();

    let mut plan = Plan::new(args.seed);
    let mut faults = Vec::new();
    let mut notes = Vec::new();
    let deadline = run.started + args.duration;
    tokio::time::sleep(QUIET).await;
    let (mut warmups, mut skews) = (0, 0);
    loop {
        let (kind, gap) = plan.next();
        if Instant::now() + gap + LAST_FAULT_START > deadline {
            break;
        }
        if run.recorder.recorded() >= OP_BUDGET {
            notes.push(format!(
                "the history budget of {OP_BUDGET} calls was reached: the run ended early"
            ));
            break;
        }
        tokio::time::sleep(gap).await;
        let start_us = run.us();
        let result = match kind {
            FaultKind::WarmupRollback => {
                warmups += 1;
                let (ops, detail) = warm_up(&cache, &run, warmups).await;
                extra.extend(ops);
                Ok(detail)
            }
            FaultKind::SkewedClock => {
                skews += 1;
                let (ops, detail) = skewed_writer(&store, &run, args.seed, skews).await;
                extra.extend(ops);
                Ok(detail)
            }
            kind => inject(kind, &cluster, &mut plan).await,
        };
        let end_us = run.us();
        let detail = match result {
            Ok(detail) => detail,
            Err(e) => {
                notes.push(format!("{} failed: {e:#}", kind.name()));
                format!("FAILED: {e:#}")
            }
        };
        println!(
            "[{:>6.1} s] {} ({:.1} s): {detail}",
            start_us as f64 / 1e6,
            kind.name(),
            (end_us - start_us) as f64 / 1e6
        );
        faults.push(FaultWindow {
            kind,
            start_us,
            end_us,
            detail,
        });
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(QUIET);
    tokio::time::sleep(left).await;
    run.stop.store(true, Ordering::Relaxed);
    let mut ops = extra;
    for task in tasks {
        ops.extend(task.await.unwrap_or_default());
    }
    let _ = sampler.await;
    let elapsed = run.started.elapsed();
    let rss_peak = peak.load(Ordering::Relaxed).max(rss_bytes());
    cache.client().close().await;
    raw.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), fred.quit()).await;
    drop(cluster);

    let checking = spinner(&format!("checking {} calls", ops.len()));
    let history_bytes = (ops.capacity() * std::mem::size_of::<Op>()) as u64;
    let history = History {
        ops,
        faults,
        errors: run.recorder.errors(),
        start_wall_ms,
    };
    let anomalies = checker::check(&history);
    checking.finish_and_clear();
    let outcomes = Outcomes {
        rss_bound: rss_baseline + history_bytes + RSS_GROWTH_BOUND,
        history,
        anomalies,
        rss_baseline,
        rss_peak,
        journal_peak: journal_peak.load(Ordering::Relaxed),
        journal_budget,
        notes,
        elapsed,
    };
    print!("{}", anomaly_tables(&outcomes));
    let report = report(args, &outcomes);
    write_section(&args.results, &section(args, &outcomes, &report))?;
    Ok(report)
}

/// Whether an anomaly is fred's (the contrast) rather than ours.
fn is_fred(history: &History, anomaly: &Anomaly) -> bool {
    history.ops[anomaly.op].path == Path::Fred
}

/// Each anomaly (the first few per check) with its key's history.
fn anomaly_tables(o: &Outcomes) -> String {
    let mut out = String::new();
    for fred in [false, true] {
        for check in Check::EVERY {
            let of: Vec<&Anomaly> = o
                .anomalies
                .iter()
                .filter(|a| a.check == check && is_fred(&o.history, a) == fred)
                .collect();
            for a in of.iter().take(PRINTED_PER_CHECK) {
                let _ = writeln!(
                    out,
                    "\nANOMALY{} check {} on {}: {}",
                    if fred { " (fred, contrast)" } else { "" },
                    check.name(),
                    key_name(a.key),
                    a.text
                );
                let rows = checker::context(&o.history, a);
                let mut marked = vec![a.op];
                marked.extend(a.cause);
                out.push_str(&table(&o.history, &rows, &marked, &key_name));
            }
            if of.len() > PRINTED_PER_CHECK {
                let _ = writeln!(
                    out,
                    "  ... and {} more of check {}",
                    of.len() - PRINTED_PER_CHECK,
                    check.name()
                );
            }
        }
    }
    if o.rss_peak > o.rss_bound {
        let _ = writeln!(
            out,
            "\nANOMALY check {}: peak RSS {} MiB above the bound of {} MiB",
            Check::Memory.name(),
            o.rss_peak >> 20,
            o.rss_bound >> 20
        );
    }
    out
}

fn report(args: &SafetyArgs, o: &Outcomes) -> DrillReport {
    let h = &o.history;
    let mut report = DrillReport::new("safety");
    let f = &mut report.figures;
    let ours_ops = h.ops.iter().filter(|op| op.path != Path::Fred).count();
    let fred_ops = h.ops.len() - ours_ops;
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    // redis-rs takes no part in the safety run: its column is `-` throughout, and left out of the table.
    f.push(Figure::info("seed", args.seed, "(same schedule)", "-"));
    f.push(Figure::info("run", format!("{:.0} s", secs), "(same run)", "-"));
    f.push(Figure::info("operations checked", ours_ops, fred_ops, "-"));
    f.push(Figure::info(
        "calls per second",
        format!("{:.0}/s", ours_ops as f64 / secs),
        format!("{:.0}/s", fred_ops as f64 / secs),
        "-",
    ));
    let acked = |fred: bool| {
        h.ops
            .iter()
            .filter(|op| (op.path == Path::Fred) == fred && op.is_write() && op.outcome.wait_acknowledged())
            .count()
    };
    f.push(Figure::info(
        "writes acked with WAIT ≥ 1",
        acked(false),
        acked(true),
        "-",
    ));
    let failed = |fred: bool| {
        h.ops
            .iter()
            .filter(|op| {
                (op.path == Path::Fred) == fred
                    && matches!(op.outcome, Outcome::Error(_) | Outcome::Timeout(_))
            })
            .count()
    };
    f.push(Figure::info(
        "calls failed (errors and timeouts)",
        failed(false),
        failed(true),
        "-",
    ));
    f.push(Figure::info(
        "faults injected",
        h.faults.len(),
        "(same faults)",
        "-",
    ));
    for kind in FaultKind::EVERY {
        let n = h.faults.iter().filter(|w| w.kind == kind).count();
        f.push(Figure::info(&format!("  fault: {}", kind.name()), n, "-", "-"));
    }
    for check in Check::EVERY {
        let count = |fred: bool| {
            o.anomalies
                .iter()
                .filter(|a| a.check == check && is_fred(h, a) == fred)
                .count()
        };
        if check == Check::Memory {
            let pass = o.rss_peak <= o.rss_bound;
            f.push(Figure::target(
                "peak RSS (baseline → peak)",
                format!("{} → {} MiB", o.rss_baseline >> 20, o.rss_peak >> 20),
                "(same process)",
                "-",
                &format!("≤ {} MiB", o.rss_bound >> 20),
                pass,
            ));
            f.push(Figure::target(
                "write journals' peak bytes (sampled every second)",
                format!("{:.1} MiB", o.journal_peak as f64 / f64::from(1 << 20)),
                "-",
                "-",
                &format!("≤ {} MiB (their budgets)", o.journal_budget >> 20),
                o.journal_peak <= o.journal_budget,
            ));
            continue;
        }
        let fred = match check {
            Check::LostWrite | Check::DeleteUndone | Check::Deadline => count(true).to_string(),
            _ => "-".into(),
        };
        f.push(Figure::target(
            &format!("anomalies: {}", check.name()),
            count(false),
            fred,
            "-",
            "0",
            count(false) == 0,
        ));
    }
    report.notes = o.notes.clone();
    for (i, kind) in h.errors.iter().enumerate() {
        let n = h
            .ops
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Error(e) | Outcome::Timeout(e) if usize::from(e) == i))
            .count();
        if n > 0 && report.notes.len() < 20 {
            report.notes.push(format!("{n}× {kind}"));
        }
    }
    report
}

/// This command's section of `docs/RESULTS.md`, markers included.
fn section(args: &SafetyArgs, o: &Outcomes, report: &DrillReport) -> String {
    let mut out = format!("{SECTION_BEGIN}\n## History checker (`chaos safety`)\n\n");
    let _ = writeln!(
        out,
        "Produced by `cargo xtask chaos safety --seed {} --clients {}` ({} s run) on {}.\n",
        args.seed,
        args.clients,
        args.duration.as_secs(),
        utc_date(SystemTime::now())
    );
    out.push_str(
        "Clients contend for 128 keys of a fresh 3 + 3 cluster through `Cache` and `Versioned` (half of the \
         versioned writes with `WAIT 1`) while a seeded schedule kills, stops, fails over and migrates, runs \
         a warm-up with rollback over 32 keys and a client whose clock is 10 minutes ahead. Every call is \
         checked per key (see `xtask/src/chaos/checker.rs` for the definitions). **fred** is a plain \
         SET/GET/DEL/WAIT workload through fred's cluster client on keys of its own during the same schedule: \
         contrast only.\n\n",
    );
    out.push_str("| figure | ours | fred | target | pass |\n|---|---|---|---|---|\n");
    for f in &report.figures {
        let verdict = match f.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {verdict} |",
            f.name.trim(),
            f.ours,
            f.fred,
            f.target
        );
    }
    let faults: Vec<String> = o
        .history
        .faults
        .iter()
        .map(|w| {
            format!(
                "- {:.1} s: {}: {}",
                w.start_us as f64 / 1e6,
                w.kind.name(),
                w.detail
            )
        })
        .collect();
    if !faults.is_empty() {
        out.push_str("\nSchedule:\n\n");
        out.push_str(&faults.join("\n"));
        out.push('\n');
    }
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {}", note.replace('\n', " ").replace('|', "\\|"));
        }
    }
    out.push_str(SECTION_END);
    out.push('\n');
    out
}

/// `text` with this command's section replaced by `section` (or appended when it has none).
pub(super) fn replace_section(text: &str, section: &str) -> String {
    match (text.find(SECTION_BEGIN), text.find(SECTION_END)) {
        (Some(begin), Some(end)) if end > begin => {
            let after = &text[end + SECTION_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section}{after}", &text[..begin])
        }
        _ if text.is_empty() => section.to_string(),
        _ => format!("{}\n\n{section}", text.trim_end()),
    }
}

/// This command's section of `text`, markers included, if it has one.
pub(super) fn section_of(text: &str) -> Option<&str> {
    let begin = text.find(SECTION_BEGIN)?;
    let end = text[begin..].find(SECTION_END)? + begin + SECTION_END.len();
    Some(&text[begin..end])
}

fn write_section(path: &FsPath, section: &str) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        crate::workspace_root().join(path)
    };
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, replace_section(&old, section))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nWrote the safety section of {}.", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::history::version_key;
    use super::*;

    #[test]
    fn frames_are_the_cache_s_json_frames() {
        let id = ValueId { client: 3, seq: 9 };
        assert_eq!(frame(&id.text()), b"V\x01\"3.9\"".to_vec());
        assert_eq!(unframe(&frame(&id.text())), id);
        assert_eq!(unframe(b"plain"), FOREIGN);
        assert_eq!(unframe(b"V\x01\"not an id\""), FOREIGN);
    }

    #[test]
    fn the_section_is_replaced_and_nothing_else() {
        let section = format!("{SECTION_BEGIN}\nnew\n{SECTION_END}\n");
        assert_eq!(replace_section("", &section), section);
        let appended = replace_section("# Results\n\n| a |\n", &section);
        assert_eq!(appended, format!("# Results\n\n| a |\n\n{section}"));
        let old = format!("# Results\n\n{SECTION_BEGIN}\nold\n{SECTION_END}\n\n## Notes\n- x\n");
        let replaced = replace_section(&old, &section);
        assert_eq!(replaced, format!("# Results\n\n{section}\n## Notes\n- x\n"));
        assert_eq!(section_of(&replaced), Some(section.trim_end()));
        assert_eq!(section_of("# Results"), None);
    }

    #[test]
    fn versions_pack_in_version_order() {
        let a = version_key(Version::new(Hlc::new(5, 0), WriterId(u64::MAX)));
        let b = version_key(Version::new(Hlc::new(5, 1), WriterId(0)));
        assert!(a < b);
    }
}
