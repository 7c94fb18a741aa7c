//! What a warm-up did: counts, per-key failures, rejected input, validation and rollback.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::printable_key;

/// Input that did not become a write: an unreadable JSON-lines line, an entry over the size limit, a
/// key the source Redis could not dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The line number (from 1), for sources with lines.
    pub line: Option<u64>,
    /// The key, when it is known.
    pub key: Option<Bytes>,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.key) {
            (Some(line), Some(key)) => write!(f, "line {line} (key {}): {}", printable_key(key), self.reason),
            (Some(line), None) => write!(f, "line {line}: {}", self.reason),
            (None, Some(key)) => write!(f, "key {}: {}", printable_key(key), self.reason),
            (None, None) => f.write_str(&self.reason),
        }
    }
}

/// A key whose write failed, after every retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    /// The key.
    pub key: Bytes,
    /// The last error.
    pub error: String,
}

impl fmt::Display for KeyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", printable_key(&self.key), self.error)
    }
}

/// One shard's share of the writes. Shards are named by their primary when the entries were planned;
/// after a failover or a slot migration, a new primary gets its own line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardCounts {
    /// The shard's primary (`host:port`).
    pub primary: String,
    /// Entries planned for this shard.
    pub planned: u64,
    /// Entries written.
    pub written: u64,
    /// Write attempts that failed on this shard (an entry retried later counts once per failed
    /// attempt; the report's `failed` counts entries that never made it).
    pub failed_attempts: u64,
    /// Key and value bytes written.
    pub bytes: u64,
}

/// How one written entry compared on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValidationProblem {
    /// The node holds a different value (or an older version).
    Mismatched,
    /// The node does not hold the key.
    Missing,
    /// The node could not be read.
    Unreadable,
}

impl ValidationProblem {
    /// The problem as one word.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationProblem::Mismatched => "mismatched",
            ValidationProblem::Missing => "missing",
            ValidationProblem::Unreadable => "unreadable",
        }
    }
}

/// An entry that read back wrong on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    /// The key.
    pub key: Bytes,
    /// The node it was read from (`host:port`).
    pub node: String,
    /// What was wrong.
    pub problem: ValidationProblem,
}

/// The `WAIT` of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardAck {
    /// The shard's primary.
    pub primary: String,
    /// Its replicas.
    pub replicas: usize,
    /// The fewest replicas that acknowledged the writes of any of the primary's connections (`None`
    /// when `WAIT` failed).
    pub acked: Option<u32>,
}

/// What the read-back found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationReport {
    /// Entries in the sample.
    pub sampled: u64,
    /// Copies read (sampled entries × replicas per shard; the primary for shards without replicas).
    pub checked: u64,
    /// Copies that matched.
    pub matched: u64,
    /// Copies another client replaced after the warm-up wrote them (a newer version, or a value the
    /// warm-up did not write on the primary): not the warm-up's to judge, so not bad.
    pub superseded: u64,
    /// Copies with a different value.
    pub mismatched: u64,
    /// Copies that were not there.
    pub missing: u64,
    /// Copies that could not be read.
    pub unreadable: u64,
    /// Sampled entries with at least one bad copy.
    pub bad_entries: u64,
    /// Per shard, how many replicas acknowledged the writes.
    pub acks: Vec<ShardAck>,
    /// The first bad copies, up to the configured limit.
    pub problems: Vec<BadEntry>,
    /// How long validation took.
    pub elapsed: Duration,
}

impl ValidationReport {
    /// Share of sampled entries with a bad copy (0 when nothing was sampled).
    pub fn bad_share(&self) -> f64 {
        if self.sampled == 0 {
            0.0
        } else {
            self.bad_entries as f64 / self.sampled as f64
        }
    }
}

/// What a rollback restored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RollbackReport {
    /// Why it ran.
    pub reason: String,
    /// Keys given back their previous value and remaining TTL.
    pub restored: u64,
    /// Keys that did not exist before (or whose previous TTL ran out meanwhile), deleted.
    pub deleted: u64,
    /// Keys that could not be put back.
    pub failed: u64,
    /// The first keys that could not be put back, up to the configured limit.
    pub failures: Vec<KeyFailure>,
    /// Keys left alone because they no longer held what the warm-up wrote: another client wrote or
    /// deleted them since, and its write is kept.
    pub skipped_changed: u64,
    /// The first of those keys, up to the configured limit.
    pub changed_keys: Vec<Bytes>,
    /// How long the rollback took.
    pub elapsed: Duration,
}

/// What the rollback capture held (when rollback is on), within
/// [`WarmupConfig::undo_budget_bytes`](crate::WarmupConfig::undo_budget_bytes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UndoReport {
    /// The budget.
    pub budget_bytes: u64,
    /// The most bytes held at once (previous values, keys and per-key bookkeeping); at most the budget.
    pub peak_bytes: u64,
    /// Entries not written because their key's previous value did not fit in the budget: the warm-up
    /// never overwrites what it could not put back. Nonzero means the warm-up is incomplete.
    pub refused: u64,
    /// The first of those keys, up to the configured limit.
    pub refused_keys: Vec<Bytes>,
}

/// What a warm-up did. A warm-up that ran to its end returns this even when keys failed: check
/// [`Report::is_clean`], and the lists of failures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Items read from the source (entries and rejected input).
    pub read: u64,
    /// Entries written.
    pub written: u64,
    /// Entries not written on purpose: an earlier entry for a key that a later entry of the same window
    /// replaced, a versioned write that found a newer version stored, a source key that vanished
    /// before it was dumped.
    pub skipped: u64,
    /// Entries whose write failed after every retry.
    pub failed: u64,
    /// Input refused before anything was sent (unreadable lines, entries over the size limit).
    pub rejected: u64,
    /// Key and value bytes written.
    pub bytes_written: u64,
    /// The first write failures, up to the configured limit.
    pub failures: Vec<KeyFailure>,
    /// The first rejected inputs, up to the configured limit.
    pub rejections: Vec<Rejected>,
    /// Per shard counts.
    pub shards: Vec<ShardCounts>,
    /// Times the remaining entries were planned again because the topology changed.
    pub replans: u32,
    /// Retry rounds run for transiently failed entries.
    pub retry_rounds: u32,
    /// The read-back, when validation is on.
    pub validation: Option<ValidationReport>,
    /// Share of entries judged bad: failed writes, plus written entries extrapolated from the
    /// validation sample's bad share.
    pub bad_share: f64,
    /// The rollback, when one ran.
    pub rollback: Option<RollbackReport>,
    /// What the rollback capture held, when rollback is on.
    pub undo: Option<UndoReport>,
    /// Set when the source failed before its end: entries after that point were not read.
    pub source_error: Option<String>,
    /// Time spent reading and writing.
    pub write_elapsed: Duration,
    /// Time of the whole warm-up, validation and rollback included.
    pub elapsed: Duration,
}

impl Report {
    /// Entries written per second of writing.
    pub fn entries_per_second(&self) -> f64 {
        per_second(self.written, self.write_elapsed)
    }

    /// Bytes written per second of writing.
    pub fn bytes_per_second(&self) -> f64 {
        per_second(self.bytes_written, self.write_elapsed)
    }

    /// Whether everything read was written and validated without a problem, and nothing rolled back.
    pub fn is_clean(&self) -> bool {
        self.failed == 0
            && self.rejected == 0
            && self.source_error.is_none()
            && self.rollback.is_none()
            && self.undo.as_ref().is_none_or(|u| u.refused == 0)
            && self.validation.as_ref().is_none_or(|v| v.bad_entries == 0)
    }
}

pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} written ({:.1} MB) in {:.2?} ({:.0} entries/s), {} skipped, {} failed, {} rejected",
            self.written,
            self.bytes_written as f64 / 1e6,
            self.write_elapsed,
            self.entries_per_second(),
            self.skipped,
            self.failed,
            self.rejected,
        )?;
        if self.replans > 0 {
            write!(f, ", {} re-plans", self.replans)?;
        }
        if let Some(v) = &self.validation {
            write!(
                f,
                "; validated {} of {} entries ({} copies: {} matched, {} superseded, {} mismatched, {} missing, {} unreadable)",
                v.sampled - v.bad_entries,
                v.sampled,
                v.checked,
                v.matched,
                v.superseded,
                v.mismatched,
                v.missing,
                v.unreadable
            )?;
        }
        if let Some(r) = &self.rollback {
            write!(
                f,
                "; rolled back ({}): {} restored, {} deleted, {} left alone (changed by others since), {} failed",
                r.reason, r.restored, r.deleted, r.skipped_changed, r.failed
            )?;
        }
        if let Some(u) = &self.undo
            && u.refused > 0
        {
            write!(
                f,
                "; {} entries not written: their previous values did not fit in the undo budget of {} bytes",
                u.refused, u.budget_bytes
            )?;
        }
        if let Some(error) = &self.source_error {
            write!(f, "; the source failed: {error}")?;
        }
        write!(f, "; {:.2?} in all", self.elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_say_where() {
        let check = |line: Option<u64>, key: Option<&str>, want: &str| {
            let rejected = Rejected {
                line,
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                reason: "too big".into(),
            };
            assert_eq!(rejected.to_string(), want);
        };
        check(Some(3), None, "line 3: too big");
        check(Some(3), Some("k"), "line 3 (key k): too big");
        check(None, Some("k"), "key k: too big");
        check(None, None, "too big");
    }

    #[test]
    fn reports_summarise_themselves() {
        let mut report = Report {
            written: 1000,
            bytes_written: 2_000_000,
            write_elapsed: Duration::from_secs(2),
            elapsed: Duration::from_secs(3),
            ..Report::default()
        };
        assert_eq!(report.entries_per_second(), 500.0);
        assert_eq!(report.bytes_per_second(), 1_000_000.0);
        assert!(report.is_clean());
        let text = report.to_string();
        assert!(
            text.contains("1000 written (2.0 MB)") && text.contains("500 entries/s"),
            "{text}"
        );

        report.validation = Some(ValidationReport {
            sampled: 10,
            bad_entries: 1,
            ..ValidationReport::default()
        });
        assert_eq!(
            report.validation.as_ref().map(ValidationReport::bad_share),
            Some(0.1)
        );
        assert!(!report.is_clean());
        report.validation = None;
        report.rollback = Some(RollbackReport {
            reason: "bad".into(),
            restored: 3,
            ..RollbackReport::default()
        });
        assert!(!report.is_clean());
        assert!(
            report.to_string().contains("rolled back (bad): 3 restored"),
            "{report}"
        );
    }
}
