//! A bounded log of every repair: what a key held before, what it holds after, and why.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;

use crate::state::Observed;

/// What triggered a repair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SyncSource {
    /// A write the journal remembered was missing (or older) on a newly promoted primary.
    FailoverRepair {
        /// The promoted primary that was written.
        new_primary: String,
    },
    /// A cluster audit in resolve mode found copies that disagreed.
    AuditRepair {
        /// The primary that was written (replication carries the value to its replicas).
        primary: String,
    },
    /// A cross-deployment sync copied a key from one deployment to the other.
    DeploymentSync {
        /// The deployment read from (`source` or `target`).
        from: String,
        /// The deployment written (`target` or `source`).
        to: String,
    },
}

impl fmt::Display for SyncSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncSource::FailoverRepair { new_primary } => write!(f, "failover repair on {new_primary}"),
            SyncSource::AuditRepair { primary } => write!(f, "audit repair on {primary}"),
            SyncSource::DeploymentSync { from, to } => write!(f, "sync from {from} to {to}"),
        }
    }
}

/// One repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEvent {
    /// The key.
    pub key: Bytes,
    /// What the written node held before.
    pub before: Observed,
    /// What it holds after.
    pub after: Observed,
    /// What triggered it.
    pub source: SyncSource,
    /// When it was written.
    pub at: SystemTime,
}

/// The last repairs, newest kept: the spec's `getSyncHistory`.
#[derive(Debug)]
pub struct SyncHistory {
    capacity: usize,
    events: Mutex<VecDeque<SyncEvent>>,
    recorded: AtomicU64,
}

impl SyncHistory {
    /// A history that keeps the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> SyncHistory {
        let capacity = capacity.max(1);
        SyncHistory {
            capacity,
            events: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            recorded: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<SyncEvent>> {
        // A panic elsewhere while holding the lock leaves a queue that is still well-formed.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event, dropping the oldest if the history is full.
    pub fn record(&self, event: SyncEvent) {
        let mut events = self.lock();
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// The last `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Vec<SyncEvent> {
        self.lock().iter().rev().take(limit).cloned().collect()
    }

    /// Every event kept for `key`, newest first.
    pub fn for_key(&self, key: &[u8]) -> Vec<SyncEvent> {
        self.lock()
            .iter()
            .rev()
            .filter(|e| e.key == key)
            .cloned()
            .collect()
    }

    /// Events kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Events recorded since the history was made, including those dropped since.
    pub fn total_recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// The most events kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::test_version;

    fn event(key: &'static str, millis: u64) -> SyncEvent {
        SyncEvent {
            key: Bytes::from_static(key.as_bytes()),
            before: Observed::Absent,
            after: Observed::Value(test_version(millis, 0, 1)),
            source: SyncSource::AuditRepair {
                primary: "127.0.0.1:7000".into(),
            },
            at: SystemTime::now(),
        }
    }

    fn check(history: &SyncHistory, got: Vec<SyncEvent>, want: &[u64]) {
        let got: Vec<u64> = got
            .iter()
            .filter_map(|e| e.after.version().map(|v| v.hlc.millis()))
            .collect();
        assert_eq!(got, want, "history of {} events", history.len());
    }

    #[test]
    fn keeps_the_newest_events() {
        let history = SyncHistory::new(3);
        assert!(history.is_empty());
        for (i, key) in ["a", "b", "a", "c", "a"].into_iter().enumerate() {
            history.record(event(key, i as u64));
        }
        check(&history, history.recent(10), &[4, 3, 2]);
        check(&history, history.recent(1), &[4]);
        check(&history, history.for_key(b"a"), &[4, 2]);
        check(&history, history.for_key(b"b"), &[]);
        assert_eq!(history.total_recorded(), 5);
        assert_eq!(history.capacity(), 3);
        assert_eq!(SyncHistory::new(0).capacity(), 1);
    }

    #[test]
    fn sources_describe_themselves() {
        let source = SyncSource::DeploymentSync {
            from: "source".into(),
            to: "target".into(),
        };
        assert_eq!(source.to_string(), "sync from source to target");
    }
}
