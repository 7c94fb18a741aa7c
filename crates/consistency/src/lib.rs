#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod audit;
mod deployment;
mod digest;
mod envelope;
mod error;
mod failover;
mod history;
mod journal;
mod monitor;
mod reads;
mod report;
mod script;
mod state;
mod version;
mod versioned;

pub use crate::{
    audit::{AuditMode, AuditOptions},
    deployment::audit_between,
    envelope::{Envelope, EnvelopeProblem, FORMAT_VERSION, HEADER_LEN, Header, MAGIC},
    error::Error,
    failover::{Failover, FailoverRepairTask, JournalCheck},
    history::{SyncEvent, SyncHistory, SyncSource},
    journal::{
        ENTRY_OVERHEAD_BYTES, JOURNAL_BYTES_METRIC, JOURNAL_ENTRIES_DROPPED_METRIC,
        JOURNAL_VALUES_DROPPED_METRIC, Journal, JournalConfig, JournalEntry, MAX_JOURNAL_AGE,
        ReplicationMark, describe_metrics,
    },
    monitor::Monitor,
    report::{AuditProgress, AuditReport, CopyRole, KeyReport, NodeCopy, RepairCounts, StateCounts},
    script::{LWW_MANY_SCRIPT, LWW_SCRIPT},
    state::{KeyState, Observed, SyncDirection},
    version::{Clock, Hlc, Version, WriterId},
    versioned::{
        ConsistencyConfig, DeleteOutcome, MAX_CLOCK_DRIFT, MAX_REPLICA_CATCH_UP, MAX_TOMBSTONE_TTL,
        MAX_WAIT_TIMEOUT, Versioned, VersionedValue, WriteOptions, WriteOutcome,
    },
};
