//! The `key-range` strategy: the 16,384 Redis slots cut into contiguous ranges over standalone nodes.

use std::fmt;

use crate::nodes::Nodes;
use crate::{Error, SLOT_COUNT, Sharder, SlotRange, SlotTable};

/// Standalone nodes, each owning one contiguous range of the 16,384 slots in proportion to its
/// weight; a key goes to the node owning [`key_slot`](crate::key_slot)`(key)`.
///
/// Node `i` (in the order given) owns slots `⌊16384·Wᵢ/W⌋ ..= ⌊16384·Wᵢ₊₁/W⌋ − 1`, where `Wᵢ` is the sum
/// of the weights before it and `W` the total. Because keys keep Redis Cluster's slots, hash tags
/// group keys here as they do in a cluster, and moving to a real cluster later moves whole slots.
/// Unlike a ketama ring, adding a node shifts range boundaries, so plan with
/// [`SlotMovePlan`](crate::SlotMovePlan) before changing the node list.
///
/// ```
/// use sharding::KeyRange;
///
/// let layout = KeyRange::with_equal_weights(["10.0.0.1:6379", "10.0.0.2:6379"])?;
/// assert_eq!(layout.range_of(0).map(|r| r.to_string()), Some("0-8191".to_string()));
/// assert_eq!(layout.node_for(b"foo"), "10.0.0.2:6379"); // "foo" is in slot 12182.
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRange {
    nodes: Nodes,
    ranges: Vec<SlotRange>,
    table: SlotTable,
}

impl KeyRange {
    /// The most nodes a layout accepts: every node needs at least one slot.
    pub const MAX_NODES: usize = SLOT_COUNT as usize;

    /// Splits the slots over `(host:port, weight)` pairs, in the order given.
    ///
    /// Fails on an empty list, an empty or repeated name, a weight of 0, more than 16,384 nodes, or a
    /// weight too small to earn one slot.
    pub fn new(nodes: impl IntoIterator<Item = (String, u32)>) -> Result<KeyRange, Error> {
        let nodes = Nodes::validate(nodes, KeyRange::MAX_NODES)?;
        let total = u128::from(nodes.total_weight);
        let boundary = |weight_before: u128| (u128::from(SLOT_COUNT) * weight_before / total) as u16;
        let mut ranges = Vec::with_capacity(nodes.names.len());
        let mut table = SlotTable::empty();
        let mut weight_before: u128 = 0;
        for (name, &weight) in nodes.names.iter().zip(&nodes.weights) {
            let start = boundary(weight_before);
            weight_before += u128::from(weight);
            let end = boundary(weight_before);
            if end == start {
                return Err(Error::WeightTooSmall {
                    node: name.clone(),
                    weight,
                    total_weight: nodes.total_weight,
                });
            }
            let range = SlotRange::new(start, end - 1)?;
            table.assign(range, name)?;
            ranges.push(range);
        }
        Ok(KeyRange { nodes, ranges, table })
    }

    /// Splits the slots evenly over `nodes` (every weight 1).
    pub fn with_equal_weights<I, S>(nodes: I) -> Result<KeyRange, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KeyRange::new(nodes.into_iter().map(|name| (name.into(), 1)))
    }

    /// The name of the node `key` belongs to.
    #[inline]
    pub fn node_for(&self, key: &[u8]) -> &str {
        &self.nodes.names[self.node_index_for(key)]
    }

    /// The index (position in the list given) of the node `key` belongs to.
    #[inline]
    pub fn node_index_for(&self, key: &[u8]) -> usize {
        // Every slot is assigned by construction; 0 is unreachable but keeps this free of panics.
        self.table.shard_of(key).unwrap_or(0)
    }

    /// The slots node `node` owns.
    pub fn range_of(&self, node: usize) -> Option<SlotRange> {
        self.ranges.get(node).copied()
    }

    /// The nodes as `(name, weight)`, in the order given.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (&str, u32)> + '_ {
        self.nodes
            .names
            .iter()
            .map(String::as_str)
            .zip(self.nodes.weights.iter().copied())
    }

    /// The layout as a slot table (shard numbers equal node indices), e.g. to plan slot moves.
    pub fn slot_table(&self) -> &SlotTable {
        &self.table
    }
}

impl AsRef<SlotTable> for KeyRange {
    fn as_ref(&self) -> &SlotTable {
        &self.table
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for ((name, weight), range) in self.nodes().zip(&self.ranges) {
            list.entry(&format_args!("{name} weight {weight} slots {range}"));
        }
        list.finish()
    }
}

impl Sharder for KeyRange {
    fn shard_count(&self) -> usize {
        self.nodes.names.len()
    }

    fn shard_name(&self, shard: usize) -> Option<&str> {
        self.nodes.names.get(shard).map(String::as_str)
    }

    fn shard_weight(&self, shard: usize) -> f64 {
        self.ranges.get(shard).map_or(0.0, |range| range.len() as f64)
    }

    #[inline]
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        self.table.shard_of(key)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::key_slot;

    fn check(nodes: &[(&str, u32)], expected: Result<&[&str], Error>) {
        let built = KeyRange::new(nodes.iter().map(|(n, w)| (n.to_string(), *w)));
        let shown = built.map(|layout| {
            (0..nodes.len())
                .map(|i| layout.range_of(i).map(|r| r.to_string()).unwrap_or_default())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            shown,
            expected.map(|ranges| ranges.iter().map(ToString::to_string).collect()),
            "{nodes:?}"
        );
    }

    #[test]
    fn splits_in_proportion_to_weights() {
        check(&[("a", 1)], Ok(&["0-16383"]));
        check(
            &[("a", 1), ("b", 1), ("c", 1)],
            Ok(&["0-5460", "5461-10921", "10922-16383"]),
        );
        check(&[("a", 1), ("b", 3)], Ok(&["0-4095", "4096-16383"]));
        check(&[("a", u32::MAX), ("b", u32::MAX)], Ok(&["0-8191", "8192-16383"]));
    }

    #[test]
    fn every_construction_error() {
        check(&[], Err(Error::NoNodes));
        check(&[("a", 0)], Err(Error::ZeroWeight { node: "a".into() }));
        check(
            &[("a", 1), ("a", 2)],
            Err(Error::DuplicateNode { node: "a".into() }),
        );
        check(&[("", 1)], Err(Error::EmptyNodeName { index: 0 }));
        check(
            &[("a", 1), ("b", 100_000)],
            Err(Error::WeightTooSmall {
                node: "a".into(),
                weight: 1,
                total_weight: 100_001,
            }),
        );
        let too_many = (0..=KeyRange::MAX_NODES).map(|i| format!("n{i}"));
        assert_eq!(
            KeyRange::with_equal_weights(too_many).unwrap_err(),
            Error::TooManyNodes {
                count: KeyRange::MAX_NODES + 1,
                max: KeyRange::MAX_NODES
            }
        );
    }

    proptest! {
        #[test]
        fn ranges_tile_all_slots_and_keys_follow_them(
            weights in proptest::collection::vec(1u32..1000, 1..20),
            key in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let layout = KeyRange::new(weights.iter().enumerate().map(|(i, &w)| (format!("n{i}"), w))).unwrap();
            prop_assert!(layout.slot_table().is_complete());
            let mut next = 0u32;
            for node in 0..weights.len() {
                let range = layout.range_of(node).unwrap();
                prop_assert_eq!(u32::from(range.start()), next);
                next = u32::from(range.end()) + 1;
            }
            prop_assert_eq!(next, 16_384);
            let node = layout.node_index_for(&key);
            prop_assert!(layout.range_of(node).unwrap().contains(key_slot(&key)));
        }
    }
}
