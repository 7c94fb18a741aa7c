//! The typed cache API: one `Cache` that wires configuration, the cluster client and versioned writes,
//! and adds cache semantics — serde codecs, compression, TTL jitter, negative caching, single-flight
//! `get_or_load` with optional cross-process leases, and a fail-safe mode.
//!
//! In the background it collects cluster health (every 30 s by default) and repairs writes lost in a
//! failover. `warm_up` and `preload_critical` fill a cold cluster. Settings are a [`CacheConfig`], built
//! and checked once with [`CacheConfig::builder`].
//!
//! Logic lives in the crates whose job it is: routing and failover in `cluster-client`, last-write-wins
//! in `consistency`, warm-up in `warmup`, health in `health`. This crate re-exports by name every type
//! its own signatures use, and the crates underneath whole (`cache_facade::consistency`, ...).
//!
//! # Metrics
//!
//! The cache records counters and latencies through the `metrics` facade and installs no recorder:
//! that is the application's call, once per process. [`install_prometheus`] installs the Prometheus
//! recorder and serves `/metrics` (for example when `config.metrics().enabled`, from
//! `REDIS_CLUSTER_METRICS`).
//!
//! # Cargo features
//!
//! All on by default; with one off, its API is absent.
//! - `health`: background health collection ([`Cache::health`], [`Cache::cluster_health_summary`]).
//! - `prometheus` (implies `health`): [`install_prometheus`], the Prometheus recorder and its HTTP
//!   listener.
//! - `warmup`: [`Cache::warm_up`] and friends.
//! - `lz4`: compression of large values (`CacheConfig::compress_at_bytes`). Without it a compressed
//!   value reads as a typed `Decode` error.
//! - `postcard`: the compact binary codec, `Codec::Binary`. Without it such a value reads as a typed
//!   `Decode` error.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_facade::{Cache, ClusterConfig};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct User { id: u64, name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let cluster = local_cluster::LocalCluster::shared().await?;
//! # let seeds = cluster.seeds();
//! let cache = Cache::connect(ClusterConfig::builder().nodes(seeds).build()?).await?;
//!
//! // Typed reads and writes.
//! cache.set("user:1", &User { id: 1, name: "Ada".into() }, Some(Duration::from_secs(60))).await?;
//! assert_eq!(cache.get::<User>("user:1").await?.unwrap().name, "Ada");
//!
//! // Load on a miss; concurrent callers in this process share one load.
//! let user: User = cache
//!     .get_or_load("user:2", Some(Duration::from_secs(60)), || async {
//!         Ok::<_, std::io::Error>(User { id: 2, name: "Grace".into() })
//!     })
//!     .await?;
//! assert_eq!(user.id, 2);
//! assert_eq!(cache.stats().loads, 1);
//! # cache.delete("user:1").await?; cache.delete("user:2").await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod cache;
mod calls;
mod codec;
mod config;
mod error;
mod lease;
mod loading;
mod stats;
#[cfg(feature = "warmup")]
mod warm;

// The names a service needs, flat: every type in this crate's own signatures (its settings, results and
// the errors its `Error` wraps).
pub use cluster_client::{CallOptions, ClusterClient, Error as ClientError, ReadFrom, Ttl};
pub use cluster_config::{ClusterConfig, Error as ConfigError};
pub use consistency::{ConsistencyConfig, Error as ConsistencyError, Versioned};
#[cfg(feature = "health")]
pub use health::{Error as HealthError, HealthChecker, HealthStatus, HealthSummary};
#[cfg(feature = "prometheus")]
pub use health::{PrometheusHandle, install_prometheus};
#[cfg(feature = "warmup")]
pub use warmup::{
    Entry as WarmupEntry, Error as WarmupError, Priority, Progress as WarmupProgress, Report as WarmupReport,
    Source as WarmupSource, WarmupConfig,
};

pub use crate::{
    cache::Cache,
    calls::Write,
    codec::Codec,
    config::{CacheConfig, CacheConfigBuilder},
    error::Error,
    stats::CacheStats,
};

// The crates underneath, whole, for the rest of the API of the handles above (a `ClusterClient`'s
// topology and events, a `Versioned`'s journal and audits, a `HealthChecker`'s alerts and trends), so a
// service needs no direct dependency on them and no second version of them.
pub use cluster_client;
pub use cluster_config;
pub use consistency;
#[cfg(feature = "health")]
pub use health;
#[cfg(feature = "warmup")]
pub use warmup;
