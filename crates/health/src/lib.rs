#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod alerts;
mod checker;
mod collector;
mod config;
mod distribution;
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
    distribution::{DimensionReport, DistributionDimension, primary_distribution},
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
