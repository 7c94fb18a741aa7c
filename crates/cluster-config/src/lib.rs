#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod error;
mod fields;
mod node;
mod render;
mod secret;
mod settings;
mod sources;
mod validate;

pub use crate::{
    backoff::Backoff,
    error::{Error, Origin, Problem},
    node::{MAX_NODE_WEIGHT, NodeAddr},
    secret::{Password, SecretExport},
    settings::{
        ClusterConfig, Limits, MetricsConfig, Mode, ReplicaReadMode, ReplicaReads, ResolvedMode, RetryConfig,
        SentinelConfig, ServerKind, ShardingConfig, ShardingStrategy, Timeouts, TlsConfig,
    },
    sources::ClusterConfigBuilder,
};
