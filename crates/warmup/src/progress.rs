//! Progress as the warm-up goes: counts, bytes, rate, ETA and per-shard figures, through a callback
//! and a `tokio::sync::watch` channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::entry::Priority;
use crate::report::{ShardCounts, per_second};

/// What the warm-up is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Phase {
    /// Not started, or reading the source.
    #[default]
    Starting,
    /// Writing the entries of one priority.
    Writing(Priority),
    /// Reading the written entries back from replicas.
    Validating,
    /// Restoring what was there before.
    RollingBack,
    /// Finished.
    Done,
}

/// A snapshot of a running warm-up.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// What it is doing.
    pub phase: Phase,
    /// Entries planned so far (read, deduplicated and within the size limits).
    pub planned: u64,
    /// Whether the source has been read to its end (then `planned` is the total).
    pub source_done: bool,
    /// Entries written.
    pub written: u64,
    /// Entries not written on purpose (see [`Report::skipped`](crate::Report::skipped)).
    pub skipped: u64,
    /// Entries whose write failed after every retry.
    pub failed: u64,
    /// Input refused before anything was sent.
    pub rejected: u64,
    /// Key and value bytes written.
    pub bytes_written: u64,
    /// Copies read back so far during validation.
    pub validated: u64,
    /// Time since the warm-up started.
    pub elapsed: Duration,
    /// Entries written per second since the first write.
    pub entries_per_second: f64,
    /// Bytes written per second since the first write.
    pub bytes_per_second: f64,
    /// Time left to write the entries planned so far, at the current rate.
    pub eta: Option<Duration>,
    /// Per-shard counts, by primary.
    pub shards: Vec<ShardCounts>,
}

/// A progress callback.
pub(crate) type Callback = Arc<dyn Fn(&Progress) + Send + Sync>;

#[derive(Default)]
struct State {
    phase: Phase,
    planned: u64,
    source_done: bool,
    written: u64,
    skipped: u64,
    failed: u64,
    rejected: u64,
    bytes: u64,
    validated: u64,
    /// Planned entries that reached an outcome (written, skipped as stale, failed).
    settled: u64,
    shards: BTreeMap<String, ShardCounts>,
    first_write: Option<Instant>,
    last_emit: Option<Instant>,
}

/// Counts of one run, and where they are sent.
pub(crate) struct Tracker {
    started: Instant,
    state: Mutex<State>,
    callback: Option<Callback>,
    watch: Arc<watch::Sender<Progress>>,
    interval: Duration,
}

impl Tracker {
    pub(crate) fn new(
        callback: Option<Callback>,
        watch: Arc<watch::Sender<Progress>>,
        interval: Duration,
    ) -> Tracker {
        Tracker {
            started: Instant::now(),
            state: Mutex::new(State::default()),
            callback,
            watch,
            interval,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    fn shard<'a>(state: &'a mut State, primary: &str) -> &'a mut ShardCounts {
        state
            .shards
            .entry(primary.to_string())
            .or_insert_with(|| ShardCounts {
                primary: primary.to_string(),
                ..ShardCounts::default()
            })
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.with(|s| s.phase = phase);
        self.emit(true);
    }

    pub(crate) fn source_done(&self) {
        self.with(|s| s.source_done = true);
    }

    pub(crate) fn planned(&self, entries: u64) {
        self.with(|s| s.planned += entries);
    }

    pub(crate) fn planned_on(&self, primary: &str, entries: u64) {
        self.with(|s| Self::shard(s, primary).planned += entries);
    }

    pub(crate) fn rejected(&self, entries: u64) {
        self.with(|s| s.rejected += entries);
    }

    /// Skipped before planning (replaced by a later entry, vanished from the source).
    pub(crate) fn skipped_unplanned(&self, entries: u64) {
        self.with(|s| s.skipped += entries);
    }

    /// The outcome of one batch on one shard.
    pub(crate) fn batch(&self, primary: &str, outcome: &BatchCounts) {
        let now = Instant::now();
        self.with(|s| {
            s.first_write.get_or_insert(now);
            s.written += outcome.written;
            s.skipped += outcome.skipped;
            s.failed += outcome.failed;
            s.bytes += outcome.bytes;
            s.settled += outcome.written + outcome.skipped + outcome.failed + outcome.refused;
            let shard = Self::shard(s, primary);
            shard.written += outcome.written;
            shard.bytes += outcome.bytes;
            shard.failed_attempts += outcome.failed_attempts;
        });
        self.emit(false);
    }

    /// Entries that failed for good outside a batch (no shard served them at the last retry).
    pub(crate) fn failed(&self, entries: u64) {
        self.with(|s| {
            s.failed += entries;
            s.settled += entries;
        });
    }

    pub(crate) fn validated(&self, copies: u64) {
        self.with(|s| s.validated += copies);
        self.emit(false);
    }

    pub(crate) fn shards(&self) -> Vec<ShardCounts> {
        self.with(|s| s.shards.values().cloned().collect())
    }

    pub(crate) fn snapshot(&self) -> Progress {
        let now = Instant::now();
        self.with(|s| snapshot(s, self.started, now))
    }

    /// Sends a snapshot, unless one went out less than the interval ago (`force` sends anyway).
    pub(crate) fn emit(&self, force: bool) {
        let now = Instant::now();
        let progress = self.with(|s| {
            if !force
                && s.last_emit
                    .is_some_and(|last| now.duration_since(last) < self.interval)
            {
                return None;
            }
            s.last_emit = Some(now);
            Some(snapshot(s, self.started, now))
        });
        if let Some(progress) = progress {
            crate::telemetry::record_progress(&progress);
            if let Some(callback) = &self.callback {
                callback(&progress);
            }
            self.watch.send_replace(progress);
        }
    }
}

fn snapshot(s: &State, started: Instant, now: Instant) -> Progress {
    let writing = s.first_write.map(|t| now.duration_since(t)).unwrap_or_default();
    let rate = per_second(s.settled, writing);
    Progress {
        phase: s.phase,
        planned: s.planned,
        source_done: s.source_done,
        written: s.written,
        skipped: s.skipped,
        failed: s.failed,
        rejected: s.rejected,
        bytes_written: s.bytes,
        validated: s.validated,
        elapsed: now.duration_since(started),
        entries_per_second: per_second(s.written, writing),
        bytes_per_second: per_second(s.bytes, writing),
        eta: eta(s.planned, s.settled, rate),
        shards: s.shards.values().cloned().collect(),
    }
}

/// Time left for `planned - settled` entries at `rate` entries per second.
fn eta(planned: u64, settled: u64, rate: f64) -> Option<Duration> {
    let left = planned.saturating_sub(settled);
    if left == 0 {
        return Some(Duration::ZERO);
    }
    (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchCounts {
    pub(crate) written: u64,
    pub(crate) skipped: u64,
    /// Entries that failed for good in this batch.
    pub(crate) failed: u64,
    /// Entries whose attempt failed (some retried later).
    pub(crate) failed_attempts: u64,
    /// Entries not written because their previous value did not fit in the undo budget.
    pub(crate) refused: u64,
    pub(crate) bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_from_rate() {
        let check = |planned: u64, settled: u64, rate: f64, want: Option<Duration>| {
            assert_eq!(eta(planned, settled, rate), want, "{planned} {settled} {rate}");
        };
        check(100, 100, 0.0, Some(Duration::ZERO));
        check(100, 0, 0.0, None);
        check(1000, 500, 100.0, Some(Duration::from_secs(5)));
        check(10, 20, 5.0, Some(Duration::ZERO));
    }

    #[test]
    fn any_progress_interval_works_from_zero_to_max() {
        let updates = |interval: Duration| {
            let (tx, _rx) = watch::channel(Progress::default());
            let seen = Arc::new(Mutex::new(0usize));
            let sink = seen.clone();
            let callback: Callback = Arc::new(move |_: &Progress| *sink.lock().unwrap() += 1);
            let tracker = Tracker::new(Some(callback), Arc::new(tx), interval);
            tracker.set_phase(Phase::Writing(Priority::Normal));
            for _ in 0..10 {
                tracker.batch("n1", &BatchCounts::default());
            }
            tracker.set_phase(Phase::Done);
            *seen.lock().unwrap()
        };
        // Zero reports every batch; MAX only the phase changes.
        assert_eq!(updates(Duration::ZERO), 12);
        assert_eq!(updates(Duration::MAX), 2);
    }

    #[test]
    fn counts_reach_callback_and_watch() {
        let (tx, rx) = watch::channel(Progress::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let callback: Callback = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.clone()));
        let tracker = Tracker::new(Some(callback), Arc::new(tx), Duration::from_secs(3600));
        tracker.planned(10);
        tracker.planned_on("n1", 10);
        tracker.set_phase(Phase::Writing(Priority::Critical));
        let batch = BatchCounts {
            written: 4,
            skipped: 1,
            failed: 1,
            failed_attempts: 2,
            bytes: 40,
            refused: 0,
        };
        tracker.batch("n1", &batch);
        // Within the interval, only forced updates go out.
        assert_eq!(seen.lock().unwrap().len(), 1);
        tracker.set_phase(Phase::Done);
        let last = rx.borrow().clone();
        assert_eq!(seen.lock().unwrap().last(), Some(&last));
        assert_eq!(
            (
                last.phase,
                last.planned,
                last.written,
                last.skipped,
                last.failed,
                last.bytes_written
            ),
            (Phase::Done, 10, 4, 1, 1, 40)
        );
        assert_eq!(
            last.shards,
            [ShardCounts {
                primary: "n1".into(),
                planned: 10,
                written: 4,
                failed_attempts: 2,
                bytes: 40,
            }]
        );
    }
}
