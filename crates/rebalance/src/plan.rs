//! Pure planning: which slots move from which primary to which, given the slots each primary holds
//! and the weights. No I/O; [`Rebalancer::plan`](crate::Rebalancer::plan) feeds it the live topology.

use std::collections::BTreeMap;

use sharding::{SLOT_COUNT, SlotMovePlan, SlotRange, SlotTable};

use crate::Error;

/// Relative shares of the slots per primary (`host:port`); a primary not named weighs 1.
///
/// Weight 0 drains a primary. Weights are relative: `a: 2, b: 1` gives `a` two thirds of the slots
/// of the two.
///
/// ```
/// let weights = rebalance::Weights::new().with("127.0.0.1:7000", 2.0).with("127.0.0.1:7001", 0.0);
/// assert_eq!(weights.of("127.0.0.1:7000"), 2.0);
/// assert_eq!(weights.of("127.0.0.1:7002"), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    weights: BTreeMap<String, f64>,
}

impl Weights {
    /// Every primary weighs 1.
    pub fn new() -> Weights {
        Weights::default()
    }

    /// These weights with `node`'s set to `weight`.
    pub fn with(mut self, node: impl Into<String>, weight: f64) -> Weights {
        self.set(node, weight);
        self
    }

    /// Sets `node`'s weight.
    pub fn set(&mut self, node: impl Into<String>, weight: f64) {
        self.weights.insert(node.into(), weight);
    }

    /// `node`'s weight (1 when not set).
    pub fn of(&self, node: &str) -> f64 {
        self.weights.get(node).copied().unwrap_or(1.0)
    }

    /// The weights set explicitly, by node.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.weights.iter().map(|(node, &weight)| (node.as_str(), weight))
    }

    /// Whether `node` has an explicit weight.
    pub fn contains(&self, node: &str) -> bool {
        self.weights.contains_key(node)
    }
}

/// One slot to move.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct PlannedMove {
    /// The primary that owns it now (`host:port`).
    pub from: String,
    /// The primary that owns it afterwards.
    pub to: String,
    /// The slot.
    pub slot: u16,
}

/// One primary's part in a [`Plan`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PrimaryShare {
    /// The primary (`host:port`).
    pub node: String,
    /// Its weight.
    pub weight: f64,
    /// Its exact weighted share of the 16,384 slots.
    pub ideal: f64,
    /// Slots it holds now.
    pub slots_before: usize,
    /// Slots it holds after the plan.
    pub slots_after: usize,
    /// Whether it was left alone because its imbalance was within the threshold.
    pub left_alone: bool,
}

impl PrimaryShare {
    /// How far `slots` is from the ideal share, in percent of that share (0 for a primary whose share
    /// is 0 and that holds nothing; infinite when it holds slots it should not).
    pub fn imbalance_percent(&self, slots: usize) -> f64 {
        imbalance_percent(slots, self.ideal)
    }
}

/// Which slots move where: computed from the slots each primary holds and the weights.
///
/// How the plan is chosen (the rules the property tests check):
/// - Each primary's *ideal* share is `16384 × weight / total weight`; its *tolerance* is
///   `threshold_percent` of that share. A primary whose slot count is within its tolerance of the
///   ideal, or equal to the ideal rounded (largest remainder), is *left alone*: it neither gives nor
///   takes a slot (`redis-cli --cluster rebalance --cluster-threshold` skips the whole rebalance
///   when every primary is within it; here each primary is judged on its own).
/// - The others share the slots they hold by weight (largest remainder). If that would leave one of
///   them outside its tolerance (the primaries left alone were all off in the same direction), every
///   primary takes part and ends at its ideal rounded.
/// - A primary gives exactly its surplus and takes exactly its deficit, so each slot moves at most
///   once and the plan moves the fewest slots that reach those counts. A primary gives its highest
///   slots first, so ranges stay contiguous.
/// - Applying a plan and planning again with the same weights gives an empty plan.
///
/// ```
/// use rebalance::{Plan, Weights};
/// use sharding::SlotTable;
///
/// // Three primaries hold everything; a fourth joined empty.
/// let table = SlotTable::from_ranges([(0..=5460, "a:1"), (5461..=10922, "b:1"), (10923..=16383, "c:1")])?;
/// let primaries = ["a:1", "b:1", "c:1", "d:1"].map(String::from);
/// let plan = Plan::compute(&table, &primaries, &Weights::new(), 2.0)?;
/// assert_eq!(plan.moved_slot_count(), 16384 - 3 * 4096);
/// assert!(plan.moves().iter().all(|m| m.to == "d:1"));
/// assert!(plan.shares().iter().all(|s| s.slots_after == 4096));
/// # Ok::<(), rebalance::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Plan {
    moves: Vec<PlannedMove>,
    shares: Vec<PrimaryShare>,
    before: SlotTable,
    after: SlotTable,
}

impl Plan {
    /// Plans over `current` (which slot each primary owns, shards named `host:port`) for `primaries`
    /// (every primary, also those holding no slot), with `weights` and the skip threshold in percent.
    ///
    /// Fails if a weight is negative or not finite, or names no primary ([`Error::InvalidWeight`]);
    /// if every weight is 0 ([`Error::NoWeight`]); if some slot has no owner
    /// ([`Error::UncoveredSlots`]); or if a slot's owner is not in `primaries`
    /// ([`Error::Inconsistent`]).
    pub fn compute(
        current: &SlotTable,
        primaries: &[String],
        weights: &Weights,
        threshold_percent: f64,
    ) -> Result<Plan, Error> {
        let unassigned = current.unassigned_slots();
        if !unassigned.is_empty() {
            return Err(Error::UncoveredSlots {
                count: unassigned.iter().map(|r| r.len()).sum(),
                ranges: ranges_text(&unassigned),
            });
        }
        let mut primaries: Vec<String> = primaries.to_vec();
        primaries.sort();
        primaries.dedup();
        for owner in current.shards() {
            if current.slot_count_of(current.shard_index(owner).unwrap_or(usize::MAX)) > 0
                && !primaries.contains(owner)
            {
                return Err(Error::Inconsistent(format!(
                    "slots are owned by {owner}, which is not among the primaries {}",
                    primaries.join(",")
                )));
            }
        }
        for (node, weight) in weights.iter() {
            if !primaries.iter().any(|p| p == node) {
                return Err(Error::InvalidWeight {
                    node: node.to_string(),
                    weight,
                    reason: format!("it is not a primary of the cluster ({})", primaries.join(",")),
                });
            }
        }
        let mut node_weights = Vec::with_capacity(primaries.len());
        for node in &primaries {
            let weight = weights.of(node);
            if !weight.is_finite() || weight < 0.0 {
                return Err(Error::InvalidWeight {
                    node: node.clone(),
                    weight,
                    reason: "use a finite weight of 0 or more".into(),
                });
            }
            node_weights.push(weight);
        }
        let total_weight: f64 = node_weights.iter().sum();
        if total_weight <= 0.0 {
            return Err(Error::NoWeight);
        }
        let have: Vec<usize> = primaries
            .iter()
            .map(|node| current.shard_index(node).map_or(0, |i| current.slot_count_of(i)))
            .collect();
        let total = usize::from(SLOT_COUNT);
        let ideal: Vec<f64> = node_weights
            .iter()
            .map(|w| total as f64 * w / total_weight)
            .collect();
        let rounded = apportion(total, &node_weights);
        let within = |i: usize, slots: usize| {
            slots == rounded[i] || imbalance_percent(slots, ideal[i]) <= threshold_percent
        };

        // Primaries within their tolerance are left alone; the others share what they hold.
        let mut after_counts = have.clone();
        let mut left_alone: Vec<bool> = (0..primaries.len()).map(|i| within(i, have[i])).collect();
        let moving: Vec<usize> = (0..primaries.len()).filter(|&i| !left_alone[i]).collect();
        if !moving.is_empty() {
            let pool: usize = moving.iter().map(|&i| have[i]).sum();
            let moving_weights: Vec<f64> = moving.iter().map(|&i| node_weights[i]).collect();
            let partial = if moving_weights.iter().sum::<f64>() > 0.0 {
                let counts = apportion(pool, &moving_weights);
                moving
                    .iter()
                    .zip(&counts)
                    .all(|(&i, &count)| within(i, count))
                    .then_some(counts)
            } else {
                None
            };
            match partial {
                Some(counts) => {
                    for (&i, count) in moving.iter().zip(counts) {
                        after_counts[i] = count;
                    }
                }
                None => {
                    after_counts = rounded.clone();
                    left_alone = vec![false; primaries.len()];
                }
            }
        }

        // Sources give their highest slots, to sinks in name order.
        let mut gives: Vec<(usize, Vec<u16>)> = Vec::new();
        for (i, node) in primaries.iter().enumerate() {
            if have[i] > after_counts[i] {
                let surplus = have[i] - after_counts[i];
                let index = current.shard_index(node).unwrap_or(usize::MAX);
                let mut slots: Vec<u16> = current
                    .ranges_of(index)
                    .iter()
                    .flat_map(|range| range.slots())
                    .collect();
                let keep = slots.len() - surplus;
                gives.push((i, slots.split_off(keep)));
            }
        }
        let mut sinks: Vec<(usize, usize)> = (0..primaries.len())
            .filter(|&i| after_counts[i] > have[i])
            .map(|i| (i, after_counts[i] - have[i]))
            .collect();
        let mut after = current.clone();
        let mut moves = Vec::new();
        let mut sink = 0;
        for (source, slots) in gives {
            for slot in slots {
                while sinks[sink].1 == 0 {
                    sink += 1;
                }
                sinks[sink].1 -= 1;
                let to = &primaries[sinks[sink].0];
                after.assign(SlotRange::single(slot)?, to)?;
                moves.push(PlannedMove {
                    from: primaries[source].clone(),
                    to: to.clone(),
                    slot,
                });
            }
        }
        moves.sort();
        let shares = primaries
            .iter()
            .enumerate()
            .map(|(i, node)| PrimaryShare {
                node: node.clone(),
                weight: node_weights[i],
                ideal: ideal[i],
                slots_before: have[i],
                slots_after: after_counts[i],
                left_alone: left_alone[i],
            })
            .collect();
        Ok(Plan {
            moves,
            shares,
            before: current.clone(),
            after,
        })
    }

    /// The slots to move, ordered by `(from, to, slot)`.
    pub fn moves(&self) -> &[PlannedMove] {
        &self.moves
    }

    /// Every primary's share, before and after, by name.
    pub fn shares(&self) -> &[PrimaryShare] {
        &self.shares
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// Number of slots that move.
    pub fn moved_slot_count(&self) -> usize {
        self.moves.len()
    }

    /// The slot table now.
    pub fn before(&self) -> &SlotTable {
        &self.before
    }

    /// The slot table once the plan is carried out.
    pub fn after(&self) -> &SlotTable {
        &self.after
    }

    /// The plan as `sharding` describes slot changes: ranges grouped by `(from, to)`.
    pub fn slot_move_plan(&self) -> SlotMovePlan {
        SlotMovePlan::between(&self.before, &self.after)
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grouped = self.slot_move_plan();
        if grouped.is_empty() {
            return write!(f, "nothing to move");
        }
        write!(f, "{} slots to move:", grouped.moved_slot_count())?;
        for group in grouped.moves() {
            write!(f, "\n  {} ({} slots)", group, group.slot_count())?;
        }
        Ok(())
    }
}

/// `|slots - ideal|` in percent of `ideal`.
fn imbalance_percent(slots: usize, ideal: f64) -> f64 {
    if ideal > 0.0 {
        (slots as f64 - ideal).abs() / ideal * 100.0
    } else if slots == 0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Splits `total` into integer parts proportional to `weights` (largest remainder; ties to the
/// lower index). The weights sum to more than 0.
fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let given: usize = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().cycle().take(total.saturating_sub(given)) {
        parts[i] += 1;
    }
    parts
}

pub(crate) fn ranges_text(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect()
    }

    /// A table giving `counts[i]` consecutive slots to primary `i` (counts sum to 16384).
    fn table(counts: &[usize]) -> SlotTable {
        let names = names(counts.len());
        let mut start = 0usize;
        let mut ranges = Vec::new();
        for (i, &count) in counts.iter().enumerate() {
            if count > 0 {
                ranges.push(((start as u16)..=((start + count - 1) as u16), names[i].clone()));
            }
            start += count;
        }
        SlotTable::from_ranges(ranges).unwrap()
    }

    fn counts_after(plan: &Plan) -> Vec<usize> {
        let after = plan.after();
        plan.shares()
            .iter()
            .map(|s| after.shard_index(&s.node).map_or(0, |i| after.slot_count_of(i)))
            .collect()
    }

    #[test]
    fn adding_a_primary_moves_a_quarter_to_it() {
        let plan = Plan::compute(&table(&[5461, 5462, 5461, 0]), &names(4), &Weights::new(), 2.0).unwrap();
        assert_eq!(counts_after(&plan), vec![4096; 4]);
        assert_eq!(plan.moved_slot_count(), 4096);
        assert!(plan.moves().iter().all(|m| m.to == "127.0.0.1:7003"));
        // Each source gave its highest slots: 1365 or 1366 of them, one contiguous range each.
        let grouped = plan.slot_move_plan();
        assert!(grouped.moves().iter().all(|m| m.slots.len() == 1), "{plan}");
    }

    #[test]
    fn removing_a_primary_drains_it_by_weight_zero() {
        let nodes = names(4);
        let weights = Weights::new().with(nodes[1].clone(), 0.0);
        let plan = Plan::compute(&table(&[4096; 4]), &nodes, &weights, 2.0).unwrap();
        let after = counts_after(&plan);
        assert_eq!(after[1], 0);
        assert_eq!(after.iter().sum::<usize>(), 16384);
        assert!(
            after
                .iter()
                .enumerate()
                .all(|(i, &c)| i == 1 || (5461..=5462).contains(&c))
        );
        assert!(plan.moves().iter().all(|m| m.from == nodes[1]));
        assert_eq!(plan.moved_slot_count(), 4096);
    }

    #[test]
    fn primaries_within_the_threshold_are_left_alone() {
        // 7001 is 1.5% over, 7002 1.5% under: left alone at 2%; 7000 and 7003 are far off.
        let plan = Plan::compute(&table(&[3000, 4157, 4035, 5192]), &names(4), &Weights::new(), 2.0).unwrap();
        let after = counts_after(&plan);
        assert_eq!((after[1], after[2]), (4157, 4035));
        assert_eq!((after[0], after[3]), (4096, 4096));
        assert_eq!(plan.moved_slot_count(), 1096);
        assert!(plan.shares()[1].left_alone && !plan.shares()[0].left_alone);
        // With no threshold, everyone is balanced exactly.
        let exact =
            Plan::compute(&table(&[3000, 4157, 4035, 5192]), &names(4), &Weights::new(), 0.0).unwrap();
        assert_eq!(counts_after(&exact), vec![4096; 4]);
        // Everyone within the threshold: nothing to do.
        assert!(
            Plan::compute(&table(&[4100, 4090, 4096, 4098]), &names(4), &Weights::new(), 2.0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn primaries_left_alone_cannot_push_another_out_of_its_tolerance() {
        // Ten primaries at +1.9% and an empty eleventh: sharing the rest would leave the new one ~19%
        // short, so every primary takes part.
        let ideal: f64 = 16384.0 / 11.0;
        let high = (ideal * 1.019).floor() as usize;
        let mut counts = vec![high; 10];
        counts.push(0);
        let rest = 16384 - counts.iter().sum::<usize>();
        counts[0] += rest;
        let plan = Plan::compute(&table(&counts), &names(11), &Weights::new(), 2.0).unwrap();
        let after = counts_after(&plan);
        assert!(after.iter().all(|&c| (1489..=1490).contains(&c)), "{after:?}");
    }

    #[test]
    fn bad_weights_and_tables_are_typed_errors() {
        let nodes = names(2);
        let t = table(&[8192, 8192]);
        let err = |w: Weights| Plan::compute(&t, &nodes, &w, 2.0).unwrap_err();
        assert!(matches!(
            err(Weights::new().with(nodes[0].clone(), -1.0)),
            Error::InvalidWeight { .. }
        ));
        assert!(matches!(
            err(Weights::new().with(nodes[0].clone(), f64::NAN)),
            Error::InvalidWeight { .. }
        ));
        assert!(matches!(
            err(Weights::new().with("10.0.0.1:1", 1.0)),
            Error::InvalidWeight { .. }
        ));
        assert!(matches!(
            err(Weights::new()
                .with(nodes[0].clone(), 0.0)
                .with(nodes[1].clone(), 0.0)),
            Error::NoWeight
        ));
        let partial = SlotTable::from_ranges([(0..=100, nodes[0].as_str())]).unwrap();
        let e = Plan::compute(&partial, &nodes, &Weights::new(), 2.0).unwrap_err();
        assert!(matches!(e, Error::UncoveredSlots { count: 16283, .. }), "{e}");
        let e = Plan::compute(&t, &nodes[..1], &Weights::new(), 2.0).unwrap_err();
        assert!(matches!(e, Error::Inconsistent(_)), "{e}");
    }

    #[test]
    fn apportion_hands_out_everything_by_largest_remainder() {
        assert_eq!(apportion(16384, &[1.0, 1.0, 1.0]), vec![5462, 5461, 5461]);
        assert_eq!(apportion(10, &[1.0, 0.0, 3.0]), vec![3, 0, 7]);
        assert_eq!(apportion(0, &[1.0]), vec![0]);
    }

    fn counts_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<f64>, f64)> {
        (1usize..9)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(0u32..1000, n),
                    proptest::collection::vec(prop_oneof![Just(0.0), Just(1.0), 0.1f64..5.0], n),
                    prop_oneof![Just(0.0), Just(2.0), 0.0f64..50.0],
                )
            })
            .prop_filter("some slots and some weight", |(raw, weights, _)| {
                raw.iter().any(|&r| r > 0) && weights.iter().any(|&w| w > 0.0)
            })
            .prop_map(|(raw, weights, threshold)| {
                // Scale the raw numbers to counts summing to 16384.
                let total: u32 = raw.iter().sum();
                let mut counts: Vec<usize> = raw
                    .iter()
                    .map(|&r| (r as usize * 16384) / total as usize)
                    .collect();
                let rest = 16384 - counts.iter().sum::<usize>();
                let first = raw.iter().position(|&r| r > 0).unwrap();
                counts[first] += rest;
                (counts, weights, threshold)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn plans_are_minimal_within_tolerance_and_idempotent((counts, raw_weights, threshold) in counts_strategy()) {
            let nodes = names(counts.len());
            let mut weights = Weights::new();
            for (node, &w) in nodes.iter().zip(&raw_weights) {
                weights.set(node.clone(), w);
            }
            let before = table(&counts);
            let plan = Plan::compute(&before, &nodes, &weights, threshold).unwrap();
            let after = counts_after(&plan);
            prop_assert!(plan.after().is_complete());
            prop_assert_eq!(after.iter().sum::<usize>(), 16384);
            // Each slot moves at most once, from its owner, and the table after is the moves applied.
            let mut seen = std::collections::HashSet::new();
            for m in plan.moves() {
                prop_assert!(seen.insert(m.slot));
                prop_assert_eq!(before.shard_of_slot(m.slot).map(|i| before.shards()[i].as_str()), Some(m.from.as_str()));
                prop_assert_eq!(plan.after().shard_of_slot(m.slot).map(|i| plan.after().shards()[i].as_str()), Some(m.to.as_str()));
            }
            // Fewest moves for the counts reached: every primary only gives or only takes.
            let surplus: usize = counts.iter().zip(&after).map(|(&b, &a)| b.saturating_sub(a)).sum();
            prop_assert_eq!(plan.moved_slot_count(), surplus);
            for m in plan.moves() {
                let (from, to) = (nodes.iter().position(|n| *n == m.from).unwrap(), nodes.iter().position(|n| *n == m.to).unwrap());
                prop_assert!(counts[from] > after[from] && counts[to] < after[to]);
            }
            // Every primary ends within its tolerance (or at its rounded share), weight 0 ends empty,
            // and primaries left alone kept their slots.
            let total_weight: f64 = raw_weights.iter().sum();
            for (i, share) in plan.shares().iter().enumerate() {
                let ideal = 16384.0 * raw_weights[i] / total_weight;
                prop_assert!(
                    share.imbalance_percent(after[i]) <= threshold || (after[i] as f64 - ideal).abs() < 1.0,
                    "{} ends at {} for an ideal of {}", share.node, after[i], ideal
                );
                if raw_weights[i] == 0.0 {
                    prop_assert_eq!(after[i], 0);
                }
                if share.left_alone {
                    prop_assert_eq!(after[i], counts[i]);
                }
            }
            // Planning again over the result moves nothing.
            let again = Plan::compute(plan.after(), &nodes, &weights, threshold).unwrap();
            prop_assert!(again.is_empty(), "second plan: {}", again);
        }
    }
}
