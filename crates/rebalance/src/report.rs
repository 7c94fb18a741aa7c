//! What a rebalancing run tells as it goes ([`Progress`]) and at the end ([`MoveReport`]), and the
//! distribution check ([`DistributionCheck`]).

use std::time::Duration;

use bytes::Bytes;
use sharding::DistributionReport;

/// A snapshot of a running move, given to the progress callback after every batch and every slot.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Slots finished so far in this pass.
    pub slots_done: usize,
    /// Slots this pass moves. A call that first finishes open migrations of an earlier run reports
    /// that pass first, then the planned one, each counting from zero.
    pub slots_total: usize,
    /// Keys moved so far in this pass.
    pub keys_moved: u64,
    /// Bytes moved so far in this pass (`MEMORY USAGE` estimates of the keys).
    pub bytes_moved: u64,
    /// The slot whose batch or end this snapshot follows.
    pub current_slot: Option<u16>,
    /// Time since the pass started.
    pub elapsed: Duration,
}

/// One moved slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotReport {
    /// The slot.
    pub slot: u16,
    /// The primary it left (`host:port`).
    pub from: String,
    /// The primary that owns it now.
    pub to: String,
    /// Keys sent with `MIGRATE` (a key deleted or expired between listing and sending counts too).
    pub keys: u64,
    /// Their bytes, as `MEMORY USAGE` estimated them.
    pub bytes: u64,
    /// From `SETSLOT IMPORTING` to the last `SETSLOT NODE`.
    pub took: Duration,
    /// Whether the move was an open migration left by an earlier run, finished by this one.
    pub resumed: bool,
}

/// A key the target already held when its slot moved (`BUSYKEY`), and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusyKey {
    /// The slot.
    pub slot: u16,
    /// The key.
    pub key: Bytes,
    /// The node the slot left.
    pub source: String,
    /// The node that already held the key.
    pub target: String,
}

/// The end of a run: every slot moved, totals, keys per second.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct MoveReport {
    /// Each slot moved, in the order they finished.
    pub slots: Vec<SlotReport>,
    /// Keys moved in all.
    pub keys: u64,
    /// Bytes moved in all (estimates).
    pub bytes: u64,
    /// Wall time of the run.
    pub took: Duration,
    /// Keys the target already held, whose target copy was kept and source copy deleted
    /// ([`BusyKeyPolicy::KeepTarget`](crate::BusyKeyPolicy::KeepTarget)).
    pub busy_keys: Vec<BusyKey>,
}

impl MoveReport {
    /// Keys moved per second of the run (0 for an instant or empty run).
    pub fn keys_per_second(&self) -> f64 {
        let seconds = self.took.as_secs_f64();
        if seconds > 0.0 {
            self.keys as f64 / seconds
        } else {
            0.0
        }
    }

    /// Slots moved.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots that were open migrations of an earlier run.
    pub fn resumed_count(&self) -> usize {
        self.slots.iter().filter(|s| s.resumed).count()
    }

    pub(crate) fn absorb(&mut self, other: MoveReport) {
        self.keys += other.keys;
        self.bytes += other.bytes;
        self.slots.extend(other.slots);
        self.busy_keys.extend(other.busy_keys);
    }
}

impl std::fmt::Display for MoveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} slots ({} resumed), {} keys, {} bytes in {:.2?} ({:.0} keys/s)",
            self.slot_count(),
            self.resumed_count(),
            self.keys,
            self.bytes,
            self.took,
            self.keys_per_second()
        )?;
        if !self.busy_keys.is_empty() {
            write!(
                f,
                "; {} keys already on their target kept there",
                self.busy_keys.len()
            )?;
        }
        Ok(())
    }
}

/// One primary's load, as [`Rebalancer::validate_distribution`](crate::Rebalancer::validate_distribution)
/// measured it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrimaryLoad {
    /// The primary (`host:port`).
    pub node: String,
    /// Its weight.
    pub weight: f64,
    /// Slots it serves.
    pub slots: usize,
    /// Keys it holds (`DBSIZE`).
    pub keys: u64,
    /// `used_memory` from `INFO memory`, in bytes.
    pub used_memory: u64,
}

/// Slots, keys and memory per primary, each judged by `sharding::check_distribution`'s rules
/// ([`DistributionReport`], relative to the weights) against the configured
/// [`DistributionThresholds`](sharding::DistributionThresholds).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DistributionCheck {
    /// Every primary, by name.
    pub primaries: Vec<PrimaryLoad>,
    /// Slot counts against the weights.
    pub slots: DistributionReport,
    /// Key counts against the weights (too few keys gives a `TooFewKeys` verdict, not a skew).
    pub keys: DistributionReport,
    /// Memory against the weights (each node's baseline of about 1 MB counts too).
    pub memory: DistributionReport,
}

impl DistributionCheck {
    /// Whether slots, keys and memory are all balanced (a verdict of too few keys counts as balanced:
    /// there is nothing to judge).
    pub fn is_balanced(&self) -> bool {
        [&self.slots, &self.keys, &self.memory].iter().all(|report| {
            matches!(
                report.verdict,
                sharding::Verdict::Balanced | sharding::Verdict::TooFewKeys { .. }
            )
        })
    }
}
