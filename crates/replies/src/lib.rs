//! The text replies of Redis, read in one place: `INFO` (and `CLUSTER INFO`, which has its format),
//! `CLUSTER NODES`, node roles, and the failover diff between two views of a cluster.
//!
//! Everything here is a pure function over text or plain data: no I/O, no async, no Redis client. Every
//! crate that reads one of these replies (the client, health, consistency, warm-up, local-cluster)
//! imports it from here, so a protocol detail is parsed once and tested once. Slot ranges are
//! [`sharding::SlotRange`] and addresses [`cluster_config::NodeAddr`], as everywhere else.
//!
//! Hostile text never panics: `INFO` parsing cannot fail (what does not read is absent), and a
//! malformed `CLUSTER NODES` line is an [`Error`] quoting it.
//!
//! ```
//! use replies::{Info, Role, ShardView, failovers, parse_cluster_nodes};
//!
//! // INFO replication of a primary with one replica.
//! let info = Info::parse(
//!     "# Replication\r\nrole:master\r\nslave0:ip=127.0.0.1,port=7004,state=online,offset=90,lag=0\r\n\
//!      master_repl_offset:100\r\n",
//! );
//! assert_eq!(info.role, Some(Role::Primary));
//! assert_eq!(info.master_repl_offset.unwrap() - info.replicas[0].offset, 10);
//!
//! // Two CLUSTER NODES replies, before and after the replica took over.
//! let before = parse_cluster_nodes(
//!     "aa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n\
//!      bb 127.0.0.1:7004@17004 slave aa 0 0 1 connected\n",
//! )?;
//! let after = parse_cluster_nodes(
//!     "aa 127.0.0.1:7000@17000 master,fail - 0 0 1 disconnected\n\
//!      bb 127.0.0.1:7004@17004 myself,master - 0 0 2 connected 0-16383\n",
//! )?;
//! // Who serves which slots, and who replicated whom, by node ID.
//! let view = |nodes: &[replies::ClusterNode]| -> Vec<ShardView<String>> {
//!     nodes
//!         .iter()
//!         .filter(|n| n.is_primary() && !n.slots.is_empty())
//!         .map(|p| ShardView {
//!             primary: p.id.clone(),
//!             replicas: nodes
//!                 .iter()
//!                 .filter(|r| r.primary_id.as_ref() == Some(&p.id))
//!                 .map(|r| r.id.clone())
//!                 .collect(),
//!             slots: p.slots.clone(),
//!         })
//!         .collect()
//! };
//! let seen = failovers(&view(&before), &view(&after));
//! assert_eq!((seen[0].old_primary.as_str(), seen[0].new_primary.as_str()), ("aa", "bb"));
//! # Ok::<(), replies::Error>(())
//! ```
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
