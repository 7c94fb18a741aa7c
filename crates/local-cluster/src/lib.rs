//! Real `redis-server` processes for tests, benches and tools: a Redis Cluster of N primaries × R
//! replicas, or standalone nodes, on free loopback ports in a temporary directory, with fault injection.
//!
//! Every process is stopped by its PID when the handle drops, also while a test unwinds from a panic.
//! Nothing here is a mock: the cluster is formed with `CLUSTER MEET`, `ADDSLOTSRANGE` and `REPLICATE`,
//! and faults are real signals (`SIGKILL`, `SIGSTOP`) or real commands (`CLIENT PAUSE`,
//! `CLUSTER FAILOVER`, slot migration with `MIGRATE`). Admin commands go over short-lived RESP2
//! connections of this crate's own ([`Node::command`], replies as [`Reply`]), each call bounded by a
//! timeout and a reply size, so this crate pins no Redis client library on its users.
//!
//! When `redis-server` is not installed, starting fails with [`Error::RedisServerMissing`], whose
//! message gives the install command.
//!
//! # Example
//!
//! ```
//! use local_cluster::{LocalClusterConfig, LocalCluster, Role};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), local_cluster::Error> {
//! let _lock = local_cluster::test_lock::exclusive().await?;
//! let cluster = LocalCluster::start(LocalClusterConfig { masters: 3, replicas_per_master: 1, ..Default::default() }).await?;
//! assert_eq!(cluster.nodes().len(), 6);
//!
//! // Kill the primary of slot 0; one of its replicas takes over its slots.
//! let victim = cluster.primary_for_slot(0).await?;
//! victim.kill()?;
//! let promoted = cluster.wait_for_promotion(victim, std::time::Duration::from_secs(15)).await?;
//! assert_eq!(promoted.role().await?, Role::Primary);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod admin;
mod cluster;
mod error;
mod node;
mod reply;
mod server;
mod standalone;
pub mod test_lock;
mod topology;

pub use crate::{
    cluster::{ClusterState, LocalCluster, LocalClusterConfig, NodeState, state_path},
    error::Error,
    node::{FailoverKind, Node},
    reply::{FromReply, Reply},
    server::NodeConfig,
    standalone::LocalStandalone,
};
/// Parsed `INFO` and `CLUSTER INFO` replies, and the `CLUSTER NODES` entries of
/// [`LocalCluster::topology`], are the workspace's one reading of those replies.
pub use replies::{ClusterNode, Info, Role};
