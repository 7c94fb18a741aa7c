//! A bounded, in-process record of acknowledged writes, for finding writes a failover lost.
//!
//! Redis replicates asynchronously: a primary acknowledges a write before its replicas have it, and
//! if it dies in that window, the promoted replica never had the write. The journal remembers recent
//! acknowledged writes (key, version, optionally the value, and where the write landed in its
//! primary's replication stream) so that, after a failover, the client can check the new primary and
//! write again what it can show was lost (see the `failover` module for the rule).
//!
//! The journal is bounded three ways: entries ([`JournalConfig::max_entries`]), age
//! ([`JournalConfig::max_age`]) and bytes ([`JournalConfig::max_bytes`]). Over the byte budget, the
//! values of the oldest entries are dropped first (those writes can still be checked, but no longer
//! written again: they count as unrepairable), then the oldest entries themselves. The bytes held by
//! every journal of the process are published as the gauge `rcc_consistency_journal_bytes`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sharding::SlotRange;

use crate::Error;
use crate::version::Version;

/// The gauge of the bytes held by every write journal of the process.
pub const JOURNAL_BYTES_METRIC: &str = "rcc_consistency_journal_bytes";
/// The counter of journaled values dropped to stay within the byte budget.
pub const JOURNAL_VALUES_DROPPED_METRIC: &str = "rcc_consistency_journal_values_dropped_total";
/// The counter of journal entries dropped to stay within the byte budget.
pub const JOURNAL_ENTRIES_DROPPED_METRIC: &str = "rcc_consistency_journal_entries_dropped_total";

/// Bytes counted for an entry besides its key and value: the entry's own fields and its slot in
/// the queue, so that a flood of empty keys is bounded too.
pub const ENTRY_OVERHEAD_BYTES: usize = 128;

/// The longest `max_age` accepted (a day): the journal is for the seconds around a failover.
pub const MAX_JOURNAL_AGE: Duration = Duration::from_secs(24 * 3_600);

/// The bytes held by every journal of the process, for the gauge.
static PROCESS_BYTES: AtomicU64 = AtomicU64::new(0);

/// Describes this crate's metrics (unit and help) to the installed `metrics` recorder. Idempotent;
/// a journal also calls it when it is built.
pub fn describe_metrics() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!(
            JOURNAL_BYTES_METRIC,
            metrics::Unit::Bytes,
            "Bytes held by the consistency write journals of this process (keys, values and a fixed \
             overhead per entry)."
        );
        metrics::describe_counter!(
            JOURNAL_VALUES_DROPPED_METRIC,
            metrics::Unit::Count,
            "Journaled values dropped to stay within the journal's byte budget; those writes can no \
             longer be written again after a failover."
        );
        metrics::describe_counter!(
            JOURNAL_ENTRIES_DROPPED_METRIC,
            metrics::Unit::Count,
            "Journal entries dropped to stay within the journal's byte budget."
        );
    });
}

/// How much the journal keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Entries kept at most; the oldest are dropped first.
    pub max_entries: usize,
    /// Entries older than this are dropped. A failover is seen within seconds, and replication lag
    /// is normally far below a second, so older writes have reached the replicas. At most a day.
    pub max_age: Duration,
    /// Whether entries keep the written value, so that lost writes can be written again rather than
    /// only reported. Costs the values' memory, within `max_bytes`.
    pub keep_values: bool,
    /// The most bytes the journal holds (keys, values, and [`ENTRY_OVERHEAD_BYTES`] per entry).
    /// Default 64 MiB. Over it, the oldest entries' values are dropped first, then the oldest
    /// entries.
    pub max_bytes: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_entries: 100_000,
            max_age: Duration::from_secs(60),
            keep_values: true,
            max_bytes: 64 * 1024 * 1024,
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
        crate::versioned::check_duration(
            "journal max_age",
            self.max_age,
            Duration::from_millis(1),
            MAX_JOURNAL_AGE,
            "set it above the time a failover takes to be seen (default 60 s)",
        )?;
        if self.max_bytes < ENTRY_OVERHEAD_BYTES {
            return Err(Error::Config(format!(
                "journal max_bytes is {}, less than one entry ({ENTRY_OVERHEAD_BYTES} bytes); \
                 give the journal a few MiB at least (default 64 MiB)",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

/// Where a write landed in its primary's replication stream, as the write script read it (`INFO
/// replication` inside the script, so no other command can come in between): the evidence a
/// failover repair needs before it may call a missing key lost rather than deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicationMark {
    /// The primary's replication id (`master_replid`) when it ran the write.
    pub replid: [u8; 40],
    /// The primary's `master_repl_offset` just before the write: the write's bytes come after it.
    pub offset: u64,
    /// The fewest bytes the write takes in the replication stream (its `SET key value` in RESP,
    /// without the TTL arguments or any `MULTI` around it), so that `offset + min_len` is a lower
    /// bound of the offset at which a replica has applied the write.
    pub min_len: u64,
}

impl ReplicationMark {
    /// The mark of a write whose script reported `replid` and `offset`, for a `SET key stored`.
    pub(crate) fn new(replid: &[u8], offset: u64, key_len: usize, stored_len: usize) -> Option<Self> {
        Self::for_block(replid, offset, min_set_len(key_len, stored_len))
    }
}

impl ReplicationMark {
    /// The mark of a write made in a `MULTI`/`EXEC` block (one [`LWW_MANY_SCRIPT`] execution)
    /// whose `SET`s take at least `min_len` bytes: a replica applies the block whole, so each write
    /// in it ends no earlier than `offset + min_len`.
    ///
    /// [`LWW_MANY_SCRIPT`]: crate::LWW_MANY_SCRIPT
    pub(crate) fn for_block(replid: &[u8], offset: u64, min_len: u64) -> Option<Self> {
        let replid: [u8; 40] = replid.try_into().ok()?;
        Some(ReplicationMark {
            replid,
            offset,
            min_len,
        })
    }
}

/// The RESP length of `SET <key> <stored>`: `*3\r\n$3\r\nSET\r\n$<k>\r\n<key>\r\n$<v>\r\n<stored>\r\n`.
pub(crate) fn min_set_len(key_len: usize, stored_len: usize) -> u64 {
    let bulk = |len: usize| 1 + len.to_string().len() + 2 + len + 2;
    (4 + bulk(3) + bulk(key_len) + bulk(stored_len)) as u64
}

/// Bytes counted for a kept value: its own, plus what it keeps alive besides. A versioned write's
/// value is a view into the envelope it sent (no copy), so the 24-byte header and the buffer's shared
/// control block stay with it.
fn value_cost(value: &Bytes) -> usize {
    value.len() + VALUE_OVERHEAD_BYTES
}

/// See [`value_cost`].
const VALUE_OVERHEAD_BYTES: usize = 24 + 32;

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
    /// When the write was sent (before the server applied it, so its TTL ends no earlier than
    /// `written_at + ttl`).
    pub written_at: Instant,
    /// Where the write landed in its primary's replication stream; `None` if the server would not
    /// say (for example an ACL user without `INFO`), in which case a missing key is never called
    /// lost.
    pub mark: Option<ReplicationMark>,
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

    /// Whether the key's slot lies in one of `ranges`.
    fn in_slots(&self, ranges: &[SlotRange]) -> bool {
        let slot = sharding::key_slot(&self.key);
        ranges.iter().any(|range| range.contains(slot))
    }

    /// The bytes this entry counts against the budget.
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD_BYTES + self.key.len() + self.value.as_ref().map_or(0, value_cost)
    }
}

/// The queue and its byte count, changed together under one lock.
#[derive(Debug, Default)]
struct Entries {
    queue: VecDeque<JournalEntry>,
    bytes: usize,
    /// Entries before this index hold no value any more (dropped for the budget, or never kept), so
    /// dropping values does not walk them again.
    valued_from: usize,
}

impl Entries {
    fn pop_front(&mut self) -> Option<JournalEntry> {
        let entry = self.queue.pop_front()?;
        self.bytes -= entry.cost();
        self.valued_from = self.valued_from.saturating_sub(1);
        Some(entry)
    }
}

/// The write journal: the spec's `trackWrite`, bounded by count, age and bytes.
#[derive(Debug)]
pub struct Journal {
    config: JournalConfig,
    entries: Mutex<Entries>,
    values_dropped: AtomicU64,
    entries_dropped: AtomicU64,
}

impl Journal {
    /// An empty journal; fails if `config` is out of range.
    pub fn new(config: JournalConfig) -> Result<Journal, Error> {
        config.validate()?;
        describe_metrics();
        Ok(Journal {
            config,
            entries: Mutex::new(Entries::default()),
            values_dropped: AtomicU64::new(0),
            entries_dropped: AtomicU64::new(0),
        })
    }

    /// The journal's bounds.
    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic elsewhere while holding the lock leaves a queue that is still well-formed.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies the bounds, and publishes the change in bytes.
    fn prune(&self, entries: &mut Entries, now: Instant) {
        let before = entries.bytes;
        while entries.queue.len() > self.config.max_entries {
            entries.pop_front();
        }
        while entries
            .queue
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.written_at) > self.config.max_age)
        {
            entries.pop_front();
        }
        // Over the byte budget: values first, oldest first, since a write without its value can
        // still be checked; then whole entries.
        let mut values_dropped = 0;
        while entries.bytes > self.config.max_bytes && entries.valued_from < entries.queue.len() {
            let index = entries.valued_from;
            if let Some(value) = entries.queue[index].value.take() {
                entries.bytes -= value_cost(&value);
                values_dropped += 1;
            }
            entries.valued_from += 1;
        }
        let mut entries_dropped = 0;
        while entries.bytes > self.config.max_bytes && entries.pop_front().is_some() {
            entries_dropped += 1;
        }
        if values_dropped > 0 {
            self.values_dropped.fetch_add(values_dropped, Ordering::Relaxed);
            metrics::counter!(JOURNAL_VALUES_DROPPED_METRIC).increment(values_dropped);
        }
        if entries_dropped > 0 {
            self.entries_dropped.fetch_add(entries_dropped, Ordering::Relaxed);
            metrics::counter!(JOURNAL_ENTRIES_DROPPED_METRIC).increment(entries_dropped);
        }
        publish_change(before, entries.bytes);
    }

    /// Records an acknowledged write. The value is dropped if the journal does not keep values.
    pub fn track_write(&self, entry: JournalEntry) {
        self.track_writes(std::iter::once(entry));
    }

    /// Records acknowledged writes, in order, under one lock (a batch's writes).
    pub fn track_writes(&self, written: impl IntoIterator<Item = JournalEntry>) {
        let mut now = Instant::now();
        let mut entries = self.lock();
        let before = entries.bytes;
        for mut entry in written {
            if !self.config.keep_values {
                entry.value = None;
            }
            now = now.max(entry.written_at);
            entries.bytes += entry.cost();
            entries.queue.push_back(entry);
        }
        publish_change(before, entries.bytes);
        self.prune(&mut entries, now);
    }

    /// Entries held now (older ones pruned first), several per key if a key was written repeatedly.
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        self.prune(&mut entries, Instant::now());
        entries.queue.len()
    }

    /// Whether the journal holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the journal holds now (keys, values, and a fixed overhead per entry), at most
    /// [`JournalConfig::max_bytes`].
    pub fn bytes(&self) -> usize {
        let mut entries = self.lock();
        self.prune(&mut entries, Instant::now());
        entries.bytes
    }

    /// Values dropped so far to stay within the byte budget (those writes are checked after a
    /// failover but count as unrepairable).
    pub fn values_dropped(&self) -> u64 {
        self.values_dropped.load(Ordering::Relaxed)
    }

    /// Entries dropped so far to stay within the byte budget.
    pub fn entries_dropped(&self) -> u64 {
        self.entries_dropped.load(Ordering::Relaxed)
    }

    /// The latest write of every key whose slot lies in `ranges`, oldest first, skipping writes whose
    /// TTL has run out (their key expired on its own, so nothing was lost).
    pub fn latest_in_slots(&self, ranges: &[SlotRange]) -> Vec<JournalEntry> {
        self.latest_where(Instant::now(), |entry| entry.in_slots(ranges))
    }

    /// The latest write of every key, oldest first, skipping writes whose TTL has run out.
    pub fn latest(&self) -> Vec<JournalEntry> {
        self.latest_where(Instant::now(), |_| true)
    }

    fn latest_where(&self, now: Instant, keep: impl Fn(&JournalEntry) -> bool) -> Vec<JournalEntry> {
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        // A key's latest write decides, by version, not by the order acknowledgements were recorded:
        // two concurrent writes of one key can be acknowledged (and tracked) in the other order than
        // the server applied them. An expired latest write (a tombstone that ran out) hides the
        // earlier ones rather than letting them be rewritten.
        let mut latest: HashMap<&Bytes, (usize, &JournalEntry)> = HashMap::new();
        for (position, entry) in entries.queue.iter().enumerate() {
            match latest.get(&entry.key) {
                Some((_, kept)) if kept.version > entry.version => {}
                _ => {
                    latest.insert(&entry.key, (position, entry));
                }
            }
        }
        let mut out: Vec<(usize, &JournalEntry)> = latest
            .into_values()
            .filter(|(_, entry)| entry.remaining_ttl(now).is_ok() && keep(entry))
            .collect();
        // Oldest first, as the queue holds them.
        out.sort_unstable_by_key(|(position, _)| *position);
        out.into_iter().map(|(_, entry)| entry.clone()).collect()
    }

    /// Forgets `key`'s journaled writes at `version` or older: for an undo (a warm-up's rollback)
    /// that put back an older state on purpose, which failover repair must not write over again.
    pub fn forget(&self, key: &[u8], version: Version) {
        let mut entries = self.lock();
        let before = entries.bytes;
        let valued_from = entries.valued_from;
        let (mut freed, mut removed_before_valued, mut index) = (0usize, 0usize, 0usize);
        entries.queue.retain(|entry| {
            let drop = entry.key.as_ref() == key && entry.version <= version;
            if drop {
                freed += entry.cost();
                if index < valued_from {
                    removed_before_valued += 1;
                }
            }
            index += 1;
            !drop
        });
        entries.bytes -= freed;
        entries.valued_from -= removed_before_valued;
        let after = entries.bytes;
        publish_change(before, after);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut entries = self.lock();
        let before = entries.bytes;
        *entries = Entries::default();
        publish_change(before, 0);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let entries = self.entries.get_mut().unwrap_or_else(PoisonError::into_inner);
        publish_change(entries.bytes, 0);
    }
}

/// Moves the process-wide byte count from `before` to `after` for one journal, and sets the gauge.
fn publish_change(before: usize, after: usize) {
    let total = if after >= before {
        PROCESS_BYTES.fetch_add((after - before) as u64, Ordering::Relaxed) + (after - before) as u64
    } else {
        PROCESS_BYTES.fetch_sub((before - after) as u64, Ordering::Relaxed) - (before - after) as u64
    };
    metrics::gauge!(JOURNAL_BYTES_METRIC).set(total as f64);
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
            mark: None,
        }
    }

    fn check(journal: &Journal, ranges: Option<&[(u16, u16)]>, want: &[(&str, u64)]) {
        let got: Vec<(String, u64)> = match ranges {
            Some(ranges) => {
                let ranges: Vec<SlotRange> = ranges
                    .iter()
                    .map(|&(first, last)| SlotRange::new(first, last).expect("a slot range"))
                    .collect();
                journal.latest_in_slots(&ranges)
            }
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
    fn the_latest_write_is_the_highest_version_not_the_last_tracked() {
        // A set (version 10) and a delete (version 11) of one key ran at once; the server applied
        // the set first, but the delete's acknowledgement was tracked first.
        let journal = Journal::new(JournalConfig::default()).unwrap();
        let now = Instant::now();
        let mut delete = entry("k", 11, None, now);
        delete.deleted = true;
        delete.value = None;
        journal.track_write(delete);
        journal.track_write(entry("k", 10, None, now));
        let latest = journal.latest();
        assert_eq!(latest.len(), 1);
        assert!(
            latest[0].deleted && latest[0].version.hlc.millis() == 11,
            "{latest:?}"
        );
    }

    #[test]
    fn forgetting_drops_a_key_s_writes_up_to_a_version_and_their_bytes() {
        let journal = Journal::new(JournalConfig::default()).unwrap();
        let now = Instant::now();
        journal.track_write(entry("a", 1, None, now));
        journal.track_write(entry("b", 2, None, now));
        journal.track_write(entry("a", 3, None, now));
        journal.track_write(entry("a", 5, None, now));
        let before = journal.bytes();
        journal.forget(b"a", test_version(3, 0, 1));
        check(&journal, None, &[("b", 2), ("a", 5)]);
        assert_eq!(journal.len(), 2);
        assert!(journal.bytes() < before);
        journal.forget(b"a", test_version(9, 0, 1));
        journal.forget(b"b", test_version(9, 0, 1));
        assert!(journal.is_empty());
        assert_eq!(journal.bytes(), 0);
    }

    #[test]
    fn is_bounded_by_count_and_age() {
        let config = JournalConfig {
            max_entries: 2,
            max_age: Duration::from_secs(10),
            keep_values: false,
            ..JournalConfig::default()
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
            JournalConfig {
                max_age: Duration::MAX,
                ..JournalConfig::default()
            },
            JournalConfig {
                max_bytes: 0,
                ..JournalConfig::default()
            },
        ] {
            let error = Journal::new(config).unwrap_err().to_string();
            assert!(error.contains("journal"), "{error}");
        }
    }

    #[test]
    fn the_minimal_set_length_is_its_resp_encoding() {
        let resp = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$11\r\nhello world\r\n";
        assert_eq!(min_set_len(3, 11), resp.len() as u64);
        let mark = ReplicationMark::new(&[b'a'; 40], 7, 3, 11).unwrap();
        assert_eq!((mark.offset, mark.min_len), (7, resp.len() as u64));
        assert_eq!(ReplicationMark::new(b"short", 7, 3, 11), None);
    }
}
