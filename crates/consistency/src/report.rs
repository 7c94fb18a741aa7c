//! What checks and audits return: per-key reports, counts per state, progress, and the audit report.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::printable_key;
use crate::state::{KeyState, Observed};

/// The role of a copy in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyRole {
    /// The primary that owns the key's slot.
    Primary,
    /// One of that primary's replicas.
    Replica,
    /// The source deployment of a cross-deployment audit.
    Source,
    /// The target deployment of a cross-deployment audit.
    Target,
}

/// One node's copy of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCopy {
    /// The node (`host:port`), or the deployment's node that answered.
    pub node: String,
    /// Its role.
    pub role: CopyRole,
    /// What it holds.
    pub observed: Observed,
}

/// How the copies of one key compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The key.
    pub key: Bytes,
    /// The verdict.
    pub state: KeyState,
    /// Every copy read, primary (or source) first.
    pub copies: Vec<NodeCopy>,
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", printable_key(&self.key), self.state)?;
        for copy in &self.copies {
            write!(f, "; {:?} {} {}", copy.role, copy.node, copy.observed)?;
        }
        Ok(())
    }
}

/// Keys counted per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateCounts {
    /// Keys whose copies agree.
    pub consistent: u64,
    /// Keys a replica has not caught up with yet.
    pub replica_lagging: u64,
    /// Keys one copy lacks.
    pub missing: u64,
    /// Keys whose copies hold different versions.
    pub diverged: u64,
    /// Keys that carry no version.
    pub unversioned: u64,
}

impl StateCounts {
    /// Counts one key.
    pub fn add(&mut self, state: KeyState) {
        *self.slot(state) += 1;
    }

    fn slot(&mut self, state: KeyState) -> &mut u64 {
        match state {
            KeyState::Consistent => &mut self.consistent,
            KeyState::ReplicaLagging => &mut self.replica_lagging,
            KeyState::Missing => &mut self.missing,
            KeyState::Diverged => &mut self.diverged,
            KeyState::Unversioned => &mut self.unversioned,
        }
    }

    /// The count for one state.
    pub fn get(&self, state: KeyState) -> u64 {
        match state {
            KeyState::Consistent => self.consistent,
            KeyState::ReplicaLagging => self.replica_lagging,
            KeyState::Missing => self.missing,
            KeyState::Diverged => self.diverged,
            KeyState::Unversioned => self.unversioned,
        }
    }

    /// Every key counted.
    pub fn total(&self) -> u64 {
        KeyState::ALL.iter().map(|&s| self.get(s)).sum()
    }

    /// Keys that are missing or diverged: the ones a repair is for.
    pub fn bad(&self) -> u64 {
        self.missing + self.diverged
    }
}

/// What the repairs of an audit or a failover check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairCounts {
    /// Repairs written.
    pub repaired: u64,
    /// Repairs not needed after all: a newer write got there first (last-write-wins refused ours).
    pub superseded: u64,
    /// Keys no copy of which can win by version (unversioned values), or whose value was not kept.
    pub unrepairable: u64,
    /// Repairs that failed with an error.
    pub failed: u64,
    /// Keys left alone on purpose: the copy that wins is on the side a one-way sync never writes.
    pub left: u64,
}

impl RepairCounts {
    pub(crate) fn merge(&mut self, other: &RepairCounts) {
        self.repaired += other.repaired;
        self.superseded += other.superseded;
        self.unrepairable += other.unrepairable;
        self.failed += other.failed;
        self.left += other.left;
    }
}

/// Where an audit is, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditProgress {
    /// Shards (or deployments' nodes) to scan.
    pub shards_total: usize,
    /// Shards fully scanned.
    pub shards_done: usize,
    /// Keys checked so far.
    pub keys_scanned: u64,
    /// Keys checked so far that are missing or diverged.
    pub keys_bad: u64,
    /// Time since the audit started.
    pub elapsed: Duration,
}

impl AuditProgress {
    /// Keys checked per second so far.
    pub fn keys_per_second(&self) -> f64 {
        per_second(self.keys_scanned, self.elapsed)
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// What an audit found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// When it started.
    pub started_at: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
    /// Keys checked.
    pub keys_scanned: u64,
    /// Keys per state (after rechecking the ones that disagreed).
    pub counts: StateCounts,
    /// Keys in a state other than consistent, up to the sample limit.
    pub samples: Vec<KeyReport>,
    /// What the repairs did (all zero unless the audit resolves).
    pub repairs: RepairCounts,
    /// The first errors met (scans or reads that failed), up to the sample limit.
    pub errors: Vec<String>,
    /// Every error met.
    pub error_count: u64,
    /// Whether every shard was scanned to the end (false if a scan failed or a key limit stopped it).
    pub complete: bool,
}

impl AuditReport {
    /// Keys checked per second.
    pub fn keys_per_second(&self) -> f64 {
        per_second(self.keys_scanned, self.elapsed)
    }

    /// Whether the audit saw everything and found no missing or diverged key.
    pub fn is_clean(&self) -> bool {
        self.complete && self.error_count == 0 && self.counts.bad() == 0
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "{} keys in {:.2?} ({:.0} keys/s): {} consistent, {} replica lagging, {} missing, {} diverged, \
             {} unversioned; repaired {}, superseded {}, unrepairable {}, failed {}, left {}; {} errors{}",
            self.keys_scanned,
            self.elapsed,
            self.keys_per_second(),
            c.consistent,
            c.replica_lagging,
            c.missing,
            c.diverged,
            c.unversioned,
            self.repairs.repaired,
            self.repairs.superseded,
            self.repairs.unrepairable,
            self.repairs.failed,
            self.repairs.left,
            self.error_count,
            if self.complete { "" } else { " (incomplete)" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(states: &[KeyState], want_total: u64, want_bad: u64) {
        let mut counts = StateCounts::default();
        for &state in states {
            counts.add(state);
        }
        assert_eq!(
            (counts.total(), counts.bad()),
            (want_total, want_bad),
            "{states:?}"
        );
        for state in KeyState::ALL {
            let want = states.iter().filter(|&&s| s == state).count() as u64;
            assert_eq!(counts.get(state), want, "{state}");
        }
    }

    #[test]
    fn counts_add_up() {
        use KeyState::*;
        check(&[], 0, 0);
        check(&[Consistent, Consistent, ReplicaLagging], 3, 0);
        check(&[Missing, Diverged, Unversioned, Consistent], 4, 2);
    }

    #[test]
    fn reports_summarise_themselves() {
        let mut counts = StateCounts::default();
        counts.add(KeyState::Diverged);
        let report = AuditReport {
            started_at: SystemTime::now(),
            elapsed: Duration::from_secs(2),
            keys_scanned: 1000,
            counts,
            samples: vec![],
            repairs: RepairCounts::default(),
            errors: vec![],
            error_count: 0,
            complete: true,
        };
        assert_eq!(report.keys_per_second(), 500.0);
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(
            text.contains("1000 keys") && text.contains("1 diverged") && text.contains("500 keys/s"),
            "{text}"
        );
    }
}
