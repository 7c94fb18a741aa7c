#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod admin;
mod cluster;
mod error;
mod node;
mod reply;
mod sentinel;
mod server;
mod standalone;
pub mod test_lock;
mod tls;
mod topology;

pub use crate::{
    cluster::{ClusterState, LocalCluster, LocalClusterConfig, NodeState, state_path},
    error::Error,
    node::{FailoverKind, Node},
    reply::{FromReply, Reply},
    sentinel::{LocalSentinel, LocalSentinelConfig},
    server::NodeConfig,
    standalone::LocalStandalone,
    tls::{TlsClientAuth, TlsFiles},
};
/// Parsed `INFO` and `CLUSTER INFO` replies, and the `CLUSTER NODES` entries of
/// [`LocalCluster::topology`], are the workspace's one reading of those replies.
pub use replies::{ClusterNode, Info, Role};
