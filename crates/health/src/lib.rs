//! Health of a Redis Cluster (or of standalone Redis nodes): a snapshot of every node every interval,
//! anomaly rules over snapshots, alerts that fire and resolve, 24-hour trends, and Prometheus metrics.
//!
//! The core is pure: [`Monitor`] judges [`Snapshot`]s with the rules in [`AlertKind`] (each a function
//! of snapshots and [`Thresholds`]), keeps alerts in an [`AlertManager`] and trends in a [`TrendRing`].
//! The I/O shell, [`HealthChecker`], polls every node through cluster-client's node probes, over probe
//! connections no call shares (`PING` timed, `INFO`, `CLUSTER INFO`, `CLUSTER NODES`, all nodes
//! concurrently, each bounded by a node timeout) and feeds the monitor. Metrics go through the `metrics`
//! facade; with the `prometheus` feature (on by default), `install_prometheus` installs the Prometheus
//! recorder and serves them on `/metrics`, a call that is the application's to make, once per process.
//!
//! # Example
//!
//! ```
//! use cluster_config::ClusterConfig;
//! use health::{HealthChecker, HealthConfig, HealthStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let redis = local_cluster::LocalStandalone::start(1).await?;
//! # let addr = redis.addrs()[0].clone();
//! // `addr` is a running Redis, e.g. "127.0.0.1:6379".
//! let config = ClusterConfig::builder().nodes([addr.as_str()]).build()?;
//! let checker = HealthChecker::new(&config, HealthConfig::from_config(&config))?;
//! let _background = checker.spawn(); // every 30 s (REDIS_HEALTH_INTERVAL_MS) until dropped
//!
//! let round = checker.check_now().await; // or wait for the background loop
//! assert_eq!(round.summary.status, HealthStatus::Healthy);
//! assert_eq!((round.summary.nodes_connected, round.summary.nodes_total), (1, 1));
//! assert!(checker.active_alerts().is_empty());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod alerts;
mod checker;
mod collector;
mod config;
mod error;
mod export;
mod monitor;
mod parse;
mod rules;
mod snapshot;
mod summary;
mod trends;

#[cfg(feature = "prometheus")]
pub use crate::export::install_prometheus;
pub use crate::{
    alerts::{Alert, AlertEvent, AlertManager},
    checker::{HealthChecker, HealthTask},
    config::{HealthConfig, HealthConfigBuilder, MAX_INTERVAL, MIN_INTERVAL},
    error::Error,
    export::{METRICS, describe_metrics, record_metrics},
    monitor::{Monitor, Observation},
    parse::{parse_cluster_info, parse_cluster_nodes, parse_info},
    rules::{
        AlertKind, Finding, LatencyBaseline, RuleInput, Severity, Thresholds, detect_failovers, evaluate,
    },
    snapshot::{
        ClientNodeStats, ClusterInfo, DbKeys, FailoverRecord, FailoverSource, NodeSnapshot, PrimaryLink,
        ReplicaLink, Role, ServerInfo, Snapshot, TopologyNode,
    },
    summary::{HealthStatus, HealthSummary, NodeMemory, ReplicationSummary, cluster_health_summary},
    trends::{
        TREND_BUDGET_BYTES, TREND_MAX_SAMPLES, TREND_RETENTION, TrendMetric, TrendRing, TrendSample,
        WindowStats,
    },
};
#[cfg(feature = "prometheus")]
pub use metrics_exporter_prometheus::PrometheusHandle;
