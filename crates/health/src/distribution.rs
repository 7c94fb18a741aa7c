//! How evenly data spreads over the primaries: slots, keys and memory per primary, judged with
//! `sharding`'s distribution statistics, for [`AlertKind::DistributionSkewed`](crate::AlertKind) and
//! the `rcc_distribution_*` series.
//!
//! Pure functions over a [`Snapshot`]: the collector already reads every number needed (slots from
//! `CLUSTER NODES`, keys from `INFO keyspace`, memory from `INFO memory`).

use std::fmt;

use serde::{Deserialize, Serialize};
use sharding::{DistributionReport, DistributionThresholds};

use crate::snapshot::Snapshot;

/// What is counted per primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DistributionDimension {
    /// Slots each primary serves (`CLUSTER NODES`).
    Slots,
    /// Keys each primary holds (`INFO keyspace`, every database).
    Keys,
    /// Bytes each primary uses (`INFO memory` `used_memory`).
    Memory,
}

impl DistributionDimension {
    /// Every dimension, in a stable order.
    pub const ALL: [DistributionDimension; 3] = [
        DistributionDimension::Slots,
        DistributionDimension::Keys,
        DistributionDimension::Memory,
    ];

    /// `slots`, `keys` or `memory`, as in the `dimension` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DistributionDimension::Slots => "slots",
            DistributionDimension::Keys => "keys",
            DistributionDimension::Memory => "memory",
        }
    }
}

impl fmt::Display for DistributionDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dimension judged: the counts per primary and `sharding`'s verdict on them.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionReport {
    /// What was counted.
    pub dimension: DistributionDimension,
    /// Counts per primary (address), their spread and the verdict against the thresholds.
    pub report: DistributionReport,
}

/// Judges the slots, keys and memory of every slot-serving primary in `snapshot` against
/// `thresholds`, every primary weighing the same.
///
/// A dimension is left out when it cannot be judged fairly: all of them outside cluster mode or with
/// fewer than two serving primaries; keys and memory when a serving primary did not answer this round,
/// or when the primaries hold fewer than `min_keys` keys in all (a small data set spreads unevenly by
/// chance, and a nearly empty node's memory is its fixed overhead).
pub fn primary_distribution(
    snapshot: &Snapshot,
    thresholds: &DistributionThresholds,
    min_keys: u64,
) -> Vec<DimensionReport> {
    if !snapshot.cluster_mode {
        return Vec::new();
    }
    let primaries: Vec<_> = snapshot.serving_primaries().collect();
    if primaries.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let slots = primaries
        .iter()
        .map(|p| (p.addr.clone(), u64::from(p.slot_count()), 1.0));
    if let Ok(report) = DistributionReport::from_counts(slots, thresholds) {
        out.push(DimensionReport {
            dimension: DistributionDimension::Slots,
            report,
        });
    }
    let infos: Option<Vec<_>> = primaries
        .iter()
        .map(|p| {
            let info = snapshot.node(&p.addr).filter(|n| n.reachable)?.info.as_ref()?;
            Some((p.addr.clone(), info.keys(), info.used_memory_bytes))
        })
        .collect();
    let Some(infos) = infos else { return out };
    if infos.iter().map(|(_, keys, _)| keys).sum::<u64>() < min_keys {
        return out;
    }
    for dimension in [DistributionDimension::Keys, DistributionDimension::Memory] {
        let counts = infos.iter().map(|(addr, keys, memory)| {
            let count = if dimension == DistributionDimension::Keys {
                *keys
            } else {
                *memory
            };
            (addr.clone(), count, 1.0)
        });
        if let Ok(report) = DistributionReport::from_counts(counts, thresholds) {
            out.push(DimensionReport { dimension, report });
        }
    }
    out
}
