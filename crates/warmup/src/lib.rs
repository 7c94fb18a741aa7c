//! Shard-aware, parallel, priority-ordered cache warming with validation and rollback, including
//! migration from a standalone Redis.
//!
//! A [`Warmup`] reads entries from a [`Source`] (an iterator or stream of [`Entry`] values, a
//! JSON-lines file, or another Redis through `SCAN` + `DUMP`/`PTTL`), and for each window of entries:
//!
//! - plans: the last entry for a key wins; entries are split into phases by [`Priority`] (every
//!   critical entry is written before the first high one, and so on), then grouped by shard from the
//!   live topology, in slot order, and cut into batches;
//! - writes: up to [`WarmupConfig::shard_parallelism`] shards at a time (default 3), several batches
//!   in flight per shard, one command per slot group sent to the shard's primary (`MSET`, or a
//!   `SET … PX` script when entries have TTLs), falling back to `set_many` (which follows MOVED/ASK)
//!   for any group that fails; or through `consistency`'s versioned writes ([`Warmup::versioned`]).
//!   `DUMP` payloads are restored with `RESTORE … REPLACE`, so every data type and TTL carries over;
//! - keeps going while slots migrate (MOVED/ASK are followed by `cluster-client`), plans the remaining
//!   batches again when the topology changes, and retries transient failures;
//! - reports progress (counts, bytes, rate, ETA, per shard) through [`Warmup::on_progress`] and
//!   [`Warmup::subscribe`].
//!
//! Each window is validated once written ([`ValidationConfig`]: `WAIT` for the replicas, read back from
//! every replica, all entries or a sample; a copy another client replaced since is superseded, not
//! bad). When the share of bad entries is above [`WarmupConfig::rollback_threshold`], the warm-up rolls
//! back: every key it wrote gets its previous value and TTL back (captured before it was overwritten,
//! within [`WarmupConfig::undo_budget_bytes`]), or is deleted if it did not exist, but only if the key
//! still holds exactly what the warm-up wrote (compared on the server): other clients' later writes
//! are kept. Everything lands in a [`Report`]; only a source that cannot be opened is an [`Error`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cluster_client::ClusterClient;
//! use warmup::{Entry, Priority, Source, Warmup, WarmupConfig};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let cluster = local_cluster::LocalCluster::shared().await?;
//! # let seeds = cluster.seeds();
//! // `seeds` is a list of "host:port" (for example from REDIS_CLUSTER_NODES).
//! let client = ClusterClient::connect(cluster_config::ClusterConfig::builder().nodes(seeds).build()?).await?;
//! let warmup = Warmup::new(client.clone(), WarmupConfig::default())?
//!     .on_progress(|p| println!("{} of {} written, eta {:?}", p.written, p.planned, p.eta));
//!
//! let entries = (0..1_000).map(|i| {
//!     let entry = Entry::new(format!("doc:product:{i}"), format!("product {i}"));
//!     if i < 10 { entry.priority(Priority::Critical) } else { entry.ttl(Duration::from_secs(3600)) }
//! });
//! let report = warmup.run(Source::entries(entries)).await?;
//!
//! assert_eq!(report.written, 1_000);
//! assert!(report.is_clean(), "{report}");
//! // Every entry was read back from the replicas.
//! assert_eq!(report.validation.as_ref().map(|v| v.sampled), Some(1_000));
//! assert_eq!(client.get(b"doc:product:7").await?.as_deref(), Some(&b"product 7"[..]));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod config;
mod digest;
mod entry;
mod error;
mod plan;
mod progress;
mod report;
mod run;
mod script;
mod source;
mod undo;
mod validate;
mod write;

pub use crate::{
    config::{ValidationConfig, WarmupConfig},
    entry::{Entry, Payload, Priority},
    error::Error,
    progress::{Phase, Progress},
    report::{
        BadEntry, KeyFailure, Rejected, Report, RollbackReport, ShardAck, ShardCounts, UndoReport,
        ValidationProblem, ValidationReport,
    },
    run::Warmup,
    source::{RedisSource, Source},
};
