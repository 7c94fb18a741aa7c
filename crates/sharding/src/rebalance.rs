//! What moves where when the topology changes: slot lists for slot layouts, key samples for rings.

use std::collections::{BTreeMap, HashMap};

use crate::slot::ranges_from_sorted;
use crate::{SLOT_COUNT, Sharder, SlotRange, SlotTable};

/// The slots that change owner between two slot layouts (two [`SlotTable`]s, two
/// [`KeyRange`](crate::KeyRange)s, or one of each), grouped by `(from, to)` shard names.
///
/// Shards are matched by name, not number, so the two layouts may list their shards in any order.
///
/// ```
/// use sharding::{KeyRange, SlotMovePlan};
///
/// let before = KeyRange::with_equal_weights(["a:6379", "b:6379"])?;
/// let after = KeyRange::with_equal_weights(["a:6379", "b:6379", "c:6379"])?;
/// let plan = SlotMovePlan::between(&before, &after);
/// // Boundaries shift: a keeps 0-5460 and hands the rest of its half to b, which hands its tail to c.
/// let shown: Vec<String> = plan.moves().iter().map(|m| m.to_string()).collect();
/// assert_eq!(shown, ["a:6379 -> b:6379: 5461-8191", "b:6379 -> c:6379: 10922-16383"]);
/// assert_eq!(plan.moved_slot_count(), 2731 + 5462);
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMovePlan {
    moves: Vec<SlotMove>,
}

/// Slots that go from one shard to another (`None` = no owner, before or after).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotMove {
    /// The shard that owns the slots now, or `None` if they are unassigned.
    pub from: Option<String>,
    /// The shard that owns them afterwards, or `None` if they become unassigned.
    pub to: Option<String>,
    /// The slots, as ascending ranges.
    pub slots: Vec<SlotRange>,
}

impl SlotMove {
    /// Number of slots that move.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(|range| range.len()).sum()
    }

    /// Every slot that moves, ascending.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots.iter().flat_map(|range| range.slots())
    }
}

impl std::fmt::Display for SlotMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<String> = self.slots.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} -> {}: {}",
            self.from.as_deref().unwrap_or("(unassigned)"),
            self.to.as_deref().unwrap_or("(unassigned)"),
            ranges.join(",")
        )
    }
}

impl SlotMovePlan {
    /// Compares two slot layouts slot by slot.
    pub fn between(old: impl AsRef<SlotTable>, new: impl AsRef<SlotTable>) -> SlotMovePlan {
        let (old, new) = (old.as_ref(), new.as_ref());
        let mut moved: BTreeMap<(Option<&str>, Option<&str>), Vec<u16>> = BTreeMap::new();
        for slot in 0..SLOT_COUNT {
            let (from, to) = (old.owner_name(slot), new.owner_name(slot));
            if from != to {
                moved.entry((from, to)).or_default().push(slot);
            }
        }
        let moves = moved
            .into_iter()
            .map(|((from, to), slots)| SlotMove {
                from: from.map(str::to_string),
                to: to.map(str::to_string),
                slots: ranges_from_sorted(slots),
            })
            .collect();
        SlotMovePlan { moves }
    }

    /// The moves, ordered by `(from, to)`.
    pub fn moves(&self) -> &[SlotMove] {
        &self.moves
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// Number of slots that change owner.
    pub fn moved_slot_count(&self) -> usize {
        self.moves.iter().map(SlotMove::slot_count).sum()
    }

    /// Share of all 16,384 slots that change owner, from 0 to 1.
    pub fn moved_fraction(&self) -> f64 {
        self.moved_slot_count() as f64 / f64::from(SLOT_COUNT)
    }
}

/// How a sample of keys moves between two sharders: what a ring change costs in cache misses.
///
/// Works for any pair of [`Sharder`]s (two ketama rings, typically) by comparing shard names.
///
/// ```
/// use sharding::{KetamaRing, KeyMovePlan};
///
/// let before = KetamaRing::new((1..=3).map(|i| (format!("10.0.0.{i}:6379"), 1)))?;
/// let after = before.with_node("10.0.0.4:6379", 1)?;
/// let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
/// let plan = KeyMovePlan::between(&before, &after, &keys);
/// // About a quarter of the keys move, and all of them to the new node.
/// assert!((0.15..0.35).contains(&plan.moved_fraction()));
/// assert!(plan.flows().iter().all(|flow| flow.to.as_deref() == Some("10.0.0.4:6379")));
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMovePlan {
    sampled: usize,
    moved: Vec<usize>,
    flows: Vec<KeyFlow>,
}

/// A number of sampled keys that go from one shard to another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyFlow {
    /// The shard that holds the keys now (`None`: no owner).
    pub from: Option<String>,
    /// The shard that holds them afterwards (`None`: no owner).
    pub to: Option<String>,
    /// How many of the sampled keys take this path.
    pub keys: usize,
}

impl KeyMovePlan {
    /// Looks up every key of `keys` in both sharders.
    pub fn between<A, B, K>(old: &A, new: &B, keys: &[K]) -> KeyMovePlan
    where
        A: Sharder + ?Sized,
        B: Sharder + ?Sized,
        K: AsRef<[u8]>,
    {
        let mut moved = Vec::new();
        let mut counts: HashMap<(Option<&str>, Option<&str>), usize> = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            let from = old.shard_of(key).and_then(|shard| old.shard_name(shard));
            let to = new.shard_of(key).and_then(|shard| new.shard_name(shard));
            if from != to {
                moved.push(index);
                *counts.entry((from, to)).or_default() += 1;
            }
        }
        let mut flows: Vec<KeyFlow> = counts
            .into_iter()
            .map(|((from, to), keys)| KeyFlow {
                from: from.map(str::to_string),
                to: to.map(str::to_string),
                keys,
            })
            .collect();
        flows.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        KeyMovePlan {
            sampled: keys.len(),
            moved,
            flows,
        }
    }

    /// Number of keys sampled.
    pub fn sampled(&self) -> usize {
        self.sampled
    }

    /// Indices (into the sample) of the keys that change shard, ascending.
    pub fn moved_keys(&self) -> &[usize] {
        &self.moved
    }

    /// Number of sampled keys that change shard.
    pub fn moved_count(&self) -> usize {
        self.moved.len()
    }

    /// Share of the sample that changes shard, from 0 to 1 (0 for an empty sample).
    pub fn moved_fraction(&self) -> f64 {
        if self.sampled == 0 {
            0.0
        } else {
            self.moved.len() as f64 / self.sampled as f64
        }
    }

    /// Where the moved keys go, ordered by `(from, to)`.
    pub fn flows(&self) -> &[KeyFlow] {
        &self.flows
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{KetamaRing, KeyRange};

    fn check(
        old: &[(std::ops::RangeInclusive<u16>, &str)],
        new: &[(std::ops::RangeInclusive<u16>, &str)],
        expected: &[&str],
    ) {
        let old = SlotTable::from_ranges(old.iter().cloned()).unwrap();
        let new = SlotTable::from_ranges(new.iter().cloned()).unwrap();
        let plan = SlotMovePlan::between(&old, &new);
        let shown: Vec<String> = plan.moves().iter().map(ToString::to_string).collect();
        assert_eq!(shown, expected);
        let counted: usize = (0..SLOT_COUNT)
            .filter(|&s| old.owner_name(s) != new.owner_name(s))
            .count();
        assert_eq!(plan.moved_slot_count(), counted);
        assert_eq!(plan.is_empty(), counted == 0);
    }

    #[test]
    fn slot_plans_list_every_moved_slot() {
        check(&[(0..=16383, "a")], &[(0..=16383, "a")], &[]);
        check(
            &[(0..=8191, "a"), (8192..=16383, "b")],
            &[(8192..=16383, "b"), (0..=8191, "a")],
            &[],
        );
        // A reshard of 100 slots and a failover that renamed a shard's primary.
        check(
            &[(0..=8191, "a"), (8192..=16383, "b")],
            &[(0..=8091, "a"), (8092..=8191, "c"), (8192..=16383, "b2")],
            &["a -> c: 8092-8191", "b -> b2: 8192-16383"],
        );
        // Slots that lose or gain an owner.
        check(
            &[(0..=9, "a")],
            &[(5..=19, "a")],
            &["(unassigned) -> a: 10-19", "a -> (unassigned): 0-4"],
        );
    }

    #[test]
    fn key_range_reweight_moves_only_boundary_slots() {
        let before = KeyRange::new([("a".to_string(), 1), ("b".to_string(), 1)]).unwrap();
        let after = KeyRange::new([("a".to_string(), 3), ("b".to_string(), 1)]).unwrap();
        let plan = SlotMovePlan::between(&before, &after);
        let shown: Vec<String> = plan.moves().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["b -> a: 8192-12287"]);
        assert_eq!(plan.moved_fraction(), 0.25);
    }

    #[test]
    fn key_plan_of_identical_rings_is_empty() {
        let ring = KetamaRing::new([("a:1".to_string(), 1), ("b:1".to_string(), 2)]).unwrap();
        let keys: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        let plan = KeyMovePlan::between(&ring, &ring.clone(), &keys);
        assert_eq!(
            (plan.sampled(), plan.moved_count(), plan.moved_fraction()),
            (500, 0, 0.0)
        );
        let empty: [&[u8]; 0] = [];
        assert_eq!(KeyMovePlan::between(&ring, &ring, &empty).moved_fraction(), 0.0);
    }

    fn ring_of(weights: &[u32]) -> KetamaRing {
        KetamaRing::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (format!("10.2.0.{i}:6379"), w)),
        )
        .unwrap()
    }

    /// Checks the consistent-hashing promise as far as libmemcached's arithmetic keeps it: a key moves
    /// between two nodes present in both rings only if one of them gained or lost ring points (the
    /// node count and total weight enter each node's point count, so a change can shift it by a few
    /// points, as 24 → 25 equal nodes does: 160 → 156). Returns how many keys moved that way.
    fn moves_between_survivors(before: &KetamaRing, after: &KetamaRing, plan: &KeyMovePlan) -> usize {
        let points = |ring: &KetamaRing, name: &str| {
            ring.nodes()
                .position(|(n, _)| n == name)
                .map(|i| ring.point_count_of(i))
        };
        let mut moved = 0;
        for flow in plan.flows() {
            let (Some(from), Some(to)) = (flow.from.as_deref(), flow.to.as_deref()) else {
                continue;
            };
            let (Some(from_before), Some(from_after)) = (points(before, from), points(after, from)) else {
                continue;
            };
            let (Some(to_before), Some(to_after)) = (points(before, to), points(after, to)) else {
                continue;
            };
            assert!(
                from_before != from_after || to_before != to_after,
                "{} keys moved from {from} to {to} although neither one's points changed",
                flow.keys
            );
            moved += flow.keys;
        }
        moved
    }

    fn point_counts_unchanged(before: &KetamaRing, after: &KetamaRing) -> bool {
        before.nodes().enumerate().all(|(i, (name, _))| {
            after
                .nodes()
                .position(|(n, _)| n == name)
                .is_none_or(|j| after.point_count_of(j) == before.point_count_of(i))
        })
    }

    #[test]
    fn equal_weight_rings_keep_point_counts_except_where_f32_rounds_down() {
        // Equal weights are the common case; list the node counts where libmemcached's f32 maths gives
        // fewer than 160 points, so the property tests below know when exact minimal movement holds.
        let short: Vec<usize> = (1..=64)
            .filter(|&n| ring_of(&vec![1; n]).point_count_of(0) != 160)
            .collect();
        assert!(
            short.contains(&25),
            "25 equal nodes should get 156 points each, shorts: {short:?}"
        );
        assert!(!short.contains(&3) && !short.contains(&6), "shorts: {short:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn adding_a_ketama_node_moves_keys_only_to_it(
            weights in proptest::collection::vec(1u32..4, 1..8),
            new_weight in 1u32..4,
            seed in any::<u32>(),
        ) {
            let before = ring_of(&weights);
            let after = before.with_node("10.9.9.9:6379", new_weight).unwrap();
            let keys: Vec<String> = (0..2_000).map(|i| format!("{seed}:{i}")).collect();
            let plan = KeyMovePlan::between(&before, &after, &keys);
            let sideways = moves_between_survivors(&before, &after, &plan);
            if point_counts_unchanged(&before, &after) {
                prop_assert_eq!(sideways, 0);
                for &i in plan.moved_keys() {
                    prop_assert_eq!(after.node_for(keys[i].as_bytes()), "10.9.9.9:6379");
                }
            }
        }

        #[test]
        fn adding_an_equal_weight_node_moves_keys_only_to_it(n in 1usize..24, seed in any::<u32>()) {
            let before = ring_of(&vec![1; n]);
            let after = before.with_node("10.9.9.9:6379", 1).unwrap();
            let keys: Vec<String> = (0..2_000).map(|i| format!("{seed}:{i}")).collect();
            let plan = KeyMovePlan::between(&before, &after, &keys);
            for flow in plan.flows() {
                prop_assert_eq!(flow.to.as_deref(), Some("10.9.9.9:6379"));
            }
            let landed = keys.iter().filter(|k| after.node_for(k.as_bytes()) == "10.9.9.9:6379").count();
            prop_assert_eq!(plan.moved_count(), landed);
        }

        #[test]
        fn removing_a_ketama_node_moves_only_its_keys(
            weights in proptest::collection::vec(1u32..4, 2..8),
            removed in any::<prop::sample::Index>(),
            seed in any::<u32>(),
        ) {
            let before = ring_of(&weights);
            let removed = before.nodes().nth(removed.index(weights.len())).unwrap().0.to_string();
            let after = before.without_node(&removed).unwrap();
            let keys: Vec<String> = (0..2_000).map(|i| format!("{seed}:{i}")).collect();
            let plan = KeyMovePlan::between(&before, &after, &keys);
            let sideways = moves_between_survivors(&before, &after, &plan);
            let held = keys.iter().filter(|k| before.node_for(k.as_bytes()) == removed).count();
            prop_assert_eq!(plan.moved_count(), held + sideways);
            if point_counts_unchanged(&before, &after) {
                for flow in plan.flows() {
                    prop_assert_eq!(flow.from.as_deref(), Some(removed.as_str()));
                }
            }
        }

        #[test]
        fn removing_an_equal_weight_node_moves_only_its_keys(n in 2usize..25, removed in any::<prop::sample::Index>(), seed in any::<u32>()) {
            let before = ring_of(&vec![1; n]);
            let removed = before.nodes().nth(removed.index(n)).unwrap().0.to_string();
            let after = before.without_node(&removed).unwrap();
            let keys: Vec<String> = (0..2_000).map(|i| format!("{seed}:{i}")).collect();
            let plan = KeyMovePlan::between(&before, &after, &keys);
            for flow in plan.flows() {
                prop_assert_eq!(flow.from.as_deref(), Some(removed.as_str()));
            }
            let held = keys.iter().filter(|k| before.node_for(k.as_bytes()) == removed).count();
            prop_assert_eq!(plan.moved_count(), held);
        }
    }
}
