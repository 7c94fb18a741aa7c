#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod cluster_nodes;
mod error;
mod failover;
mod info;
mod role;

pub use crate::{
    cluster_nodes::{ClusterNode, MigrationDirection, SlotMigration, parse_cluster_nodes},
    error::Error,
    failover::{Failover, ShardView, failovers},
    info::{Info, KeyspaceInfo, PrimaryLink, ReplicaInfo},
    role::Role,
};
