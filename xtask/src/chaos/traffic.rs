//! The three loads of a drill — one through the cache, one through fred's cluster client, one through
//! redis-rs's cluster client — and what they record: per shard (as the slots were split when the drill
//! started) counts, latency histograms, the longest call, and the few instants a drill's figures need,
//! all as counters so that memory stays bounded however long the load runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cache_facade::{Cache, CacheConfig, ClusterClient, ClusterConfig};
use cluster_client::Topology;
use fred::prelude::{Client, ClientLike, KeysInterface};
use hdrhistogram::Histogram;
use local_cluster::LocalCluster;
use redis::AsyncCommands;
use redis::cluster_async::ClusterConnection;

use crate::redis_rs_baseline::RedisRs;

/// Every call's deadline, for all three clients.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Tasks per shard and load. Each shard has tasks of its own, so that calls stuck on a failing shard
/// never hold back the traffic of healthy ones: what a healthy shard serves depends on the client alone.
pub(super) const TASKS_PER_SHARD: usize = 3;
/// Keys per load.
pub(super) const KEYS: usize = 3_000;
/// Distinct error texts kept per load; further kinds are counted as "other".
const ERROR_KINDS: usize = 24;
/// Padding that makes a value about 64 bytes.
const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// "Not set" for instants kept as microseconds since the drill started.
const NEVER: u64 = u64::MAX;

/// One value per peer of a drill: ours (the cache), fred's cluster client and redis-rs's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Peers<T> {
    pub(super) ours: T,
    pub(super) fred: T,
    pub(super) redis_rs: T,
}

impl<T> Peers<T> {
    /// The peers' names as the tables and notes write them, with their values.
    pub(super) fn named(&self) -> [(&'static str, &T); 3] {
        [
            ("ours", &self.ours),
            ("fred", &self.fred),
            ("redis-rs", &self.redis_rs),
        ]
    }
}

/// What each load of a drill recorded.
pub(super) type Tallies = Peers<Arc<Tally>>;

/// The cache (ours), fred's cluster client and redis-rs's cluster client, all three with the same
/// command timeout. fred is built from our configuration (`crate::load::fred_cluster_client`), redis-rs
/// as its users build it with that timeout ([`RedisRs::with_timeouts`]).
pub(super) struct Clients {
    pub(super) cache: Cache,
    pub(super) fred: Client,
    pub(super) redis_rs: ClusterConnection,
}

impl Clients {
    pub(super) async fn connect(cluster: &LocalCluster, settings: CacheConfig) -> Result<Clients> {
        let config = ClusterConfig::builder()
            .nodes(cluster.seeds())
            .command_timeout(COMMAND_TIMEOUT)
            .build()?;
        let cache = Cache::with_config(config.clone(), settings)
            .await
            .context("connecting the cache")?;
        let fred = crate::load::fred_cluster_client(&config).await?;
        let redis_rs = RedisRs::with_timeouts(&cluster.seeds(), COMMAND_TIMEOUT)
            .await?
            .connection();
        Ok(Clients {
            cache,
            fred,
            redis_rs,
        })
    }

    /// The cluster client under the cache.
    pub(super) fn raw(&self) -> &ClusterClient {
        self.cache.client()
    }

    pub(super) async fn close(self) {
        self.cache.client().close().await;
        // `quit` waits for a reply, which a dead or paused node never sends.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.fred.quit()).await;
        // redis-rs's connection closes when its last handle drops.
        drop(self.redis_rs);
    }
}

/// Which client a load goes through.
#[derive(Clone)]
pub(super) enum Side {
    Ours(Cache),
    Fred(Client),
    RedisRs(ClusterConnection),
}

impl Side {
    async fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self {
            Side::Ours(cache) => cache
                .set(key, value, None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Side::Fred(client) => client
                .set::<(), _, _>(key, value, None, None, false)
                .await
                .map_err(|e| e.to_string()),
            Side::RedisRs(connection) => connection
                .set::<_, _, ()>(key, value)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// GET returning the value, for loads that check what they read.
    async fn get_value(&mut self, key: &str) -> Result<Option<String>, String> {
        match self {
            Side::Ours(cache) => cache.get::<String>(key).await.map_err(|e| e.to_string()),
            Side::Fred(client) => client
                .get::<Option<String>, _>(key)
                .await
                .map_err(|e| e.to_string()),
            Side::RedisRs(connection) => connection
                .get::<_, Option<String>>(key)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn get(&mut self, key: &str) -> Result<(), String> {
        match self {
            Side::Ours(cache) => cache
                .get::<String>(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Side::Fred(client) => client
                .get::<Option<String>, _>(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Side::RedisRs(connection) => connection
                .get::<_, Option<String>>(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

/// What each task does per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mix {
    /// A SET then a GET of the same key (two calls).
    SetGet,
    /// A GET only (keys filled beforehand).
    GetOnly,
    /// [`Mix::SetGet`], and the GET must return the value just set: each key has one writer (its
    /// task), so anything else is a value lost or a stale copy served. Such a read counts as a failed
    /// call whose error starts with [`MISS`] (nothing there) or [`WRONG_VALUE`].
    SetGetChecked,
}

/// The error of a checked read that found nothing.
pub(super) const MISS: &str = "miss: the key read back absent right after it was set";
/// The error of a checked read that found another value.
pub(super) const WRONG_VALUE: &str = "wrong value: the key read back differs from the value just set";

/// A load's keys and the shard (index into the drill's starting topology) each one belongs to.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) names: Vec<String>,
    pub(super) shard: Vec<usize>,
    /// Shards in the topology the keys were placed with.
    pub(super) shards: usize,
}

impl Keys {
    pub(super) fn new(prefix: &str, count: usize, topology: &Topology) -> Result<Arc<Keys>> {
        let names: Vec<String> = (0..count).map(|i| format!("chaos:{prefix}:{i}")).collect();
        let shard = names
            .iter()
            .map(|name| shard_index(topology, name.as_bytes()))
            .collect::<Result<_>>()?;
        Ok(Arc::new(Keys {
            names,
            shard,
            shards: topology.shards().len(),
        }))
    }
}

/// The index of the shard serving `key` in `topology.shards()`.
pub(super) fn shard_index(topology: &Topology, key: &[u8]) -> Result<usize> {
    let shard = topology
        .shard_for_key(key)
        .context("a slot is not covered by any shard")?;
    topology
        .shards()
        .iter()
        .position(|s| s.primary == shard.primary)
        .context("the shard of a key is not in the topology")
}

/// One load: `TASKS_PER_SHARD` tasks per shard going through that shard's keys, at `rate` calls per
/// second in total.
pub(super) struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<Tally>,
}

impl Traffic {
    pub(super) fn start(side: Side, keys: Arc<Keys>, mix: Mix, rate: u32, tally: Arc<Tally>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        // Each task paces its own calls, so the total rate holds while a call is slow; a task whose call
        // took longer than its pace starts the next at once rather than bursting to catch up.
        let workers = keys.shards * TASKS_PER_SHARD;
        let pace = Duration::from_secs_f64(workers as f64 / f64::from(rate.max(1)));
        let tasks = (0..workers)
            .map(|worker| {
                let (mut side, keys, stop, tally) = (side.clone(), keys.clone(), stop.clone(), tally.clone());
                let shard = worker / TASKS_PER_SHARD;
                let mine: Vec<usize> = (0..keys.names.len())
                    .filter(|&i| keys.shard[i] == shard)
                    .skip(worker % TASKS_PER_SHARD)
                    .step_by(TASKS_PER_SHARD)
                    .collect();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(pace);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut round = 0u64;
                    'run: loop {
                        if mine.is_empty() {
                            // A shard without keys (only with very few keys): nothing to do but wait.
                            tick.tick().await;
                            if stop.load(Ordering::Relaxed) {
                                break 'run;
                            }
                            continue;
                        }
                        for &i in &mine {
                            let key = keys.names[i].as_str();
                            let value = format!("{i}:{round}:{PAD}");
                            let mut set_ok = false;
                            if mix != Mix::GetOnly {
                                tick.tick().await;
                                if stop.load(Ordering::Relaxed) {
                                    break 'run;
                                }
                                let started = Instant::now();
                                let result = side.set(key, &value).await;
                                set_ok = result.is_ok();
                                tally.record(keys.shard[i], started, result);
                            }
                            tick.tick().await;
                            if stop.load(Ordering::Relaxed) {
                                break 'run;
                            }
                            let started = Instant::now();
                            let result = if mix == Mix::SetGetChecked && set_ok {
                                match side.get_value(key).await {
                                    Ok(Some(read)) if read == value => Ok(()),
                                    Ok(Some(_)) => Err(WRONG_VALUE.to_string()),
                                    Ok(None) => Err(MISS.to_string()),
                                    Err(e) => Err(e),
                                }
                            } else {
                                side.get(key).await
                            };
                            tally.record(keys.shard[i], started, result);
                        }
                        round += 1;
                    }
                })
            })
            .collect();
        Traffic { stop, tasks, tally }
    }

    /// Stops the tasks (each finishes its current call) and returns what they recorded.
    pub(super) async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.tally
    }
}

/// GETs fired at a fixed rate without waiting for earlier ones to finish (an open loop): while no
/// node answers, calls pile up in the client until their timeouts, which is what shows whether its
/// memory stays bounded.
pub(super) struct Burst {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    in_flight: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
}

impl Burst {
    pub(super) fn start(side: Side, keys: Arc<Keys>, rate: u32, tally: Arc<Tally>) -> Burst {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let (stopped, counting, highest) = (stop.clone(), in_flight.clone(), peak.clone());
        let task = tokio::spawn(async move {
            // Timers tick every millisecond at best: fire a hundredth of a second's calls per tick.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (rate / 100).max(1) as usize;
            let mut next = 0usize;
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..per_tick {
                    let i = next % keys.names.len();
                    next += 1;
                    let (mut side, keys, tally, counting, highest) = (
                        side.clone(),
                        keys.clone(),
                        tally.clone(),
                        counting.clone(),
                        highest.clone(),
                    );
                    let now = counting.fetch_add(1, Ordering::Relaxed) + 1;
                    highest.fetch_max(now, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result = side.get(&keys.names[i]).await;
                        tally.record(keys.shard[i], started, result);
                        counting.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        });
        Burst {
            stop,
            task,
            in_flight,
            peak,
        }
    }

    /// Stops firing, waits (up to 5 s) for the calls in flight, and returns the most that were in flight.
    pub(super) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let until = Instant::now() + Duration::from_secs(5);
        while self.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Counts of one shard's calls.
struct ShardTally {
    ok: AtomicU64,
    failed: AtomicU64,
    longest_us: AtomicU64,
    /// The longest call that ended after the mark.
    longest_after_mark_us: AtomicU64,
    failed_min_us: AtomicU64,
    failed_max_us: AtomicU64,
    /// When the first successful call that started after the mark started.
    first_ok_after_mark: AtomicU64,
    /// When the last failed call ended.
    last_fail_end: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl ShardTally {
    fn new() -> ShardTally {
        ShardTally {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            longest_us: AtomicU64::new(0),
            longest_after_mark_us: AtomicU64::new(0),
            failed_min_us: AtomicU64::new(NEVER),
            failed_max_us: AtomicU64::new(0),
            first_ok_after_mark: AtomicU64::new(NEVER),
            last_fail_end: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("constant histogram bounds are valid")
}

/// What one load recorded. Instants are microseconds since the drill started (shared by the loads,
/// so that ours, fred's and redis-rs's compare), and one instant, the mark, is set by the drill when it injects
/// its fault.
pub(super) struct Tally {
    started: Instant,
    mark: AtomicU64,
    shards: Vec<ShardTally>,
    /// Per second since the start, per shard: (ok, failed) calls that started in it.
    seconds: Mutex<Vec<Vec<(u32, u32)>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The phase calls ending now belong to (set by drills that compare phases).
    phase: AtomicU64,
    /// Latencies of every call, per phase, created as phases begin.
    phase_latency: Mutex<Vec<Histogram<u64>>>,
}

impl Tally {
    pub(super) fn new(started: Instant, shards: usize) -> Arc<Tally> {
        Arc::new(Tally {
            started,
            mark: AtomicU64::new(NEVER),
            shards: (0..shards).map(|_| ShardTally::new()).collect(),
            seconds: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
            phase: AtomicU64::new(0),
            phase_latency: Mutex::new(vec![histogram()]),
        })
    }

    /// Microseconds from the drill's start to `at`.
    pub(super) fn at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }

    /// Sets the mark (the fault) to `at`.
    pub(super) fn mark(&self, at: Instant) {
        self.mark.store(self.at(at), Ordering::Relaxed);
    }

    /// Starts phase `phase` (0 at the start): calls that end from now on count in its latencies.
    pub(super) fn set_phase(&self, phase: usize) {
        let mut phases = self.phase_latency.lock().unwrap_or_else(PoisonError::into_inner);
        while phases.len() <= phase {
            phases.push(histogram());
        }
        self.phase.store(phase as u64, Ordering::Relaxed);
    }

    /// A latency quantile over the calls that ended in any of `phases`, in microseconds, and their
    /// count.
    pub(super) fn phase_quantile_us(&self, phases: &[usize], quantile: f64) -> (u64, u64) {
        let recorded = self.phase_latency.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = histogram();
        for h in phases.iter().filter_map(|&p| recorded.get(p)) {
            let _ = all.add(h);
        }
        (all.value_at_quantile(quantile), all.len())
    }

    /// Failed calls whose error starts with `prefix`.
    pub(super) fn errors_starting_with(&self, prefix: &str) -> u64 {
        let errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        errors
            .iter()
            .filter(|(kind, _)| kind.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    }

    fn record(&self, shard: usize, started: Instant, result: Result<(), String>) {
        let phase = self.phase.load(Ordering::Relaxed) as usize;
        let ended = Instant::now();
        let took = (ended.duration_since(started).as_micros() as u64).max(1);
        if let Some(h) = self
            .phase_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(phase)
        {
            let _ = h.record(took);
        }
        let (start, end) = (self.at(started), self.at(ended));
        let mark = self.mark.load(Ordering::Relaxed);
        let s = &self.shards[shard];
        s.longest_us.fetch_max(took, Ordering::Relaxed);
        if mark != NEVER && end > mark {
            s.longest_after_mark_us.fetch_max(took, Ordering::Relaxed);
        }
        let _ = s
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(took);
        let second = (start / 1_000_000) as usize;
        {
            let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
            if seconds.len() <= second {
                seconds.resize(second + 1, vec![(0, 0); self.shards.len()]);
            }
            match result {
                Ok(()) => seconds[second][shard].0 += 1,
                Err(_) => seconds[second][shard].1 += 1,
            }
        }
        match result {
            Ok(()) => {
                s.ok.fetch_add(1, Ordering::Relaxed);
                if mark != NEVER && start > mark {
                    s.first_ok_after_mark.fetch_min(start, Ordering::Relaxed);
                }
            }
            Err(error) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                s.failed_min_us.fetch_min(took, Ordering::Relaxed);
                s.failed_max_us.fetch_max(took, Ordering::Relaxed);
                s.last_fail_end.fetch_max(end, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
                let kind = error_kind(&error);
                if errors.len() < ERROR_KINDS || errors.contains_key(&kind) {
                    *errors.entry(kind).or_default() += 1;
                } else {
                    *errors.entry("(other errors)".into()).or_default() += 1;
                }
            }
        }
    }

    fn sum(&self, shards: impl Fn(usize) -> bool, field: impl Fn(&ShardTally) -> u64) -> u64 {
        self.shards
            .iter()
            .enumerate()
            .filter(|(i, _)| shards(*i))
            .map(|(_, s)| field(s))
            .sum()
    }

    fn max(&self, shards: impl Fn(usize) -> bool, field: impl Fn(&ShardTally) -> u64) -> u64 {
        self.shards
            .iter()
            .enumerate()
            .filter(|(i, _)| shards(*i))
            .map(|(_, s)| field(s))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn ok(&self) -> u64 {
        self.sum(|_| true, |s| s.ok.load(Ordering::Relaxed))
    }

    pub(super) fn failed(&self) -> u64 {
        self.sum(|_| true, |s| s.failed.load(Ordering::Relaxed))
    }

    /// Failed calls on `shard`.
    pub(super) fn failed_in(&self, shard: usize) -> u64 {
        self.sum(|i| i == shard, |s| s.failed.load(Ordering::Relaxed))
    }

    /// Failed calls on every shard but `shard`.
    pub(super) fn failed_except(&self, shard: usize) -> u64 {
        self.sum(|i| i != shard, |s| s.failed.load(Ordering::Relaxed))
    }

    /// The longest call, in microseconds.
    pub(super) fn longest_us(&self) -> u64 {
        self.max(|_| true, |s| s.longest_us.load(Ordering::Relaxed))
    }

    /// The longest call on `shard` that ended after the mark, in microseconds.
    pub(super) fn longest_after_mark_in(&self, shard: usize) -> u64 {
        self.max(
            |i| i == shard,
            |s| s.longest_after_mark_us.load(Ordering::Relaxed),
        )
    }

    /// The shortest and longest failed call, in microseconds.
    pub(super) fn failed_range_us(&self) -> Option<(u64, u64)> {
        let min = self
            .shards
            .iter()
            .map(|s| s.failed_min_us.load(Ordering::Relaxed))
            .min()
            .unwrap_or(NEVER);
        (min != NEVER).then(|| {
            (
                min,
                self.max(|_| true, |s| s.failed_max_us.load(Ordering::Relaxed)),
            )
        })
    }

    /// When the first successful call on `shard` that started after the mark started.
    pub(super) fn first_ok_after_mark(&self, shard: usize) -> Option<u64> {
        let at = self.shards[shard].first_ok_after_mark.load(Ordering::Relaxed);
        (at != NEVER).then_some(at)
    }

    /// When every shard had served a call started after the mark: the latest of their first successes.
    pub(super) fn all_served_after_mark(&self) -> Option<u64> {
        (0..self.shards.len())
            .map(|i| self.first_ok_after_mark(i))
            .collect::<Option<Vec<u64>>>()
            .and_then(|firsts| firsts.into_iter().max())
    }

    /// When the last failed call ended, if any failed.
    pub(super) fn last_failure_end(&self) -> Option<u64> {
        let at = self.max(|_| true, |s| s.last_fail_end.load(Ordering::Relaxed));
        (self.failed() > 0).then_some(at)
    }

    /// A latency quantile over every call, in microseconds.
    pub(super) fn quantile_us(&self, quantile: f64) -> u64 {
        let mut all = histogram();
        for s in &self.shards {
            let _ = all.add(&*s.latency.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all.value_at_quantile(quantile)
    }

    /// The fewest calls completed in one whole second, ignoring the first and last (partial) seconds.
    pub(super) fn slowest_second(&self) -> Option<u32> {
        let seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let whole = seconds.len().checked_sub(1)?;
        seconds
            .get(1..whole)?
            .iter()
            .map(|shards| shards.iter().map(|(ok, failed)| ok + failed).sum())
            .min()
    }

    /// Successful calls per second on the shards `shards` accepts, over the whole seconds between
    /// `from` and `to` (µs since the start); `None` if no whole second lies between them.
    pub(super) fn ok_per_second(&self, shards: impl Fn(usize) -> bool, from: u64, to: u64) -> Option<f64> {
        let first = from.div_ceil(1_000_000) as usize;
        let end = (to / 1_000_000) as usize;
        if end <= first {
            return None;
        }
        let seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let ok: u64 = (first..end)
            .filter_map(|second| seconds.get(second))
            .flat_map(|per_shard| per_shard.iter().enumerate())
            .filter(|(shard, _)| shards(*shard))
            .map(|(_, (ok, _))| u64::from(*ok))
            .sum();
        Some(ok as f64 / (end - first) as f64)
    }

    /// Whether the mark was passed, every shard served a call started after it, and no call failed
    /// within `quiet` before `now`.
    pub(super) fn recovered(&self, now: Instant, quiet: Duration) -> bool {
        let now = self.at(now);
        self.all_served_after_mark().is_some()
            && self
                .last_failure_end()
                .is_none_or(|end| now.saturating_sub(end) >= quiet.as_micros() as u64)
    }

    /// The most frequent error kinds, `count× text`, most frequent first.
    pub(super) fn top_errors(&self, n: usize) -> Vec<String> {
        let errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kinds: Vec<(&String, &u64)> = errors.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        kinds
            .into_iter()
            .take(n)
            .map(|(kind, count)| format!("{count}× {kind}"))
            .collect()
    }
}

/// An error's text with numbers (ports, slots, durations) folded, so that the same failure on different
/// nodes counts as one kind.
pub(super) fn error_kind(error: &str) -> String {
    let mut kind = String::with_capacity(error.len().min(120));
    for c in error.chars() {
        if c.is_ascii_digit() {
            if !kind.ends_with('#') {
                kind.push('#');
            }
        } else {
            kind.push(c);
        }
        if kind.chars().count() >= 110 {
            kind.push('…');
            break;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_kind(error: &str, want: &str) {
        assert_eq!(error_kind(error), want, "{error}");
    }

    #[test]
    fn error_kinds_fold_numbers() {
        check_kind(
            "shard of slot 1234 (slots 0-5460) has no reachable primary: 127.0.0.1:30001 is down",
            "shard of slot # (slots #-#) has no reachable primary: #.#.#.#:# is down",
        );
        check_kind(
            "Timeout Error: Request timed out.",
            "Timeout Error: Request timed out.",
        );
        check_kind("", "");
        assert!(error_kind(&"a".repeat(500)).ends_with('…'));
    }

    fn check_tally(
        calls: &[(usize, u64, Result<(), String>)],
        mark_ms: u64,
        want: (u64, u64, u64, Option<u64>),
    ) {
        let started = Instant::now() - Duration::from_secs(10);
        let tally = Tally::new(started, 3);
        tally.mark(started + Duration::from_millis(mark_ms));
        for (shard, start_ms, result) in calls {
            tally.record(*shard, started + Duration::from_millis(*start_ms), result.clone());
        }
        let got = (
            tally.ok(),
            tally.failed_in(0),
            tally.failed_except(0),
            tally.first_ok_after_mark(0).map(|us| us / 1000),
        );
        assert_eq!(got, want, "{calls:?}");
    }

    #[test]
    fn tallies_count_per_shard_and_around_the_mark() {
        let fail = || Err("boom".to_string());
        check_tally(&[(0, 100, Ok(())), (1, 200, Ok(()))], 5_000, (2, 0, 0, None));
        check_tally(
            &[
                (0, 100, Ok(())),
                (0, 6_000, fail()),
                (0, 7_000, Ok(())),
                (0, 8_000, Ok(())),
            ],
            5_000,
            (3, 1, 0, Some(7_000)),
        );
        check_tally(&[(1, 6_000, fail()), (2, 6_500, fail())], 5_000, (0, 0, 2, None));
    }

    #[test]
    fn recovery_needs_every_shard_and_a_quiet_spell() {
        let started = Instant::now() - Duration::from_secs(10);
        let tally = Tally::new(started, 2);
        tally.mark(started + Duration::from_secs(1));
        tally.record(0, started + Duration::from_secs(2), Ok(()));
        assert!(
            !tally.recovered(Instant::now(), Duration::ZERO),
            "shard 1 never served"
        );
        tally.record(1, started + Duration::from_secs(3), Ok(()));
        assert!(tally.recovered(Instant::now(), Duration::from_secs(1)));
        tally.record(1, Instant::now(), Err("x".into()));
        assert!(
            !tally.recovered(Instant::now(), Duration::from_secs(1)),
            "a failure just now"
        );
        assert_eq!(tally.top_errors(3), vec!["1× x".to_string()]);
    }
}
