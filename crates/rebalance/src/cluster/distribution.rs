//! The distribution check: slots, keys and memory per primary against the weights.

use futures::future::join_all;
use sharding::{DistributionReport, DistributionThresholds};

use super::view::{Ops, View};
use crate::{DistributionCheck, Error, PrimaryLoad, Weights};

/// Measures every primary of `view` (`DBSIZE`, `INFO memory`) and judges the three spreads.
pub(crate) async fn check(
    ops: Ops<'_>,
    view: &View,
    weights: &Weights,
    thresholds: &DistributionThresholds,
) -> Result<DistributionCheck, Error> {
    let table = view.slot_table()?;
    let primaries = view.primaries();
    let measured = join_all(primaries.iter().map(|p| async move {
        let keys: i64 = ops.words(p, &["DBSIZE"]).await?;
        let memory = ops.info(p, "memory").await?;
        Ok::<_, Error>((keys, memory.used_memory_bytes.unwrap_or(0)))
    }))
    .await;
    let mut loads = Vec::with_capacity(primaries.len());
    for (node, result) in primaries.iter().zip(measured) {
        let (keys, used_memory) = result?;
        loads.push(PrimaryLoad {
            node: node.clone(),
            weight: weights.of(node),
            slots: table.shard_index(node).map_or(0, |i| table.slot_count_of(i)),
            keys: u64::try_from(keys).unwrap_or(0),
            used_memory,
        });
    }
    let report = |value: fn(&PrimaryLoad) -> u64| {
        DistributionReport::from_counts(
            loads.iter().map(|l| (l.node.clone(), value(l), l.weight)),
            thresholds,
        )
    };
    Ok(DistributionCheck {
        slots: report(|l| l.slots as u64)?,
        keys: report(|l| l.keys)?,
        memory: report(|l| l.used_memory)?,
        primaries: loads,
    })
}
