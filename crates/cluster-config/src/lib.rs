//! One validated [`ClusterConfig`] for the Redis cache layer, read from the environment, a file and a
//! builder: plain settings (nodes, credentials, timeouts, retries, limits) that `cluster-client` turns
//! into connections.
//!
//! Sources stack in increasing priority: defaults < TOML or YAML file < `REDIS_*` environment variables
//! < builder methods. Validation runs once and lists every problem, each naming the environment variable
//! and file key to fix. The password is a [`Password`], which never prints itself. This crate does no
//! I/O beyond reading the environment and one file, and opens no connection.
//!
//! ```
//! use std::time::Duration;
//! use cluster_config::{ClusterConfig, Mode};
//!
//! // In production: `ClusterConfig::from_env()?`. Here the variables are given explicitly.
//! let config = ClusterConfig::from_env_vars([
//!     ("REDIS_CLUSTER_NODES", "10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"),
//!     ("REDIS_PASSWORD", "s3cret"),
//!     ("REDIS_COMMAND_TIMEOUT_MS", "500"),
//! ])?;
//! assert_eq!(config.mode(), Mode::Auto);
//! assert_eq!(config.retry().max_retries, 5); // the spec's default
//! assert_eq!(config.timeouts().command, Duration::from_millis(500));
//! assert!(!format!("{config:?}").contains("s3cret"));
//!
//! // Plain settings: the nodes, parsed once, and the credentials.
//! assert_eq!(config.nodes()[0].to_string(), "10.0.0.1:6379");
//! assert_eq!(config.password().map(|p| p.expose()), Some("s3cret"));
//!
//! // Every problem at once, each naming what to fix.
//! let error = ClusterConfig::from_env_vars([("REDIS_CONNECTION_POOL_SIZE", "0")]).unwrap_err();
//! let message = error.to_string();
//! assert!(message.contains("REDIS_CLUSTER_NODES") && message.contains("REDIS_CONNECTION_POOL_SIZE"));
//! # Ok::<(), cluster_config::Error>(())
//! ```
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
    node::NodeAddr,
    secret::{Password, SecretExport},
    settings::{
        ClusterConfig, Limits, MetricsConfig, Mode, ReplicaReadMode, ReplicaReads, ResolvedMode, RetryConfig,
        ServerKind, ShardingConfig, ShardingStrategy, Timeouts,
    },
    sources::ClusterConfigBuilder,
};
