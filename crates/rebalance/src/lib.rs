#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod cluster;
mod config;
mod error;
mod plan;
mod report;
pub mod sharded;

pub use crate::cluster::{ProgressFn, Rebalancer};
pub use crate::config::{BusyKeyPolicy, MAX_KEYS_PER_BATCH, RebalanceConfig, RebalanceConfigBuilder};
pub use crate::error::Error;
pub use crate::plan::{Plan, PlannedMove, PrimaryShare, Weights};
pub use crate::report::{BusyKey, DistributionCheck, MoveReport, PrimaryLoad, Progress, SlotReport};
