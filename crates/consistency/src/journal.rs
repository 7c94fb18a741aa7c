//! A bounded, in-process record of acknowledged writes, for finding writes a failover lost.
//!
//! Redis replicates asynchronously: a primary acknowledges a write before its replicas have it, and
//! if it dies in that window, the promoted replica never had the write. The journal remembers recent
//! acknowledged writes (key, version, and optionally the value) so that, after a failover, the client
//! can check the new primary and write again what it lacks.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Error;
use crate::version::Version;

/// How much the journal keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Entries kept at most; the oldest are dropped first.
    pub max_entries: usize,
    /// Entries older than this are dropped. A failover is seen within seconds, and replication lag
    /// is normally far below a second, so older writes have reached the replicas.
    pub max_age: Duration,
    /// Whether entries keep the written value, so that lost writes can be written again rather than
    /// only reported. Costs the values' memory.
    pub keep_values: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_entries: 100_000,
            max_age: Duration::from_secs(60),
            keep_values: true,
        }
    }
}

impl JournalConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_entries == 0 {
            return Err(Error::Config(
                "journal max_entries is 0; set it to at least 1, or build without a journal".into(),
            ));
        }
        if self.max_age.is_zero() {
            return Err(Error::Config(
                "journal max_age is 0; set it above the time a failover takes to be seen (e.g. 60 s)".into(),
            ));
        }
        Ok(())
    }
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The key.
    pub key: Bytes,
    /// The version written.
    pub version: Version,
    /// Whether the write was a delete.
    pub deleted: bool,
    /// The value written (without the envelope), if the journal keeps values and it was a set.
    pub value: Option<Bytes>,
    /// The TTL the write set (for a delete, the tombstone's).
    pub ttl: Option<Duration>,
    /// When the write was acknowledged.
    pub written_at: Instant,
}

impl JournalEntry {
    /// The TTL left at `now`: `Ok(None)` for no TTL, `Err(())` once it has run out.
    pub(crate) fn remaining_ttl(&self, now: Instant) -> Result<Option<Duration>, ()> {
        match self.ttl {
            None => Ok(None),
            Some(ttl) => {
                let left = ttl.saturating_sub(now.saturating_duration_since(self.written_at));
                if left.is_zero() { Err(()) } else { Ok(Some(left)) }
            }
        }
    }

    /// Whether the key's slot lies in one of `ranges` (inclusive).
    fn in_slots(&self, ranges: &[(u16, u16)]) -> bool {
        let slot = sharding::key_slot(&self.key);
        ranges.iter().any(|&(first, last)| (first..=last).contains(&slot))
    }
}

/// The write journal: the spec's `trackWrite`, bounded by count and age.
#[derive(Debug)]
pub struct Journal {
    config: JournalConfig,
    entries: Mutex<VecDeque<JournalEntry>>,
}

impl Journal {
    /// An empty journal; fails if `config` is out of range.
    pub fn new(config: JournalConfig) -> Result<Journal, Error> {
        config.validate()?;
        Ok(Journal {
            config,
            entries: Mutex::new(VecDeque::new()),
        })
    }

    /// The journal's bounds.
    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<JournalEntry>> {
        // A panic elsewhere while holding the lock leaves a queue that is still well-formed.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prune(&self, entries: &mut VecDeque<JournalEntry>, now: Instant) {
        while entries.len() > self.config.max_entries {
            entries.pop_front();
        }
        while entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.written_at) > self.config.max_age)
        {
            entries.pop_front();
        }
    }

    /// Records an acknowledged write. The value is dropped if the journal does not keep values.
    pub fn track_write(&self, mut entry: JournalEntry) {
        if !self.config.keep_values {
            entry.value = None;
        }
        let now = Instant::now().max(entry.written_at);
        let mut entries = self.lock();
        entries.push_back(entry);
        self.prune(&mut entries, now);
    }

    /// Entries held now (older ones pruned first), several per key if a key was written repeatedly.
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        self.prune(&mut entries, Instant::now());
        entries.len()
    }

    /// Whether the journal holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest write of every key whose slot lies in `ranges`, oldest first, skipping writes whose
    /// TTL has run out (their key expired on its own, so nothing was lost).
    pub fn latest_in_slots(&self, ranges: &[(u16, u16)]) -> Vec<JournalEntry> {
        self.latest_where(Instant::now(), |entry| entry.in_slots(ranges))
    }

    /// The latest write of every key, oldest first, skipping writes whose TTL has run out.
    pub fn latest(&self) -> Vec<JournalEntry> {
        self.latest_where(Instant::now(), |_| true)
    }

    fn latest_where(&self, now: Instant, keep: impl Fn(&JournalEntry) -> bool) -> Vec<JournalEntry> {
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        let mut seen = HashSet::new();
        let mut out: Vec<JournalEntry> = entries
            .iter()
            .rev()
            .filter(|entry| seen.insert(entry.key.clone()))
            .filter(|entry| entry.remaining_ttl(now).is_ok() && keep(entry))
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::test_version;

    fn entry(key: &'static str, millis: u64, ttl: Option<Duration>, written_at: Instant) -> JournalEntry {
        JournalEntry {
            key: Bytes::from_static(key.as_bytes()),
            version: test_version(millis, 0, 1),
            deleted: false,
            value: Some(Bytes::from_static(b"v")),
            ttl,
            written_at,
        }
    }

    fn check(journal: &Journal, ranges: Option<&[(u16, u16)]>, want: &[(&str, u64)]) {
        let got: Vec<(String, u64)> = match ranges {
            Some(ranges) => journal.latest_in_slots(ranges),
            None => journal.latest(),
        }
        .into_iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.key).into_owned(),
                e.version.hlc.millis(),
            )
        })
        .collect();
        let want: Vec<(String, u64)> = want.iter().map(|&(k, m)| (k.to_string(), m)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn keeps_the_latest_write_per_key_in_order() {
        let journal = Journal::new(JournalConfig::default()).unwrap();
        let now = Instant::now();
        journal.track_write(entry("a", 1, None, now));
        journal.track_write(entry("b", 2, None, now));
        journal.track_write(entry("a", 3, None, now));
        check(&journal, None, &[("b", 2), ("a", 3)]);
        assert_eq!(journal.len(), 3);
        // "foo" is in slot 12182 and "bar" in 5061.
        journal.track_write(entry("foo", 4, None, now));
        journal.track_write(entry("bar", 5, None, now));
        check(&journal, Some(&[(12_000, 12_500)]), &[("foo", 4)]);
        check(&journal, Some(&[(0, 100), (5061, 5061)]), &[("bar", 5)]);
        journal.clear();
        assert!(journal.is_empty());
    }

    #[test]
    fn is_bounded_by_count_and_age() {
        let config = JournalConfig {
            max_entries: 2,
            max_age: Duration::from_secs(10),
            keep_values: false,
        };
        let journal = Journal::new(config).unwrap();
        let now = Instant::now();
        let long_ago = now.checked_sub(Duration::from_secs(11)).unwrap();
        journal.track_write(entry("old", 1, None, long_ago));
        journal.track_write(entry("a", 2, None, now));
        check(&journal, None, &[("a", 2)]);
        journal.track_write(entry("b", 3, None, now));
        journal.track_write(entry("c", 4, None, now));
        check(&journal, None, &[("b", 3), ("c", 4)]);
        assert!(
            journal.latest().iter().all(|e| e.value.is_none()),
            "values are not kept"
        );
    }

    #[test]
    fn skips_writes_whose_ttl_ran_out() {
        let journal = Journal::new(JournalConfig::default()).unwrap();
        let two_seconds_ago = Instant::now().checked_sub(Duration::from_secs(2)).unwrap();
        journal.track_write(entry("gone", 1, Some(Duration::from_secs(1)), two_seconds_ago));
        journal.track_write(entry("left", 2, Some(Duration::from_secs(5)), two_seconds_ago));
        check(&journal, None, &[("left", 2)]);
        let left = journal.latest()[0]
            .remaining_ttl(Instant::now())
            .unwrap()
            .unwrap();
        assert!(
            left <= Duration::from_secs(3) && left > Duration::from_secs(2),
            "{left:?}"
        );
    }

    #[test]
    fn refuses_empty_bounds() {
        for config in [
            JournalConfig {
                max_entries: 0,
                ..JournalConfig::default()
            },
            JournalConfig {
                max_age: Duration::ZERO,
                ..JournalConfig::default()
            },
        ] {
            let error = Journal::new(config).unwrap_err().to_string();
            assert!(error.contains("journal"), "{error}");
        }
    }
}
