//! Versioned last-write-wins writes decided on the server, failover write-loss repair, and audits
//! across replicas and deployments.
#![warn(missing_docs, unreachable_pub)]

mod envelope;
mod error;
mod history;
mod journal;
mod report;
mod script;
mod state;
mod version;

pub use crate::{
    envelope::{Envelope, EnvelopeProblem, FORMAT_VERSION, HEADER_LEN, Header, MAGIC},
    error::Error,
    history::{SyncEvent, SyncHistory, SyncSource},
    journal::{Journal, JournalConfig, JournalEntry},
    report::{AuditProgress, AuditReport, CopyRole, KeyReport, NodeCopy, RepairCounts, StateCounts},
    script::LWW_SCRIPT,
    state::{KeyState, Observed, SyncDirection},
    version::{Clock, Hlc, Version, WriterId},
};
