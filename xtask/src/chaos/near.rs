//! `cargo xtask chaos near-cache`: a history checker for client-side caches under faults.
//!
//! A 3 + 3 cluster; writers (cluster-client, one writer per key, so each key's values count up) write
//! `n` and call `WAIT 1` before they record the write as acknowledged (a write a kill -9 could take
//! back is never held against a reader). Three kinds of readers read the same keys side by side:
//! the near cache (near-cache over cluster-client, default settings), redis-rs's client-side cache
//! (`cache-aio`, RESP3, as its docs build it, with the drills' 1 s timeouts), and plain cluster-client
//! GETs as the control (no local cache: whatever it reads stale is the server's doing, not a cache's).
//! Faults, one after another: `CLIENT KILL` of every tracking connection, kill -9 of a primary,
//! a manual failover, a slot migration of hot keys, SIGSTOP of a primary past the node timeout.
//!
//! Every read is checked against the write history: a read that returns `n` while a newer value was
//! acknowledged before the read started is stale, by the time since that acknowledgement (its
//! staleness). Figures: stale reads, staleness p50/p99/max, and stale reads past the bound
//! (`BOUND`): the target is none for the near cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use local_cluster::{FailoverKind, LocalCluster, LocalClusterConfig};
use near_cache::{NearCache, NearSettings};

use super::spinner;
use crate::redis_rs_baseline::RedisRs;

/// Keys read and written.
pub(crate) const KEYS: usize = 300;
/// Writer tasks (each owns every `WRITERS`-th key).
const WRITERS: usize = 4;
/// Reader tasks per client.
const READERS: usize = 4;
/// A read this long after a newer value was acknowledged must not return an older one.
pub(crate) const BOUND: Duration = Duration::from_millis(100);
/// The invalidation delay the near cache aims for: p99 of the staleness of its stale reads.
const DELAY_TARGET: Duration = Duration::from_millis(5);
/// Quiet time between faults.
const HOLD: Duration = Duration::from_secs(3);

fn key(i: usize) -> String {
    format!("nc:{i}")
}

/// Acknowledged writes of one key: (value, microseconds after the start), in order.
type Acks = std::sync::Mutex<Vec<(u64, u64)>>;

/// One read: key index, start (µs after the start), value (`None`: absent or unreadable as a number).
type Read = (u32, u64, Option<u64>);

struct Readers {
    name: &'static str,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Read>, u64)>>,
}

/// What one kind of reader saw.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) name: &'static str,
    pub(crate) reads: usize,
    pub(crate) errors: u64,
    pub(crate) stale: usize,
    /// Staleness of the stale reads, sorted (µs).
    pub(crate) staleness: Vec<u64>,
    pub(crate) past_bound: usize,
    /// Stale reads past the bound by the fault they followed.
    pub(crate) past_bound_by_phase: Vec<(String, usize)>,
}

impl Verdict {
    fn quantile(&self, q: f64) -> Option<Duration> {
        if self.staleness.is_empty() {
            return None;
        }
        let index = ((self.staleness.len() - 1) as f64 * q).round() as usize;
        Some(Duration::from_micros(self.staleness[index]))
    }
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
}

/// Runs the checker; `rate` is the writers' total writes per second.
pub(crate) async fn near_cache(rate: u32) -> Result<(Vec<Verdict>, Vec<String>)> {
    let _lock = local_cluster::test_lock::exclusive()
        .await
        .context("taking the exclusive test lock")?;
    let starting = spinner("starting a 3 + 3 cluster");
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    starting.finish_and_clear();
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(Duration::from_secs(1))
        .build()?;
    let writer = ClusterClient::connect(config.clone()).await?;
    let near = NearCache::new(
        ClusterClient::connect(config.clone()).await?,
        NearSettings::default(),
    )?;
    let control = ClusterClient::connect(config.clone()).await?;
    let cached = Arc::new(RedisRs::cached_with_timeouts(&cluster.seeds(), Duration::from_secs(1)).await?);

    let origin = Instant::now();
    let micros = move || origin.elapsed().as_micros() as u64;
    let acks: Arc<Vec<Acks>> = Arc::new((0..KEYS).map(|_| Acks::default()).collect());
    for i in 0..KEYS {
        writer.set(key(i).as_bytes(), b"0", SetOptions::default()).await?;
    }
    writer.wait(key(0).as_bytes(), 1, Duration::from_secs(1)).await?;
    for a in acks.iter() {
        a.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((0, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));

    // Writers, paced to `rate` in total.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (writer, acks, stop, written) = (writer.clone(), acks.clone(), stop.clone(), written.clone());
        let pause = Duration::from_secs_f64(WRITERS as f64 / f64::from(rate.max(1)));
        writers.push(tokio::spawn(async move {
            let mine: Vec<usize> = (w..KEYS).step_by(WRITERS).collect();
            let mut next = vec![0u64; KEYS];
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = mine[turn % mine.len()];
                turn += 1;
                next[k] += 1;
                let n = next[k];
                let name = key(k);
                // Acknowledged when SET returns; counted only if WAIT then confirms a replica has it
                // (so a kill -9 cannot take it back). WAIT's own round trip is not in the ack time,
                // which would give invalidations a head start.
                if writer
                    .set(name.as_bytes(), n.to_string().as_bytes(), SetOptions::default())
                    .await
                    .is_ok()
                {
                    let acked = micros();
                    if writer
                        .wait(name.as_bytes(), 1, Duration::from_millis(200))
                        .await
                        .is_ok_and(|r| r >= 1)
                        && let Ok(mut a) = acks[k].lock()
                    {
                        a.push((n, acked));
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }

    let start_readers = |name: &'static str, read: Arc<dyn Fn(String) -> ReadFuture + Send + Sync>| {
        let tasks = (0..READERS)
            .map(|r| {
                let (read, stop) = (read.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut reads = Vec::new();
                    let mut errors = 0;
                    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (r as u64 + 1);
                    while !stop.load(Ordering::Relaxed) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let k = (rng % KEYS as u64) as u32;
                        let started = micros();
                        match read(key(k as usize)).await {
                            Ok(value) => reads.push((k, started, value)),
                            Err(()) => errors += 1,
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    (reads, errors)
                })
            })
            .collect();
        Readers { name, tasks }
    };
    let parse = |bytes: Option<&[u8]>| bytes.and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok());
    let near_reads = {
        let near = near.clone();
        start_readers(
            "near cache (ours)",
            Arc::new(move |k: String| {
                let near = near.clone();
                Box::pin(async move {
                    near.get(k.as_bytes())
                        .await
                        .map(|v| parse(v.as_deref()))
                        .map_err(|_| ())
                }) as ReadFuture
            }),
        )
    };
    let redis_rs_reads = {
        let cached = cached.clone();
        start_readers(
            "redis-rs client-side cache",
            Arc::new(move |k: String| {
                let mut connection = cached.connection();
                Box::pin(async move {
                    use redis::AsyncCommands;
                    connection
                        .get::<_, Option<Vec<u8>>>(k)
                        .await
                        .map(|v| parse(v.as_deref()))
                        .map_err(|_| ())
                }) as ReadFuture
            }),
        )
    };
    let control_reads = {
        let control = control.clone();
        start_readers(
            "control: plain GETs (no local cache)",
            Arc::new(move |k: String| {
                let control = control.clone();
                Box::pin(async move {
                    control
                        .get(k.as_bytes())
                        .await
                        .map(|v| parse(v.as_deref()))
                        .map_err(|_| ())
                }) as ReadFuture
            }),
        )
    };

    // The negative control: a local map with a 1 s TTL and no invalidation, which the checker must
    // catch serving stale values.
    let naive_reads = {
        let control = control.clone();
        let map: Arc<NaiveMap> = Arc::default();
        start_readers(
            "negative control: local map, 1 s TTL, no invalidation",
            Arc::new(move |k: String| {
                let (control, map) = (control.clone(), map.clone());
                Box::pin(async move {
                    if let Some(&(at, v)) = map.lock().map_err(|_| ())?.get(&k)
                        && at.elapsed() < Duration::from_secs(1)
                    {
                        return Ok(v);
                    }
                    let v = control
                        .get(k.as_bytes())
                        .await
                        .map(|v| parse(v.as_deref()))
                        .map_err(|_| ())?;
                    map.lock().map_err(|_| ())?.insert(k, (Instant::now(), v));
                    Ok(v)
                }) as ReadFuture
            }),
        )
    };

    // The faults, one after another; `phases` marks when each began (µs).
    let mut phases: Vec<(String, u64)> = vec![("warm-up".into(), 0)];
    let mut notes = Vec::new();
    tokio::time::sleep(HOLD).await;
    let phase = |name: &str, phases: &mut Vec<(String, u64)>| {
        println!("  {name}");
        phases.push((name.to_string(), micros()));
    };

    phase("CLIENT KILL of every tracking connection", &mut phases);
    let mut killed = 0;
    for node in cluster.primaries().await? {
        let list: String = node.command(["CLIENT", "LIST"]).await?;
        for id in list
            .lines()
            .filter(|l| l.split(' ').any(|f| f.starts_with("flags=") && f.contains('t')))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        {
            let _: Result<i64, _> = node.command(["CLIENT", "KILL", "ID", id]).await;
            killed += 1;
        }
    }
    notes.push(format!(
        "CLIENT KILL closed {killed} tracking connections (ours and redis-rs's)"
    ));
    tokio::time::sleep(HOLD).await;

    phase("kill -9 of a primary", &mut phases);
    let victim = cluster
        .primary_for_slot(sharding::key_slot(key(0).as_bytes()))
        .await?;
    victim.kill()?;
    let promoted = cluster
        .wait_for_promotion(victim, Duration::from_secs(30))
        .await?;
    notes.push(format!("kill -9 {}: {} promoted", victim.addr(), promoted.addr()));
    tokio::time::sleep(HOLD).await;
    victim.restart().await?;
    cluster.wait_until_healthy(Duration::from_secs(60)).await?;
    tokio::time::sleep(HOLD).await;

    phase("manual failover", &mut phases);
    cluster.wait_until_healthy(Duration::from_secs(60)).await?;
    let primary = cluster
        .primary_for_slot(sharding::key_slot(key(1).as_bytes()))
        .await?;
    let replica = cluster
        .replicas_of(primary)
        .await?
        .into_iter()
        .next()
        .context("the primary has a replica")?;
    replica.failover(FailoverKind::Graceful).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(replica.role().await, Ok(local_cluster::Role::Primary)) {
        anyhow::ensure!(Instant::now() < deadline, "the manual failover did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    notes.push(format!(
        "manual failover: {} took over from {}",
        replica.addr(),
        primary.addr()
    ));
    tokio::time::sleep(HOLD).await;

    phase("slot migration", &mut phases);
    cluster.wait_until_healthy(Duration::from_secs(60)).await?;
    let primaries = cluster.primaries().await?;
    let (from, to) = (primaries[0], primaries[1]);
    let moved = cluster.migrate_slots(1000, from, to).await?;
    let hot_moved = (0..KEYS)
        .filter(|&i| moved.contains(&sharding::key_slot(key(i).as_bytes())))
        .count();
    notes.push(format!(
        "slot migration: {} slots from {} to {}, {hot_moved} of the {KEYS} keys among them",
        moved.len(),
        from.addr(),
        to.addr()
    ));
    tokio::time::sleep(HOLD).await;

    phase("SIGSTOP of a primary past the node timeout", &mut phases);
    cluster.wait_until_healthy(Duration::from_secs(60)).await?;
    let slot = sharding::key_slot(key(2).as_bytes());
    let paused = cluster.primary_for_slot(slot).await?;
    paused.pause()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted = loop {
        match cluster.primary_for_slot(slot).await {
            Ok(owner) if owner.port() != paused.port() => break Ok(owner),
            _ if Instant::now() > deadline => break Err(anyhow::anyhow!("no promotion within 30 s")),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    paused.resume()?;
    let promoted = promoted?;
    notes.push(format!(
        "SIGSTOP {}: {} promoted, then resumed",
        paused.addr(),
        promoted.addr()
    ));
    cluster.wait_until_healthy(Duration::from_secs(60)).await?;
    tokio::time::sleep(HOLD).await;

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    notes.push(format!(
        "{} writes acknowledged with WAIT 1 over {:.0} s",
        written.load(Ordering::Relaxed),
        origin.elapsed().as_secs_f64()
    ));
    let stats = near.stats();
    notes.push(format!(
        "near cache: hit ratio {:.0}%, {} invalidations, {} kept values dropped (token or TTL cap), {} reads not kept",
        100.0 * stats.hit_ratio(),
        stats.invalidations,
        stats.dropped,
        stats.not_kept
    ));
    let acks: Vec<Vec<(u64, u64)>> = acks
        .iter()
        .map(|a| a.lock().map(|a| a.clone()).unwrap_or_default())
        .collect();
    let mut verdicts = Vec::new();
    for readers in [near_reads, redis_rs_reads, control_reads, naive_reads] {
        let mut reads = Vec::new();
        let mut errors = 0;
        for task in readers.tasks {
            let (r, e) = task.await?;
            reads.extend(r);
            errors += e;
        }
        verdicts.push(check(readers.name, &reads, errors, &acks, &phases));
    }
    writer.close().await;
    control.close().await;
    near.client().close().await;
    Ok((verdicts, notes))
}

/// The negative control's local map: key to (when read, value).
type NaiveMap = std::sync::Mutex<std::collections::HashMap<String, (Instant, Option<u64>)>>;

type ReadFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<u64>, ()>> + Send>>;

/// Checks `reads` against the acknowledged writes.
pub(crate) fn check(
    name: &'static str,
    reads: &[Read],
    errors: u64,
    acks: &[Vec<(u64, u64)>],
    phases: &[(String, u64)],
) -> Verdict {
    let mut staleness = Vec::new();
    let mut by_phase: Vec<(String, usize)> = phases.iter().map(|(p, _)| (p.clone(), 0)).collect();
    for &(k, started, value) in reads {
        let history = &acks[k as usize];
        // The first acknowledged write newer than what was read, acknowledged before the read began.
        // An absent key is older than every write (the keys are written before any read).
        let newer = history
            .iter()
            .find(|&&(n, at)| value.is_none_or(|got| n > got) && at < started);
        if let Some(&(_, at)) = newer {
            let stale_for = started - at;
            staleness.push(stale_for);
            if stale_for > BOUND.as_micros() as u64 {
                let phase = phases
                    .iter()
                    .rposition(|&(_, begun)| begun <= started)
                    .unwrap_or(0);
                by_phase[phase].1 += 1;
            }
        }
    }
    staleness.sort_unstable();
    let past_bound = staleness
        .iter()
        .filter(|&&s| s > BOUND.as_micros() as u64)
        .count();
    Verdict {
        name,
        reads: reads.len(),
        errors,
        stale: staleness.len(),
        staleness,
        past_bound,
        past_bound_by_phase: by_phase.into_iter().filter(|(_, n)| *n > 0).collect(),
    }
}

/// The table for the terminal and for docs/RESULTS.md, and whether the near cache met its targets.
pub(crate) fn table(verdicts: &[Verdict]) -> (String, bool) {
    let mut out = String::from(
        "| reader | reads | errors | stale reads | staleness p50 | p99 | max | stale past 100 ms | by fault |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for v in verdicts {
        let faults = v
            .past_bound_by_phase
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join("; ");
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            v.name,
            v.reads,
            v.errors,
            v.stale,
            show(v.quantile(0.5)),
            show(v.quantile(0.99)),
            show(v.quantile(1.0)),
            v.past_bound,
            if faults.is_empty() { "-".into() } else { faults }
        ));
    }
    let ours = &verdicts[0];
    // The negative control (last, when present) must be caught: a checker that sees nothing proves
    // nothing.
    let checker_sees = verdicts.len() < 4 || verdicts[3].past_bound > 0;
    let pass =
        checker_sees && ours.past_bound == 0 && ours.quantile(0.99).is_none_or(|p99| p99 <= DELAY_TARGET);
    (out, pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_stale_by_the_time_since_the_first_newer_acknowledged_write() {
        // Key 0: 0 at 0 µs, 1 at 1,000 µs, 2 at 300,000 µs.
        let acks = vec![vec![(0, 0), (1, 1_000), (2, 300_000)]];
        let phases = vec![("warm-up".to_string(), 0), ("fault".to_string(), 200_000)];
        let reads = [
            (0, 500, Some(0)),     // before 1 was acknowledged: fine
            (0, 3_000, Some(0)),   // 2 ms stale
            (0, 250_000, Some(0)), // 249 ms stale, past the bound, during "fault"
            (0, 250_000, Some(1)), // fine
            (0, 400_000, Some(2)), // fine
            (0, 400_000, None),    // absent: stale since the first write
        ];
        let v = check("t", &reads, 0, &acks, &phases);
        assert_eq!(v.stale, 3);
        assert_eq!(v.staleness, vec![2_000, 249_000, 400_000]);
        assert_eq!(v.past_bound, 2);
        assert_eq!(v.past_bound_by_phase, vec![("fault".to_string(), 2)]);
        let (_, pass) = table(&[v]);
        assert!(!pass);
        let clean = check("t", &reads[..2], 0, &acks, &phases);
        assert_eq!(clean.stale, 1);
        assert!(table(&[clean]).1, "2 ms is within the delay target");
    }
}
