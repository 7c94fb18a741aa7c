//! Versioned last-write-wins writes decided on the server, failover write-loss repair, and audits
//! across replicas and deployments.
//!
//! - A [`Version`] is a hybrid logical clock value ([`Hlc`]: 48-bit milliseconds, 16-bit counter)
//!   plus a [`WriterId`]; the process [`Clock`] only goes forward, even when the wall clock steps back,
//!   and adopts a version it meets only within [`ConsistencyConfig::max_clock_drift`] of the wall
//!   clock (beyond it, the write fails with [`Error::ClockSkew`] and nothing is adopted).
//! - A versioned value is stored in one documented [`Envelope`] (magic, format, flags, version,
//!   payload). Plain values read as unversioned, never as a version.
//! - [`Versioned::set`] and [`Versioned::delete`] run one Lua script ([`LWW_SCRIPT`], called by SHA)
//!   that writes only if the incoming version is newer than the stored one, with the TTL in the same
//!   atomic step. Losing is a value: [`WriteOutcome::Stale`]. A delete leaves a tombstone for a while,
//!   so a slow loader's older set cannot bring the key back. [`WriteOptions::wait`] adds `WAIT`.
//! - The [`Journal`] (bounded by entries, age and bytes) remembers acknowledged writes and where each
//!   landed in its primary's replication stream; after a failover,
//!   [`Versioned::repair_after_failover`] writes again what it can show the promoted replica lost
//!   (never a key that was deleted since).
//! - [`Versioned::verify_consistency`], [`Versioned::audit`] and [`audit_between`] compare copies on
//!   primaries and replicas, or between two deployments, and repair by last-write-wins; every repair
//!   lands in the [`SyncHistory`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use consistency::{ConsistencyConfig, KeyState, Versioned, WriteOptions, WriteOutcome};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let cluster = local_cluster::LocalCluster::shared().await?;
//! # let seeds = cluster.seeds();
//! // `seeds` is a list of "host:port" (for example from REDIS_CLUSTER_NODES).
//! let config = cluster_config::ClusterConfig::builder().nodes(seeds).build()?;
//! let client = cluster_client::ClusterClient::connect(config).await?;
//! let store = Versioned::new(client, ConsistencyConfig::default())?;
//!
//! // A loader read the price at version `old`, then someone wrote a newer price.
//! let old = store.next_version();
//! store.set(b"doc:price", b"42", None, WriteOptions::wait(1, Duration::from_secs(1))).await?;
//!
//! // The slow loader's write arrives late: the server refuses it and says what is stored.
//! let late = store.set_with_version(b"doc:price", b"40", old, None, WriteOptions::default()).await?;
//! assert!(matches!(late, WriteOutcome::Stale { deleted: false, .. }));
//! let read = store.get(b"doc:price").await?.expect("the newer price is stored");
//! assert_eq!(read.value().as_ref(), b"42");
//!
//! // The primary and its replica hold the same version.
//! assert_eq!(store.verify_consistency(b"doc:price").await?.state, KeyState::Consistent);
//! # Ok(())
//! # }
//! ```
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
        ReplicationMark,
    },
    monitor::Monitor,
    report::{AuditProgress, AuditReport, CopyRole, KeyReport, NodeCopy, RepairCounts, StateCounts},
    script::LWW_SCRIPT,
    state::{KeyState, Observed, SyncDirection},
    version::{Clock, Hlc, Version, WriterId},
    versioned::{
        ConsistencyConfig, MAX_CLOCK_DRIFT, MAX_REPLICA_CATCH_UP, MAX_TOMBSTONE_TTL, MAX_WAIT_TIMEOUT,
        Versioned, VersionedValue, WriteOptions, WriteOutcome,
    },
};
