//! Keys this client wrote recently, so that a replica read never serves a key written within the lag
//! window (read-your-writes), kept within a memory budget.
//!
//! The map grows with write traffic. It used to be pruned of expired entries once it passed 100,000,
//! but when more keys than that were written within one window nothing expired: the map grew without
//! bound, and every write paid a full scan. Now, when pruning leaves it still nearly full, it is
//! emptied and *every* key counts as recently written until one window has passed: replica reads go to
//! the primaries for that long (safe, only slower), and the memory stays within the budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keys remembered at most: about [`RECENT_WRITES_BUDGET_BYTES`].
pub(crate) const RECENT_WRITES_MAX: usize = 100_000;

/// Bytes one remembered key takes in the map: the key's hash, the time, and the map's own overhead.
const ENTRY_BYTES: usize = std::mem::size_of::<(u64, Instant)>() + 8;

/// The memory budget of the map: 100,000 keys; with the hash map's spare capacity, at most about 6.4 MB (the gauge
/// `rcc_client_recent_writes_bytes` reports the current size).
#[cfg(test)]
pub(crate) const RECENT_WRITES_BUDGET_BYTES: usize = RECENT_WRITES_MAX * ENTRY_BYTES * 2;

pub(crate) struct RecentWrites {
    writes: HashMap<u64, Instant>,
    /// While set and in the future, every key counts as recently written (the map overflowed).
    all_until: Option<Instant>,
    gauge: metrics::Gauge,
}

impl RecentWrites {
    pub(crate) fn new() -> RecentWrites {
        RecentWrites {
            writes: HashMap::new(),
            all_until: None,
            gauge: metrics::gauge!(crate::telemetry::RECENT_WRITES_BYTES_METRIC),
        }
    }

    /// Remembers that the key hashed to `key` was written at `now`.
    pub(crate) fn note(&mut self, key: u64, now: Instant, window: Duration) {
        if self.writes.len() >= RECENT_WRITES_MAX {
            self.writes
                .retain(|_, at| now.saturating_duration_since(*at) < window);
            // Still three quarters full: more keys than the budget are written per window. Forget
            // them all and treat every key as recent for one window, instead of growing (or scanning
            // the map again on every write).
            if self.writes.len() >= RECENT_WRITES_MAX / 4 * 3 {
                self.writes = HashMap::new();
                self.all_until = Some(now + window);
                tracing::warn!(
                    keys = RECENT_WRITES_MAX,
                    ?window,
                    "more keys written within the replica lag window than read-your-writes tracks; \
                     reads go to primaries for one window"
                );
            }
            self.gauge.set(self.bytes() as f64);
        }
        let before = self.writes.capacity();
        self.writes.insert(key, now);
        if self.writes.capacity() != before {
            self.gauge.set(self.bytes() as f64);
        }
    }

    /// Whether the key hashed to `key` may have been written within `window` before `now`.
    pub(crate) fn is_recent(&self, key: u64, now: Instant, window: Duration) -> bool {
        self.all_until.is_some_and(|until| now < until)
            || self
                .writes
                .get(&key)
                .is_some_and(|at| now.saturating_duration_since(*at) < window)
    }

    /// Bytes the map takes now (allocated capacity).
    pub(crate) fn bytes(&self) -> usize {
        self.writes.capacity() * ENTRY_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keys_are_remembered_for_one_window() {
        let window = Duration::from_secs(2);
        let start = Instant::now();
        let mut recent = RecentWrites::new();
        recent.note(1, start, window);
        assert!(recent.is_recent(1, start + Duration::from_secs(1), window));
        assert!(!recent.is_recent(1, start + window, window));
        assert!(!recent.is_recent(2, start, window));
    }

    #[test]
    fn writing_past_the_budget_keeps_memory_bounded_and_reads_on_primaries() {
        let window = Duration::from_secs(60);
        let start = Instant::now();
        let mut recent = RecentWrites::new();
        let mut peak = 0;
        // Three budgets' worth of distinct keys within one window: none expires.
        for key in 0..(RECENT_WRITES_MAX as u64 * 3) {
            recent.note(key, start + Duration::from_micros(key), window);
            peak = peak.max(recent.bytes());
        }
        assert!(
            peak <= RECENT_WRITES_BUDGET_BYTES,
            "{peak} bytes over the budget of {RECENT_WRITES_BUDGET_BYTES}"
        );
        let now = start + Duration::from_secs(1);
        // Forgotten keys still count as recent: read-your-writes holds while the budget is exceeded.
        for key in [
            0,
            1,
            RECENT_WRITES_MAX as u64,
            RECENT_WRITES_MAX as u64 * 3 - 1,
            u64::MAX,
        ] {
            assert!(recent.is_recent(key, now, window), "key {key}");
        }
        // One window after the overflow, only keys written since count.
        let later = start + Duration::from_secs(200);
        assert!(!recent.is_recent(u64::MAX, later, window));
    }

    #[test]
    fn expired_keys_make_room_without_overflowing() {
        let window = Duration::from_millis(10);
        let start = Instant::now();
        let mut recent = RecentWrites::new();
        for key in 0..(RECENT_WRITES_MAX as u64 * 2) {
            // Each key is written a window after the previous batch: the old ones expire.
            let at = start + Duration::from_millis(key / 1000 * 20);
            recent.note(key, at, window);
        }
        assert!(recent.all_until.is_none(), "pruning sufficed");
        assert!(recent.bytes() <= RECENT_WRITES_BUDGET_BYTES);
    }
}
