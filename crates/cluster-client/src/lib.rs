//! The one way bytes reach Redis: a client for a Redis Cluster, one standalone Redis, or standalone
//! nodes sharded client-side (ketama or key ranges), whose own slot routing keeps the healthy shards
//! serving while a primary fails over.
//!
//! It keeps one fred *centralized* client per node (fred does connections, RESP, pipelining and
//! reconnects) and owns the rest: the slot table (from `CLUSTER SHARDS`, refreshed every 10 s, on MOVED,
//! on node errors, and every 100 ms while a shard has no reachable primary), MOVED/ASK/TRYAGAIN/
//! CLUSTERDOWN/LOADING handling within each call's deadline, fail-fast errors naming the shard whose
//! primary is down, multi-key batches split by node, replica reads guarded by sampled lag and
//! read-your-writes, and events for topology changes, nodes down/up and failovers.
//!
//! fred is an implementation detail: replies of scripts and node-addressed commands come back as this
//! crate's [`Value`] (converted to Rust types with [`FromValue`]), and health probes of one node
//! ([`ClusterClient::probe_node`], [`NodeProber`]) run on connections of this crate's own.
//!
//! # Example
//!
//! ```
//! use cluster_client::{ClusterClient, SetOptions};
//! use cluster_config::ClusterConfig;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let cluster = local_cluster::LocalCluster::shared().await?;
//! # let seeds = cluster.seeds();
//! // `seeds` is a list of "host:port" (for example from REDIS_CLUSTER_NODES).
//! let client = ClusterClient::connect(ClusterConfig::builder().nodes(seeds).build()?).await?;
//! client.set(b"user:42", b"Ada", SetOptions::ttl(std::time::Duration::from_secs(60))).await?;
//! assert_eq!(client.get(b"user:42").await?.as_deref(), Some(&b"Ada"[..]));
//!
//! // Many keys across slots: one pipeline per node, results in input order.
//! let values = client.get_many(&[&b"user:42"[..], b"user:43"]).await;
//! assert_eq!(values[0].as_ref().unwrap().as_deref(), Some(&b"Ada"[..]));
//! assert_eq!(values[1].as_ref().unwrap(), &None);
//! client.close().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod client;
mod durations;
mod error;
mod events;
mod fred_config;
mod lane;
mod node;
mod probe;
mod recent;
mod script;
mod topology;
mod value;
mod wait;

pub use bytes::Bytes;
pub use sharding::SlotRange;

pub use crate::{
    client::{CallOptions, ClusterClient, ReadFrom, SetCondition, SetOptions, Ttl},
    durations::{MAX_TIMEOUT, MAX_TTL, MIN_TIMEOUT},
    error::{Error, printable_key},
    events::ClientEvent,
    node::{LANE_DEPTH, NodeStats, describe_metrics},
    probe::{ClusterView, NodeProbe, NodeProber},
    script::Script,
    topology::{Deployment, ShardInfo, Topology},
    value::{FromValue, Value},
    wait::WaitOutcome,
};
