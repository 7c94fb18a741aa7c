#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]
// The warm-up futures nest deeply (cache -> warmup phases -> instrumented client calls): the layout of
// `preload_critical`'s future needs more than the default 128 levels of compiler queries.
#![recursion_limit = "256"]

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
#[cfg(feature = "prometheus")]
pub use health::PrometheusHandle;
#[cfg(feature = "health")]
pub use health::{Error as HealthError, HealthChecker, HealthStatus, HealthSummary};
pub use near_cache::{NearCache, NearSettings, NearStats};

#[cfg(feature = "prometheus")]
pub use crate::stats::install_prometheus;
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
    stats::{
        CacheStats, FAIL_SAFE_METRIC, HITS_METRIC, LOAD_ERRORS_METRIC, LOADS_METRIC, METRICS, MISSES_METRIC,
        OPERATION_DURATION_METRIC, STALE_REFUSED_METRIC, describe_metrics,
    },
};

// The crates underneath, whole, for the rest of the API of the handles above (a `ClusterClient`'s
// topology and events, a `Versioned`'s journal and audits, a `HealthChecker`'s alerts and trends), so a
// service needs no direct dependency on them and no second version of them.
pub use cluster_client;
pub use cluster_config;
pub use consistency;
#[cfg(feature = "health")]
pub use health;
pub use near_cache;
#[cfg(feature = "warmup")]
pub use warmup;
