//! How a warm-up runs: parallelism, batching, TTL jitter, retries, validation and rollback.

use std::time::Duration;

use crate::Error;

/// Settings of a [`Warmup`](crate::Warmup). Start from [`WarmupConfig::default`] and change what you
/// need; [`Warmup::new`](crate::Warmup::new) checks the values once.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WarmupConfig {
    /// Shards written at the same time (default 3, the spec's default).
    pub shard_parallelism: usize,
    /// Entries per batch: one batch is one round of pipelined commands to one shard's primary
    /// (default 512).
    pub batch_size: usize,
    /// Batches in flight per shard (default 8).
    pub batches_in_flight: usize,
    /// TTL jitter: each TTL is shortened by a share in `[0, ttl_jitter)` picked from the key's hash
    /// (never below 1 ms), so that keys warmed together do not all expire together, and no entry
    /// outlives the TTL it was given. The same meaning and range as
    /// `cache_facade::CacheConfig::ttl_jitter` (default 0: off; at most 0.5).
    pub ttl_jitter: f64,
    /// Entries read from the source and planned at once (default 1,000,000). Priority order and
    /// per-key deduplication hold within one window; a source that fits in one window is ordered as a
    /// whole.
    pub window_entries: usize,
    /// Retry rounds for entries whose write failed transiently (node down, timeout, redirects while
    /// slots move) (default 3).
    pub retries: u32,
    /// Pause before the first retry round; it doubles each round (default 100 ms).
    pub retry_delay: Duration,
    /// The most entries written per second (default `None`: as fast as the cluster takes them).
    pub max_entries_per_second: Option<u32>,
    /// Read-back validation after writing (default: every entry, see [`ValidationConfig`]); `None`
    /// validates nothing.
    pub validation: Option<ValidationConfig>,
    /// Roll back when the share of bad entries (failed writes, plus entries that validation found wrong
    /// or could not read, extrapolated from the sample) is above this share (default `None`: never).
    /// Setting it makes the warm-up capture every touched key's previous value and TTL before
    /// overwriting it, which costs one more round trip per slot group.
    pub rollback_threshold: Option<f64>,
    /// The most bytes the rollback capture holds (default 256 MiB; at least 4 KiB): previous values
    /// (`DUMP` payloads), keys, and about 128 bytes of bookkeeping per key. A key whose previous value
    /// does not fit is not written at all, so that everything the warm-up wrote can be put back; the
    /// report says how many entries that left out ([`UndoReport`](crate::UndoReport)). Only used when
    /// [`rollback_threshold`](Self::rollback_threshold) is set. What the capture holds is the gauge
    /// `rcc_warmup_undo_bytes`.
    pub undo_budget_bytes: usize,
    /// Per-key failures, rejected inputs and validation problems listed in the report (the counts are
    /// always complete) (default 1,000).
    pub max_reported_keys: usize,
    /// Shortest gap between two progress updates (default 100 ms); phase changes are always reported.
    /// Any value is valid: zero reports every batch, [`Duration::MAX`] only phase changes.
    pub progress_interval: Duration,
}

/// The longest `retry_delay`: a retry round's pause is also capped at 30 s, however many rounds.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest `WAIT` timeout and replica catch-up: validation never blocks longer per shard.
pub(crate) const MAX_VALIDATION_WAIT: Duration = Duration::from_secs(600);
/// The most retry rounds.
pub(crate) const MAX_RETRIES: u32 = 100;
/// The smallest undo budget.
pub(crate) const MIN_UNDO_BUDGET_BYTES: usize = 4096;

impl Default for WarmupConfig {
    fn default() -> Self {
        WarmupConfig {
            shard_parallelism: 3,
            batch_size: 512,
            batches_in_flight: 8,
            ttl_jitter: 0.0,
            window_entries: 1_000_000,
            retries: 3,
            retry_delay: Duration::from_millis(100),
            max_entries_per_second: None,
            validation: Some(ValidationConfig::default()),
            rollback_threshold: None,
            undo_budget_bytes: 256 << 20,
            max_reported_keys: 1_000,
            progress_interval: Duration::from_millis(100),
        }
    }
}

impl WarmupConfig {
    /// Sets how many shards are written at the same time.
    pub fn shard_parallelism(mut self, shards: usize) -> Self {
        self.shard_parallelism = shards;
        self
    }

    /// Sets the entries per batch.
    pub fn batch_size(mut self, entries: usize) -> Self {
        self.batch_size = entries;
        self
    }

    /// Sets the batches in flight per shard.
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.batches_in_flight = batches;
        self
    }

    /// Sets the TTL jitter share (0 turns it off).
    pub fn ttl_jitter(mut self, share: f64) -> Self {
        self.ttl_jitter = share;
        self
    }

    /// Sets the entries planned at once.
    pub fn window_entries(mut self, entries: usize) -> Self {
        self.window_entries = entries;
        self
    }

    /// Sets the retry rounds for transient failures.
    pub fn retries(mut self, rounds: u32) -> Self {
        self.retries = rounds;
        self
    }

    /// Sets the pause before the first retry round.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Limits the entries written per second.
    pub fn max_entries_per_second(mut self, entries: u32) -> Self {
        self.max_entries_per_second = Some(entries);
        self
    }

    /// Sets (or with `None`, turns off) validation.
    pub fn validation(mut self, validation: Option<ValidationConfig>) -> Self {
        self.validation = validation;
        self
    }

    /// Rolls back when the share of bad entries is above `share`.
    pub fn rollback_above(mut self, share: f64) -> Self {
        self.rollback_threshold = Some(share);
        self
    }

    /// Sets the most bytes the rollback capture holds.
    pub fn undo_budget_bytes(mut self, bytes: usize) -> Self {
        self.undo_budget_bytes = bytes;
        self
    }

    /// Sets how many keys the report lists per kind of problem.
    pub fn max_reported_keys(mut self, keys: usize) -> Self {
        self.max_reported_keys = keys;
        self
    }

    /// Sets the shortest gap between two progress updates.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |message: String| Err(Error::Config(message));
        if self.shard_parallelism == 0 {
            return bad("shard_parallelism is 0; write at least 1 shard at a time (default 3)".into());
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return bad(format!(
                "batch_size is {}; use 1 to 100000 entries per batch (default 512)",
                self.batch_size
            ));
        }
        if self.batches_in_flight == 0 {
            return bad(
                "batches_in_flight is 0; keep at least 1 batch per shard in flight (default 8)".into(),
            );
        }
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return bad(format!(
                "ttl_jitter is {}; use a share from 0 (off) to 0.5 (TTLs up to halved)",
                self.ttl_jitter
            ));
        }
        if self.window_entries == 0 {
            return bad("window_entries is 0; plan at least 1 entry at a time (default 1000000)".into());
        }
        if self.retries > MAX_RETRIES {
            return bad(format!(
                "retries is {}; use at most {MAX_RETRIES} retry rounds (default 3)",
                self.retries
            ));
        }
        if self.retry_delay > MAX_RETRY_DELAY {
            return bad(format!(
                "retry_delay is {:?}; use at most {MAX_RETRY_DELAY:?} (default 100 ms, 0 to retry at once)",
                self.retry_delay
            ));
        }
        if self.undo_budget_bytes < MIN_UNDO_BUDGET_BYTES {
            return bad(format!(
                "undo_budget_bytes is {}; give the rollback capture at least {MIN_UNDO_BUDGET_BYTES} bytes \
                 (default 256 MiB)",
                self.undo_budget_bytes
            ));
        }
        if self.max_entries_per_second == Some(0) {
            return bad("max_entries_per_second is 0; use None for no limit, or at least 1".into());
        }
        if let Some(share) = self.rollback_threshold
            && !(0.0..1.0).contains(&share)
        {
            return bad(format!(
                "rollback_threshold is {share}; use a share from 0 (roll back on any bad entry) to below 1"
            ));
        }
        if let Some(validation) = &self.validation {
            validation.validate()?;
        }
        Ok(())
    }
}

/// How a warm-up checks what it wrote: per shard, `WAIT` for the replicas, then read the entries back
/// from every replica (from the primary when the shard has none) and compare.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ValidationConfig {
    /// Share of the written entries read back, picked by key hash (default 1: all; above 0, at most 1).
    pub sample_ratio: f64,
    /// How long `WAIT` blocks for the replicas' acknowledgement, per shard (default 5 s; from 1 ms to
    /// 10 minutes: `WAIT` with 0 would block for ever).
    pub wait_timeout: Duration,
    /// How long a replica that disagrees is given to catch up with its primary before the entry counts
    /// as bad (default 2 s; at most 10 minutes; 0 reads it again at once).
    pub replica_catch_up: Duration,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            sample_ratio: 1.0,
            wait_timeout: Duration::from_secs(5),
            replica_catch_up: Duration::from_secs(2),
        }
    }
}

impl ValidationConfig {
    /// Validates a share of the entries (1 for all).
    pub fn sample(mut self, ratio: f64) -> Self {
        self.sample_ratio = ratio;
        self
    }

    /// Sets the `WAIT` timeout.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets how long a disagreeing replica may take to catch up.
    pub fn replica_catch_up(mut self, wait: Duration) -> Self {
        self.replica_catch_up = wait;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |message: String| Err(Error::Config(message));
        if !(self.sample_ratio > 0.0 && self.sample_ratio <= 1.0) {
            return bad(format!(
                "validation sample_ratio is {}; use a share above 0 and at most 1, or turn validation off",
                self.sample_ratio
            ));
        }
        // `WAIT` takes whole milliseconds, and 0 means "for ever".
        if self.wait_timeout < Duration::from_millis(1) || self.wait_timeout > MAX_VALIDATION_WAIT {
            return bad(format!(
                "validation wait_timeout is {:?}; use 1 ms to {MAX_VALIDATION_WAIT:?} (default 5 s)",
                self.wait_timeout
            ));
        }
        if self.replica_catch_up > MAX_VALIDATION_WAIT {
            return bad(format!(
                "validation replica_catch_up is {:?}; use at most {MAX_VALIDATION_WAIT:?} (default 2 s)",
                self.replica_catch_up
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: WarmupConfig, want: Option<&str>) {
        match (config.validate(), want) {
            (Ok(()), None) => {}
            (Err(error), Some(text)) => {
                let message = error.to_string();
                assert!(message.contains(text), "{message} should mention {text}");
            }
            (got, want) => panic!("{config:?}: got {got:?}, want an error mentioning {want:?}"),
        }
    }

    #[test]
    fn settings_are_checked_once() {
        check(WarmupConfig::default(), None);
        check(WarmupConfig::default().rollback_above(0.0).ttl_jitter(0.5), None);
        check(
            WarmupConfig::default().shard_parallelism(0),
            Some("shard_parallelism"),
        );
        check(WarmupConfig::default().batch_size(0), Some("batch_size"));
        check(WarmupConfig::default().batch_size(100_001), Some("batch_size"));
        check(
            WarmupConfig::default().batches_in_flight(0),
            Some("batches_in_flight"),
        );
        check(WarmupConfig::default().ttl_jitter(-0.1), Some("ttl_jitter"));
        check(
            WarmupConfig::default().ttl_jitter(0.51),
            Some("ttl_jitter is 0.51"),
        );
        check(WarmupConfig::default().ttl_jitter(f64::NAN), Some("ttl_jitter"));
        check(WarmupConfig::default().window_entries(0), Some("window_entries"));
        check(
            WarmupConfig::default().max_entries_per_second(0),
            Some("max_entries_per_second"),
        );
        check(
            WarmupConfig::default().rollback_above(1.0),
            Some("rollback_threshold"),
        );
        check(
            WarmupConfig::default().validation(Some(ValidationConfig::default().sample(0.0))),
            Some("sample_ratio"),
        );
        check(
            WarmupConfig::default().validation(Some(ValidationConfig::default().sample(1.5))),
            Some("sample_ratio"),
        );
        check(
            WarmupConfig::default().undo_budget_bytes(4095),
            Some("undo_budget_bytes"),
        );
        check(WarmupConfig::default().undo_budget_bytes(64 << 10), None);
        check(WarmupConfig::default().retries(101), Some("retries"));
    }

    #[test]
    fn durations_from_zero_to_max_are_accepted_or_refused_never_a_panic() {
        let validation = |v: ValidationConfig| WarmupConfig::default().validation(Some(v));
        for (duration, wait_ok, catch_up_ok, retry_ok) in [
            (Duration::ZERO, false, true, true),
            (Duration::from_millis(1), true, true, true),
            (MAX_VALIDATION_WAIT, true, true, false),
            (Duration::MAX, false, false, false),
        ] {
            let want = |ok: bool, name: &'static str| if ok { None } else { Some(name) };
            check(
                validation(ValidationConfig::default().wait_timeout(duration)),
                want(wait_ok, "wait_timeout"),
            );
            check(
                validation(ValidationConfig::default().replica_catch_up(duration)),
                want(catch_up_ok, "replica_catch_up"),
            );
            check(
                WarmupConfig::default().retry_delay(duration),
                want(retry_ok, "retry_delay"),
            );
            // Every progress interval is valid: zero reports every batch, MAX only phase changes.
            check(WarmupConfig::default().progress_interval(duration), None);
        }
    }
}
