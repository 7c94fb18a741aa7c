#![doc = include_str!("../README.md")]
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
