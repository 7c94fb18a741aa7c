//! Where a key lives: Redis Cluster slots, a ketama ring, or slot ranges over standalone nodes — plus
//! what moves when the nodes change and how evenly keys spread.
//!
//! Everything here is a pure function over plain data: no I/O, no async, no Redis client.
//!
//! - [`key_slot`] is Redis's `CLUSTER KEYSLOT`, hash tags included.
//! - [`SlotTable`] maps every slot to a shard, as `CLUSTER SHARDS` / `CLUSTER SLOTS` describe a cluster.
//! - [`KetamaRing`] places keys exactly as libmemcached (weighted ketama) and twemproxy
//!   (`distribution: ketama`, `hash: md5`) do, so their users keep a warm cache when they switch.
//! - [`KeyRange`] splits the slots into contiguous ranges over standalone nodes.
//! - All three implement [`Sharder`]: the shard of a key, and keys grouped by shard without copying.
//! - [`SlotMovePlan`] and [`KeyMovePlan`] say what moves when the topology changes;
//!   [`check_distribution`] says whether keys spread as the weights promise.
//!
//! ```
//! use sharding::{KetamaRing, KeyMovePlan, Sharder, SlotTable, key_slot};
//!
//! // A Redis Cluster of three shards, as CLUSTER SLOTS reports it.
//! let cluster = SlotTable::from_ranges([
//!     (0..=5460, "127.0.0.1:7000"),
//!     (5461..=10922, "127.0.0.1:7001"),
//!     (10923..=16383, "127.0.0.1:7002"),
//! ])?;
//! assert_eq!(key_slot(b"foo"), 12182);
//! assert_eq!(cluster.shard_of(b"foo"), Some(2));
//!
//! // Keys of one user share a slot through a hash tag, so a batch for them goes to one shard.
//! let keys = ["{user:7}:name", "{user:7}:cart", "{user:8}:name"];
//! let groups = cluster.group_by_shard(&keys);
//! let same_shard = groups.iter().any(|(_, indices)| indices.starts_with(&[0, 1]));
//! assert!(same_shard);
//!
//! // Client-side sharding over standalone nodes, and the cost of adding a node.
//! let ring = KetamaRing::new((1..=3).map(|i| (format!("10.0.0.{i}:6379"), 1)))?;
//! let bigger = ring.with_node("10.0.0.4:6379", 1)?;
//! let sample: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
//! let plan = KeyMovePlan::between(&ring, &bigger, &sample);
//! assert!(plan.moved_fraction() < 0.4); // Only the new node's share moves.
//! # Ok::<(), sharding::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]

mod distribution;
mod error;
mod ketama;
mod key_range;
mod nodes;
mod rebalance;
mod sharder;
mod slot;
mod slot_table;

pub use crate::{
    distribution::{
        DistributionReport, DistributionThresholds, ShardLoad, Verdict, Violation, check_distribution,
    },
    error::Error,
    ketama::KetamaRing,
    key_range::KeyRange,
    rebalance::{KeyFlow, KeyMovePlan, SlotMove, SlotMovePlan},
    sharder::{KeyGroups, Sharder},
    slot::{SLOT_COUNT, SlotRange, crc16_xmodem, hash_tag, key_slot},
    slot_table::SlotTable,
};
