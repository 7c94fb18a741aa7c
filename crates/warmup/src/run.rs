//! The warm-up itself: read a window, plan it, write it phase by phase with bounded parallelism,
//! re-plan when the topology changes, retry what failed transiently, then validate and maybe roll back.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, Topology};
use consistency::{Version, Versioned};
use futures::StreamExt;
use sharding::key_slot;
use tokio::sync::watch;
use tracing::Instrument;

use crate::Error;
use crate::config::WarmupConfig;
use crate::entry::Payload;
use crate::plan::{Plan, Slotted, group_by_shard, jittered, plan, sampled};
use crate::progress::{BatchCounts, Callback, Phase, Progress, Tracker};
use crate::report::{KeyFailure, Rejected, Report, RollbackReport, UndoReport};
use crate::source::{Source, Window};
use crate::undo::{
    Captured, Previous, RECORD_OVERHEAD, Restore, UndoLog, Undone, capture, capture_run, roll_back,
};
use crate::validate::{merge, validate};
use crate::write::{Expect, Io, Outcome, Writer, Wrote, batch_versions, write_batch};

/// Warms a cluster: see the [crate documentation](crate).
///
/// Cheap to clone. Runs one warm-up at a time per handle: [`Warmup::subscribe`] follows whichever
/// run is going on.
#[derive(Clone)]
pub struct Warmup {
    client: ClusterClient,
    writer: Writer,
    config: WarmupConfig,
    callback: Option<Callback>,
    progress: Arc<watch::Sender<Progress>>,
}

impl fmt::Debug for Warmup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmup")
            .field(
                "writes",
                &match self.writer {
                    Writer::Plain => "plain",
                    Writer::Versioned(_) => "versioned",
                },
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Warmup {
    /// A warm-up writing plain values through `client`; fails if `config` is out of range.
    pub fn new(client: ClusterClient, config: WarmupConfig) -> Result<Warmup, Error> {
        config.validate()?;
        Ok(Warmup {
            client,
            writer: Writer::Plain,
            config,
            callback: None,
            progress: Arc::new(watch::channel(Progress::default()).0),
        })
    }

    /// A warm-up writing string values through `consistency`'s versioned last-write-wins set, so that
    /// it never overwrites a newer value (a write that finds one is skipped). `DUMP` payloads are
    /// still restored as they are.
    pub fn versioned(store: Versioned, config: WarmupConfig) -> Result<Warmup, Error> {
        let mut warmup = Warmup::new(store.client().clone(), config)?;
        warmup.writer = Writer::Versioned(store);
        Ok(warmup)
    }

    /// Calls `callback` with progress as the warm-up goes (at most every
    /// [`WarmupConfig::progress_interval`], and at every phase change). Keep it quick: it runs on the
    /// warm-up's tasks.
    pub fn on_progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Warmup {
        self.callback = Some(Arc::new(callback));
        self
    }

    /// Progress as a `watch` channel: always the latest snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The settings.
    pub fn config(&self) -> &WarmupConfig {
        &self.config
    }

    /// Reads `source` to its end and writes it; then validates and, past the threshold, rolls back.
    ///
    /// Fails only if the source cannot be opened; everything after that is in the [`Report`].
    pub async fn run(&self, source: Source) -> Result<Report, Error> {
        let span = tracing::debug_span!("warmup.run", source = %source.name());
        self.run_inner(source).instrument(span).await
    }

    async fn run_inner(&self, mut source: Source) -> Result<Report, Error> {
        let started = Instant::now();
        source.open().await?;
        let run = Run::new(self);
        run.tracker.set_phase(Phase::Starting);
        let mut read = 0u64;
        let mut source_error = None;
        let mut validation = None;
        loop {
            let mut window = source.next_window(self.config.window_entries).await;
            read += window.read();
            run.admit(&mut window);
            let mut planned = plan(std::mem::take(&mut window.entries));
            run.tracker.skipped_unplanned(planned.replaced);
            run.tracker
                .planned(planned.phases.iter().map(|(_, e)| e.len() as u64).sum());
            if window.done {
                run.tracker.source_done();
            }
            for (priority, indices) in std::mem::take(&mut planned.phases) {
                run.tracker.set_phase(Phase::Writing(priority));
                run.write_phase(&planned, indices)
                    .instrument(tracing::debug_span!("warmup.write", ?priority))
                    .await;
            }
            // Each window is validated as soon as it is written, while its values are still in
            // memory anyway: what validation holds is bounded by the window, not the source.
            if let Some(config) = &self.config.validation {
                run.tracker.set_phase(Phase::Validating);
                let checks = run.take_checks();
                let report = validate(
                    &run.io,
                    config,
                    checks,
                    self.config.shard_parallelism,
                    self.config.max_reported_keys,
                    &run.tracker,
                )
                .instrument(tracing::debug_span!("warmup.validate"))
                .await;
                validation = Some(match validation.take() {
                    Some(so_far) => merge(so_far, report, self.config.max_reported_keys),
                    None => report,
                });
            }
            drop(planned);
            if let Some(error) = window.error {
                tracing::warn!(source = %source.name(), %error, "the warm-up source failed");
                source_error = Some(error);
            }
            if window.done {
                break;
            }
        }
        // Time spent writing: the windows' validations are not part of it.
        let write_elapsed = started
            .elapsed()
            .saturating_sub(validation.as_ref().map_or(Duration::ZERO, |v| v.elapsed));

        let counts = run.tracker.snapshot();
        let bad_share = bad_share(
            counts.written,
            counts.failed,
            validation.as_ref().map(|v| v.bad_share()),
        );
        let rollback = match self.config.rollback_threshold {
            Some(threshold) if bad_share > threshold => {
                run.tracker.set_phase(Phase::RollingBack);
                let reason = format!(
                    "{:.2}% of the entries are bad (failed writes or bad read-backs), above the threshold of {:.2}%",
                    bad_share * 100.0,
                    threshold * 100.0
                );
                tracing::warn!(%reason, "rolling the warm-up back");
                Some(
                    run.rollback(reason)
                        .instrument(tracing::debug_span!("warmup.rollback"))
                        .await,
                )
            }
            _ => None,
        };
        run.tracker.set_phase(Phase::Done);
        let counts = run.tracker.snapshot();
        let report = Report {
            read,
            written: counts.written,
            skipped: counts.skipped,
            failed: counts.failed,
            rejected: counts.rejected,
            bytes_written: counts.bytes_written,
            failures: std::mem::take(&mut *lock(&run.failures)),
            rejections: {
                // Rejected lines come from two places (the parser, the size check): report them in
                // source order.
                let mut rejections = std::mem::take(&mut *lock(&run.rejections));
                rejections.sort_by_key(|r| r.line.unwrap_or(u64::MAX));
                rejections
            },
            shards: run.tracker.shards(),
            replans: run.replans.load(Ordering::Relaxed),
            retry_rounds: run.retry_rounds.load(Ordering::Relaxed),
            validation,
            bad_share,
            rollback,
            undo: run.undo.as_ref().map(|undo| UndoReport {
                budget_bytes: undo.budget.limit() as u64,
                peak_bytes: undo.budget.peak() as u64,
                refused: run.undo_refused.load(Ordering::Relaxed),
                refused_keys: std::mem::take(&mut *lock(&run.undo_refused_keys)),
            }),
            source_error,
            write_elapsed,
            elapsed: started.elapsed(),
        };
        tracing::info!(%report, "warm-up finished");
        Ok(report)
    }
}

/// Failed writes plus written entries extrapolated from the validation sample's bad share, over all
/// entries whose write was attempted.
fn bad_share(written: u64, failed: u64, sample_bad_share: Option<f64>) -> f64 {
    let attempted = written + failed;
    if attempted == 0 {
        return 0.0;
    }
    let bad_written = sample_bad_share.unwrap_or(0.0) * written as f64;
    (failed as f64 + bad_written) / attempted as f64
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spreads writes so that at most `rate` entries per second start.
struct Pacer {
    rate: f64,
    state: Mutex<(tokio::time::Instant, u64)>,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer {
            rate: f64::from(rate),
            state: Mutex::new((tokio::time::Instant::now(), 0)),
        }
    }

    async fn admit(&self, entries: usize) {
        let at = {
            let mut state = lock(&self.state);
            let at = state.0 + Duration::from_secs_f64(state.1 as f64 / self.rate);
            state.1 += entries as u64;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What one shard's share of a round left to do (entry indices).
#[derive(Default)]
struct ShardRound {
    /// Batches not started because the topology changed: planned again.
    unstarted: Vec<u32>,
    /// Entries whose write failed transiently: retried in the next round.
    transient: Vec<(u32, String)>,
}

/// The state of one run.
struct Run<'a> {
    warmup: &'a Warmup,
    io: Io,
    tracker: Tracker,
    /// Previous states of the touched keys, for the rollback (when rollback is on).
    undo: Option<UndoLog>,
    /// Entries not written because their previous value did not fit in the undo budget.
    undo_refused: AtomicU64,
    undo_refused_keys: Mutex<Vec<Bytes>>,
    /// Written entries of the current window to read back (the sample), in write order.
    checks: Option<Mutex<Vec<(u16, Bytes, Expect)>>>,
    failures: Mutex<Vec<KeyFailure>>,
    rejections: Mutex<Vec<Rejected>>,
    pacer: Option<Pacer>,
    replans: AtomicU32,
    retry_rounds: AtomicU32,
}

impl<'a> Run<'a> {
    fn new(warmup: &'a Warmup) -> Run<'a> {
        let config = &warmup.config;
        Run {
            warmup,
            io: Io::new(warmup.client.clone(), config.rollback_threshold.is_some()),
            tracker: Tracker::new(
                warmup.callback.clone(),
                warmup.progress.clone(),
                config.progress_interval,
            ),
            undo: config
                .rollback_threshold
                .map(|_| UndoLog::new(config.undo_budget_bytes)),
            undo_refused: AtomicU64::new(0),
            undo_refused_keys: Mutex::new(Vec::new()),
            checks: config.validation.as_ref().map(|_| Mutex::new(Vec::new())),
            failures: Mutex::new(Vec::new()),
            rejections: Mutex::new(Vec::new()),
            pacer: config.max_entries_per_second.map(Pacer::new),
            replans: AtomicU32::new(0),
            retry_rounds: AtomicU32::new(0),
        }
    }

    fn config(&self) -> &WarmupConfig {
        &self.warmup.config
    }

    fn reject(&self, rejected: Rejected) {
        self.tracker.rejected(1);
        let mut list = lock(&self.rejections);
        if list.len() < self.config().max_reported_keys {
            list.push(rejected);
        }
    }

    fn fail(&self, key: Bytes, error: String) {
        let mut list = lock(&self.failures);
        if list.len() < self.config().max_reported_keys {
            list.push(KeyFailure { key, error });
        }
    }

    /// Refuses the window's entries that are over the size limits (nothing is sent for them), counts
    /// rejected input and vanished keys, applies TTL jitter. Works in place: kept entries do not move.
    fn admit(&self, window: &mut Window) {
        for rejected in std::mem::take(&mut window.rejected) {
            self.reject(rejected);
        }
        self.tracker.skipped_unplanned(window.vanished);
        let limits = self.warmup.client.config().limits();
        // A versioned value carries the envelope's header on top of the caller's bytes.
        let header = match self.warmup.writer {
            Writer::Versioned(_) => consistency::HEADER_LEN,
            Writer::Plain => 0,
        };
        let jitter = self.config().ttl_jitter;
        let lines = std::mem::take(&mut window.lines);
        let mut index = 0;
        window.entries.retain_mut(|entry| {
            let line = lines.get(index).copied();
            index += 1;
            let stored = match entry.payload {
                Payload::Bytes(_) => entry.payload.len() + header,
                Payload::Dump(_) => entry.payload.len(),
            };
            let reason = if entry.key.len() > limits.key_max_bytes {
                Some(format!(
                    "key of {} bytes is over the limit of {} bytes (REDIS_KEY_MAX_BYTES); \
                     shorten the key or raise the limit",
                    entry.key.len(),
                    limits.key_max_bytes
                ))
            } else if stored > limits.value_max_bytes {
                Some(format!(
                    "value of {stored} bytes is over the limit of {} bytes (REDIS_VALUE_MAX_BYTES); \
                     leave the entry out or raise the limit",
                    limits.value_max_bytes
                ))
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    self.reject(Rejected {
                        line,
                        key: Some(entry.key.clone()),
                        reason,
                    });
                    false
                }
                None => {
                    if jitter > 0.0
                        && let Some(ttl) = entry.ttl
                    {
                        entry.ttl = Some(jittered(ttl, &entry.key, jitter));
                    }
                    true
                }
            }
        });
    }

    /// Writes one priority's entries: grouped by shard from the live topology, shards in parallel up
    /// to the limit, batches in flight per shard; re-planned when the topology changes; transient
    /// failures retried after a pause.
    async fn write_phase(&self, plan: &Plan, indices: Vec<u32>) {
        let config = self.config();
        let mut pending = indices;
        let mut round = 0u32;
        let mut first = true;
        while !pending.is_empty() {
            let topology = self.io.client.topology();
            let by_slot = self.io.by_slot;
            let (groups, unroutable) = group_by_shard(pending, &plan.slots, by_slot, |index| {
                let shard = if by_slot {
                    topology.shard_for_slot(plan.slots[index as usize])
                } else {
                    topology.shard_for_key(&plan.entries[index as usize].key)
                };
                shard.map(|shard| shard.primary.clone())
            });
            if first {
                for (primary, indices) in &groups {
                    self.tracker.planned_on(primary, indices.len() as u64);
                }
                first = false;
            }
            let changed = AtomicBool::new(false);
            let shards = futures::stream::iter(groups)
                .map(|(primary, indices)| self.write_shard(plan, &topology, &changed, primary, indices))
                .buffer_unordered(config.shard_parallelism)
                .collect::<Vec<ShardRound>>()
                .await;
            let mut next = Vec::new();
            let mut transient: Vec<(u32, String)> = unroutable
                .into_iter()
                .map(|index| {
                    let slot = plan.slots[index as usize];
                    (
                        index,
                        format!("no shard serves slot {slot}; the cluster has uncovered slots"),
                    )
                })
                .collect();
            for shard in shards {
                next.extend(shard.unstarted);
                transient.extend(shard.transient);
            }
            if !next.is_empty() {
                self.replans.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    entries = next.len(),
                    "the topology changed; planning the rest again"
                );
            }
            if !transient.is_empty() {
                if round < config.retries {
                    round += 1;
                    self.retry_rounds.fetch_add(1, Ordering::Relaxed);
                    let pause = retry_pause(config.retry_delay, round);
                    tracing::debug!(
                        entries = transient.len(),
                        ?pause,
                        round,
                        "retrying transient failures"
                    );
                    tokio::time::sleep(pause).await;
                    if let Err(error) = self.io.client.refresh_topology().await {
                        tracing::debug!(%error, "topology refresh before a retry failed");
                    }
                    next.extend(transient.into_iter().map(|(index, _)| index));
                } else {
                    self.tracker.failed(transient.len() as u64);
                    for (index, error) in transient {
                        self.fail(plan.entries[index as usize].key.clone(), error);
                    }
                }
            }
            // Keep slot order, so that batched writes stay large after regrouping.
            next.sort_by_key(|&index| plan.slots[index as usize]);
            pending = next;
        }
    }

    /// Whether the topology differs from the one the round was planned with.
    fn topology_changed(&self, planned: &Arc<Topology>) -> bool {
        let now = self.io.client.topology();
        !Arc::ptr_eq(&now, planned) && now.shards() != planned.shards()
    }

    async fn write_shard(
        &self,
        plan: &Plan,
        planned: &Arc<Topology>,
        changed: &AtomicBool,
        primary: String,
        indices: Vec<u32>,
    ) -> ShardRound {
        let config = self.config();
        let primary = &primary;
        // Batches are ranges of `indices`; the futures borrow the vector (closures handing out
        // borrowed slices also trip `Send` inference).
        let indices = &indices;
        let ranges = (0..indices.len())
            .step_by(config.batch_size)
            .map(|start| start..(start + config.batch_size).min(indices.len()));
        let results = futures::stream::iter(ranges)
            .map(|range| async move {
                let batch = &indices[range.clone()];
                // The first batch always goes, so that a topology that keeps changing still lets
                // every round make progress.
                if range.start > 0 && (changed.load(Ordering::Relaxed) || self.topology_changed(planned)) {
                    changed.store(true, Ordering::Relaxed);
                    return ShardRound {
                        unstarted: batch.to_vec(),
                        transient: Vec::new(),
                    };
                }
                self.write_one(plan, primary, batch).await
            })
            .buffer_unordered(config.batches_in_flight)
            .collect::<Vec<ShardRound>>()
            .await;
        let mut round = ShardRound::default();
        for result in results {
            round.unstarted.extend(result.unstarted);
            round.transient.extend(result.transient);
        }
        round
    }

    /// Writes one batch (capturing previous values first when rollback is on) and counts it.
    async fn write_one(&self, plan: &Plan, primary: &str, batch: &[u32]) -> ShardRound {
        if let Some(pacer) = &self.pacer {
            pacer.admit(batch.len()).await;
        }
        let mut counts = BatchCounts::default();
        let mut transient = Vec::new();
        let mut ready: Vec<u32> = batch.to_vec();
        // Versions first, capture second, write last: see `write_batch`.
        let versions = batch_versions(&self.warmup.writer, batch.len());
        if let Some(undo) = &self.undo {
            let (failed, refused) = self.capture(plan, primary, undo, batch).await;
            counts.failed_attempts += failed.len() as u64;
            counts.refused += refused.len() as u64;
            if !failed.is_empty() || !refused.is_empty() {
                let unready: std::collections::HashSet<u32> = failed
                    .iter()
                    .map(|(i, _)| *i)
                    .chain(refused.iter().copied())
                    .collect();
                ready.retain(|i| !unready.contains(i));
                transient.extend(failed);
            }
            if !refused.is_empty() {
                self.undo_refused
                    .fetch_add(refused.len() as u64, Ordering::Relaxed);
                let mut keys = lock(&self.undo_refused_keys);
                for &index in &refused {
                    if keys.len() >= self.config().max_reported_keys {
                        break;
                    }
                    keys.push(plan.entries[index as usize].key.clone());
                }
            }
        }
        let items: Vec<Slotted<'_>> = ready.iter().map(|&i| plan.slotted(i)).collect();
        // The versions of the entries still ready (`ready` keeps `batch`'s order), as `items` lists them.
        let versions: Option<Vec<Version>> = versions.map(|all| {
            let mut taken = batch.iter().zip(all);
            ready
                .iter()
                .filter_map(|i| taken.find(|(b, _)| *b == i).map(|(_, v)| v))
                .collect()
        });
        let outcomes = write_batch(
            &self.io,
            &self.warmup.writer,
            primary,
            &items,
            versions.as_deref(),
        )
        .await;
        let sample = self.config().validation.as_ref().map(|v| v.sample_ratio);
        let mut checks = Vec::new();
        for ((&index, item), outcome) in ready.iter().zip(&items).zip(outcomes) {
            let entry = item.entry;
            match outcome {
                Outcome::Written(stored) => {
                    counts.written += 1;
                    counts.bytes += entry.size() as u64;
                    if let Some(undo) = &self.undo {
                        match Wrote::of(entry, &stored) {
                            Some(wrote) => undo.wrote(&entry.key, wrote),
                            // What the key holds now is unknown: the rollback leaves it alone.
                            None => undo.discard_unwritten(&entry.key),
                        }
                    }
                    if sample.is_some_and(|ratio| sampled(&entry.key, ratio)) {
                        checks.push((item.slot, entry.key.clone(), Expect::of(entry, &stored)));
                    }
                }
                Outcome::Skipped => {
                    counts.skipped += 1;
                    self.forget(&entry.key);
                }
                Outcome::Transient(error) => {
                    counts.failed_attempts += 1;
                    transient.push((index, error));
                }
                Outcome::Failed(error) => {
                    counts.failed += 1;
                    counts.failed_attempts += 1;
                    self.forget(&entry.key);
                    self.fail(entry.key.clone(), error);
                }
            }
        }
        if let Some(list) = &self.checks
            && !checks.is_empty()
        {
            lock(list).extend(checks);
        }
        self.tracker.batch(primary, &counts);
        ShardRound {
            unstarted: Vec::new(),
            transient,
        }
    }

    /// A key the warm-up did not write is never rolled back (unless an earlier entry wrote it).
    fn forget(&self, key: &Bytes) {
        if let Some(undo) = &self.undo {
            undo.discard_unwritten(key);
        }
    }

    /// Captures the previous state of the batch's keys not captured yet, within the undo budget.
    /// Returns the entries whose capture failed (they must not be written now, since their rollback
    /// would be impossible, and are retried later) and the entries whose previous value does not fit
    /// in the budget (never written: the warm-up does not overwrite what it could not put back).
    async fn capture(
        &self,
        plan: &Plan,
        primary: &str,
        undo: &UndoLog,
        batch: &[u32],
    ) -> (Vec<(u32, String)>, Vec<u32>) {
        let keys: Vec<&Bytes> = batch.iter().map(|&i| &plan.entries[i as usize].key).collect();
        let missing = undo.missing(&keys);
        let mut refused = Vec::new();
        // Each key's own cost first: a key that cannot even be listed is refused before any call.
        let mut wanted: Vec<u32> = Vec::new();
        for (&index, missing) in batch.iter().zip(missing) {
            if !missing {
                continue;
            }
            let cost = plan.entries[index as usize].key.len() + RECORD_OVERHEAD;
            if undo.budget.try_reserve(cost) {
                wanted.push(index);
            } else {
                refused.push(index);
            }
        }
        if wanted.is_empty() {
            return (Vec::new(), refused);
        }
        let config = self.config();
        // Concurrent batches share the budget: each reserves a share of it for the payloads in flight,
        // and all shares together are a quarter of it, so replies in flight rarely crowd out what is
        // kept. A payload larger than its share is read again alone, with its size reserved.
        let batches = config.shard_parallelism.saturating_mul(config.batches_in_flight);
        let share = undo.budget.limit() / batches.saturating_mul(4).max(1);
        let slots: Vec<u16> = wanted.iter().map(|&i| plan.slots[i as usize]).collect();
        let keys: Vec<Bytes> = wanted
            .iter()
            .map(|&i| plan.entries[i as usize].key.clone())
            .collect();
        let results = capture(&self.io, primary, &slots, &keys, &undo.budget, share).await;
        let mut failed = Vec::new();
        for ((index, key), result) in wanted.into_iter().zip(keys).zip(results) {
            let key_cost = key.len() + RECORD_OVERHEAD;
            let result = match result {
                // Too big for the call's share: alone, with exactly its size reserved, if it fits.
                Ok(Captured::TooBig(size)) if undo.budget.try_reserve(size) => {
                    let (mut results, used) =
                        capture_run(&self.io, primary, std::slice::from_ref(&key), size).await;
                    undo.budget.release(size - used.min(size));
                    results.pop().unwrap_or(Ok(Captured::TooBig(size)))
                }
                other => other,
            };
            match result {
                Ok(Captured::Previous(previous)) => {
                    let cost = key_cost + previous.payload_len();
                    undo.insert(key, previous, cost);
                }
                Ok(Captured::TooBig(_)) => {
                    undo.budget.release(key_cost);
                    refused.push(index);
                }
                Err(error) => {
                    undo.budget.release(key_cost);
                    failed.push((
                        index,
                        format!(
                            "reading the previous value for rollback failed, so the key was not written: {error}"
                        ),
                    ));
                }
            }
        }
        if !refused.is_empty() {
            tracing::warn!(
                entries = refused.len(),
                budget_bytes = undo.budget.limit(),
                "previous values do not fit in the undo budget; those entries are not written"
            );
        }
        (failed, refused)
    }

    /// The written entries to validate, one per key (the last write wins), in slot order.
    fn take_checks(&self) -> Vec<(u16, Bytes, Expect)> {
        let Some(list) = &self.checks else {
            return Vec::new();
        };
        let all = std::mem::take(&mut *lock(list));
        let mut last: HashMap<Bytes, (u16, Expect)> = HashMap::with_capacity(all.len());
        for (slot, key, expect) in all {
            last.insert(key, (slot, expect));
        }
        let mut checks: Vec<(u16, Bytes, Expect)> = last
            .into_iter()
            .map(|(key, (slot, expect))| (slot, key, expect))
            .collect();
        checks.sort_by_key(|(slot, _, _)| *slot);
        checks
    }

    /// Puts every key the warm-up wrote back as it was before: its previous value and remaining TTL,
    /// or deleted if it did not exist, but only if it still holds what the warm-up wrote (decided on
    /// the server, per key); a key someone changed since is left alone and counted.
    async fn rollback(&self, reason: String) -> RollbackReport {
        let started = Instant::now();
        let config = self.config();
        let mut report = RollbackReport {
            reason,
            ..RollbackReport::default()
        };
        let mut pending: Vec<(u16, Bytes, Previous, Wrote)> = self
            .undo
            .as_ref()
            .map(UndoLog::take_written)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, previous, wrote)| (key_slot(&key), key, previous, wrote))
            .collect();
        let mut round = 0u32;
        while !pending.is_empty() {
            pending.sort_by_key(|(slot, ..)| *slot);
            let topology = self.io.client.topology();
            let mut by_shard: HashMap<String, Vec<(u16, Bytes, Previous, Wrote)>> = HashMap::new();
            let mut retry = Vec::new();
            for (slot, key, previous, wrote) in pending {
                match topology.shard_for_key(&key) {
                    Some(shard) => by_shard
                        .entry(shard.primary.clone())
                        .or_default()
                        .push((slot, key, previous, wrote)),
                    None => retry.push((
                        (slot, key, previous, wrote),
                        "no shard serves the key's slot".to_string(),
                    )),
                }
            }
            let chunks: Vec<Vec<(u16, Bytes, Previous, Wrote)>> = by_shard
                .into_values()
                .flat_map(|keys| {
                    keys.chunks(config.batch_size)
                        .map(<[(u16, Bytes, Previous, Wrote)]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .collect();
            let results = futures::stream::iter(chunks)
                .map(|chunk| async move {
                    // The remaining TTL is worked out when the key is put back.
                    let now = Instant::now();
                    let actions: Vec<(u16, Bytes, Wrote, Restore)> = chunk
                        .iter()
                        .map(|(slot, k, p, w)| (*slot, k.clone(), *w, p.restore_at(now)))
                        .collect();
                    let results = roll_back(&self.io, &actions).await;
                    (chunk, actions, results)
                })
                .buffer_unordered(config.shard_parallelism * config.batches_in_flight)
                .collect::<Vec<_>>()
                .await;
            for (chunk, actions, results) in results {
                for ((item, (_, _, _, action)), result) in chunk.into_iter().zip(actions).zip(results) {
                    if matches!(result, Ok(Undone::Done))
                        && let (Writer::Versioned(store), Some(version)) =
                            (&self.warmup.writer, item.3.version)
                        && let Some(journal) = store.journal()
                    {
                        // The key holds its earlier state again on purpose: failover repair must
                        // not write the warm-up's value back.
                        journal.forget(&item.1, version);
                    }
                    match (result, action) {
                        (Ok(Undone::Done), Restore::Delete) => report.deleted += 1,
                        (Ok(Undone::Done), Restore::Put { .. }) => report.restored += 1,
                        (Ok(Undone::Changed), _) => {
                            report.skipped_changed += 1;
                            if report.changed_keys.len() < config.max_reported_keys {
                                report.changed_keys.push(item.1);
                            }
                        }
                        (Err(Outcome::Failed(error)), _) => {
                            report.failed += 1;
                            if report.failures.len() < config.max_reported_keys {
                                report.failures.push(KeyFailure { key: item.1, error });
                            }
                        }
                        (Err(Outcome::Transient(error)), _) => retry.push((item, error)),
                        (Err(other), _) => retry.push((item, format!("{other:?}"))),
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            if round >= config.retries {
                for ((_, key, _, _), error) in retry {
                    report.failed += 1;
                    if report.failures.len() < config.max_reported_keys {
                        report.failures.push(KeyFailure { key, error });
                    }
                }
                break;
            }
            round += 1;
            tokio::time::sleep(retry_pause(config.retry_delay, round)).await;
            let _ = self.io.client.refresh_topology().await;
            pending = retry.into_iter().map(|(item, _)| item).collect();
        }
        if report.skipped_changed > 0 {
            tracing::info!(
                keys = report.skipped_changed,
                "keys changed by other clients since the warm-up wrote them were left alone"
            );
        }
        report.elapsed = started.elapsed();
        report
    }
}

/// The pause before retry round `round` (from 1): `delay` doubled each round, at most
/// [`MAX_RETRY_PAUSE`], without overflow whatever `delay` and `round` are.
pub(crate) fn retry_pause(delay: Duration, round: u32) -> Duration {
    cluster_config::Backoff::new(delay, 2, MAX_RETRY_PAUSE).delay(round)
}

/// The longest pause between two retry rounds.
pub(crate) const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    fn a_run_can_be_spawned(warmup: &Warmup) {
        // Compile-time: the future of a run is `Send`, so that callers can `tokio::spawn` it.
        let run = warmup.run(Source::entries(Vec::new()));
        assert_send(&run);
    }

    #[test]
    fn bad_share_adds_failed_writes_and_extrapolated_bad_reads() {
        let check = |written: u64, failed: u64, sample: Option<f64>, want: f64| {
            let got = bad_share(written, failed, sample);
            assert!(
                (got - want).abs() < 1e-9,
                "{written} {failed} {sample:?}: {got} != {want}"
            );
        };
        check(0, 0, None, 0.0);
        check(100, 0, None, 0.0);
        check(90, 10, None, 0.1);
        check(100, 0, Some(0.05), 0.05);
        check(90, 10, Some(0.1), 0.19);
        check(0, 5, Some(1.0), 1.0);
    }

    #[test]
    fn retry_pauses_double_and_stay_bounded() {
        let check = |delay: Duration, round: u32, want: Duration| {
            assert_eq!(retry_pause(delay, round), want, "{delay:?} round {round}");
        };
        check(Duration::from_millis(100), 1, Duration::from_millis(100));
        check(Duration::from_millis(100), 3, Duration::from_millis(400));
        check(Duration::from_millis(100), 100, MAX_RETRY_PAUSE);
        check(Duration::ZERO, 50, Duration::ZERO);
        check(Duration::MAX, 1, MAX_RETRY_PAUSE);
        check(Duration::MAX, u32::MAX, MAX_RETRY_PAUSE);
        check(Duration::from_secs(60), 0, MAX_RETRY_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spreads_entries_over_time() {
        let pacer = Pacer::new(1000);
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            pacer.admit(500).await;
        }
        // 2,000 entries were admitted before the fifth batch of 500 could start: 2 s at 1,000/s.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1990) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
    }
}
