//! The crate's one error type.

/// Why a ring, a slot table, a key-range layout or a distribution report could not be built.
///
/// Every message says what is wrong and how to fix it. Lookups never fail: once a value is built,
/// every key maps somewhere (or, for a [`SlotTable`](crate::SlotTable) with gaps, to "unassigned").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node list was empty.
    #[error("no nodes given; list at least one node as `host:port` with a weight")]
    NoNodes,
    /// A node name was the empty string.
    #[error("node {index} has an empty name; name every node `host:port`")]
    EmptyNodeName {
        /// Position of the node in the list, from 0.
        index: usize,
    },
    /// A node was given a weight of 0.
    #[error("node {node} has weight 0; give every node a weight of at least 1 or leave it out")]
    ZeroWeight {
        /// The node's name.
        node: String,
    },
    /// The same node name appeared twice.
    #[error("node {node} is listed twice; list every node once (raise its weight instead)")]
    DuplicateNode {
        /// The node's name.
        node: String,
    },
    /// A node to remove or reweight is not in the list.
    #[error("node {node} is not in the node list; use one of the names it was built with")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
    /// More nodes than the layout can address.
    #[error("{count} nodes given but at most {max} are supported; use fewer nodes")]
    TooManyNodes {
        /// How many nodes were given.
        count: usize,
        /// The most this layout supports.
        max: usize,
    },
    /// More shards than a slot table can hold.
    #[error("{count} shards named but a slot table holds at most {max}; check the shard names")]
    TooManyShards {
        /// How many shards were named.
        count: usize,
        /// The most a slot table holds.
        max: usize,
    },
    /// A node's weight is so small next to the others that it would receive no keys at all.
    #[error(
        "node {node} has weight {weight} out of a total of {total_weight}, too small to receive any keys; \
         raise its weight or leave it out"
    )]
    WeightTooSmall {
        /// The node's name.
        node: String,
        /// Its weight.
        weight: u32,
        /// The sum of all weights.
        total_weight: u64,
    },
    /// A slot number was 16,384 or more.
    #[error("slot {slot} is out of range; slots are 0 to 16383")]
    SlotOutOfRange {
        /// The offending slot number.
        slot: u32,
    },
    /// A slot range ended before it started.
    #[error("slot range {start}-{end} ends before it starts; write ranges as start-end with start <= end")]
    InvertedSlotRange {
        /// First slot of the range.
        start: u16,
        /// Last slot of the range.
        end: u16,
    },
    /// One slot was assigned to two different shards.
    #[error("slot {slot} is assigned to both {first} and {second}; assign every slot to one shard")]
    SlotAssignedTwice {
        /// The slot.
        slot: u16,
        /// The shard that got it first.
        first: String,
        /// The shard that claimed it again.
        second: String,
    },
    /// A shard name was the empty string.
    #[error("a slot range is assigned to a shard with an empty name; name every shard")]
    EmptyShardName,
    /// A distribution report was asked for with no shards.
    #[error("no shards to check; give at least one shard with its key count and weight")]
    NoShards,
    /// Every shard in a distribution check has weight 0.
    #[error(
        "every shard has weight 0, so no share can be expected; give at least one shard a positive weight"
    )]
    NoWeight,
    /// A shard weight in a distribution check was negative, infinite or not a number.
    #[error("shard {shard} has weight {weight}; weights must be finite and not negative")]
    InvalidShardWeight {
        /// The shard's name.
        shard: String,
        /// The weight given.
        weight: f64,
    },
}
