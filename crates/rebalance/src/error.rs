//! The crate's error type.

use std::time::Duration;

/// Why a rebalancing call failed. Messages say what is wrong and how to fix it; none carries a
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; nothing was done.
    #[error("rebalance setting `{field}` is {value}: {allowed}")]
    InvalidConfig {
        /// The builder setter (and field) to fix.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        allowed: String,
    },
    /// A weight is negative, not finite, or names no primary; nothing was done.
    #[error("weight {weight} for {node} is invalid: {reason}")]
    InvalidWeight {
        /// The node the weight was given for.
        node: String,
        /// The weight.
        weight: f64,
        /// What is wrong and what to use.
        reason: String,
    },
    /// Every primary would get weight 0: the slots would have nowhere to go.
    #[error("every primary has weight 0; give at least one primary a positive weight")]
    NoWeight,
    /// The client is not connected to a Redis Cluster (standalone or client-sharded deployment).
    #[error(
        "the client is connected to a {deployment} deployment, not a Redis Cluster; rebalance a cluster \
         (client-sharded mode has its own rebalancing)"
    )]
    NotACluster {
        /// What the client is connected to.
        deployment: String,
    },
    /// The address is not a primary of this cluster.
    #[error("{node} is not a primary of this cluster; primaries: {primaries}")]
    UnknownPrimary {
        /// The address given.
        node: String,
        /// The cluster's primaries, comma-separated.
        primaries: String,
    },
    /// Removing the node would leave the cluster without a primary to hold its slots.
    #[error("{node} is the last primary with a positive weight; add another primary before removing it")]
    LastPrimary {
        /// The node.
        node: String,
    },
    /// A node to add already holds keys, or serves slots.
    #[error(
        "{node} is not empty ({keys} keys, {slots} slots); add an empty node (FLUSHALL and CLUSTER RESET \
         it first if its data is not needed)"
    )]
    NodeNotEmpty {
        /// The node.
        node: String,
        /// Keys it holds (`DBSIZE`).
        keys: u64,
        /// Slots it serves.
        slots: usize,
    },
    /// A node to add already knows other cluster nodes: it belongs to another cluster.
    #[error(
        "{node} already knows {known} other cluster nodes: it belongs to another cluster; remove it there \
         (or CLUSTER RESET it) first"
    )]
    NodeInOtherCluster {
        /// The node.
        node: String,
        /// How many other nodes it knows.
        known: usize,
    },
    /// A node to add is already a member of this cluster.
    #[error("{node} is already a member of this cluster (as a {role}); nothing to add")]
    AlreadyMember {
        /// The node.
        node: String,
        /// `primary` or `replica`.
        role: &'static str,
    },
    /// A node named in the call did not answer.
    #[error("{node} did not answer ({detail}); check the address and that the server runs")]
    NodeUnreachable {
        /// The node.
        node: String,
        /// What went wrong.
        detail: String,
    },
    /// A node to add does not run in cluster mode.
    #[error("{node} does not run in cluster mode (cluster-enabled yes is needed)")]
    NotClusterEnabled {
        /// The node.
        node: String,
    },
    /// The cluster has slots no primary serves; a plan cannot move slots that have no owner.
    #[error(
        "{count} slots are not served by any primary ({ranges}); fix coverage first (redis-cli --cluster fix)"
    )]
    UncoveredSlots {
        /// How many.
        count: usize,
        /// Their ranges.
        ranges: String,
    },
    /// The nodes did not agree in time (gossip of a new node, a replica's link, slot ownership).
    #[error("timed out after {waited:?} waiting for {what}; check the nodes' logs and cluster-node-timeout")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The target of a move already holds a key and the policy is [`BusyKeyPolicy::Abort`](crate::BusyKeyPolicy::Abort):
    /// the slot is left migrating for an operator to inspect; `resume()` finishes it.
    #[error(
        "slot {slot}: {target} already holds key {key} that {source_node} also holds; the move stopped \
         (BusyKeyPolicy::Abort). Inspect both copies, delete the stale one, then call resume()"
    )]
    BusyKey {
        /// The slot.
        slot: u16,
        /// The key, printable.
        key: String,
        /// The node the slot leaves.
        source_node: String,
        /// The node the slot goes to.
        target: String,
    },
    /// A reply did not have the shape expected.
    #[error("unexpected reply from {node} to {command}: {detail}")]
    Reply {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// What was unexpected.
        detail: String,
    },
    /// The cluster is in a state the operation cannot proceed from (for example a slot owned by no
    /// one after a crash, or nodes disagreeing).
    #[error("{0}")]
    Inconsistent(String),
    /// A call through cluster-client failed.
    #[error(transparent)]
    Client(#[from] cluster_client::Error),
    /// The plan was invalid for sharding (should not happen: a bug report is welcome).
    #[error(transparent)]
    Sharding(#[from] sharding::Error),
}
