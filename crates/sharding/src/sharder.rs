//! The one interface over every sharding strategy, and grouping keys by shard.

use std::sync::Arc;

/// A way to map keys to shards: [`SlotTable`](crate::SlotTable) (Redis Cluster), [`KetamaRing`](crate::KetamaRing)
/// (client-side consistent hashing) or [`KeyRange`](crate::KeyRange) (slot ranges over standalone nodes).
///
/// Shards are numbered `0..shard_count()`; [`shard_name`](Sharder::shard_name) gives each one's name
/// (a node address or shard id), which is what rebalance plans and distribution reports compare.
///
/// ```
/// use sharding::{KetamaRing, Sharder};
///
/// let ring = KetamaRing::new([("10.0.0.1:6379".to_string(), 1), ("10.0.0.2:6379".to_string(), 1)])?;
/// let keys = ["a", "b", "c", "d"];
/// let groups = ring.group_by_shard(&keys);
/// // Every key lands in exactly one group, in input order.
/// let grouped: usize = groups.iter().map(|(_, indices)| indices.len()).sum();
/// assert_eq!(grouped, keys.len());
/// assert_eq!(ring.shard_of(b"a"), Some(ring.node_index_for(b"a")));
/// # Ok::<(), sharding::Error>(())
/// ```
pub trait Sharder {
    /// Number of shards; shard numbers run from 0 to this minus 1.
    fn shard_count(&self) -> usize;

    /// The name of `shard` (a node `host:port` or a shard id), or `None` if there is no such shard.
    fn shard_name(&self, shard: usize) -> Option<&str>;

    /// The share of keys `shard` should receive, relative to the other shards' weights.
    ///
    /// A ketama ring answers with the configured weight; slot-based sharders with the number of
    /// slots the shard owns (which is what uniform hashing actually delivers).
    fn shard_weight(&self, shard: usize) -> f64;

    /// The shard `key` belongs to, or `None` if its slot has no owner (only a [`SlotTable`](crate::SlotTable)
    /// with gaps says `None`).
    fn shard_of(&self, key: &[u8]) -> Option<usize>;

    /// Groups `keys` by shard without copying them: each group holds indices into `keys`, in input order.
    fn group_by_shard<K: AsRef<[u8]>>(&self, keys: &[K]) -> KeyGroups
    where
        Self: Sized,
    {
        KeyGroups::build(
            self.shard_count(),
            keys.iter().map(|key| self.shard_of(key.as_ref())),
        )
    }
}

/// Keys grouped by shard, as indices into the caller's key slice.
///
/// Built in two passes (count, then place), so it costs three allocations whatever the shard count,
/// and every group keeps the keys' input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroups {
    /// `starts[s]..starts[s + 1]` is shard `s`'s part of `indices`; the last part holds unassigned keys.
    starts: Vec<usize>,
    indices: Vec<usize>,
}

impl KeyGroups {
    /// Groups keys whose shards are given in input order (`None` = no owner).
    pub(crate) fn build(shard_count: usize, shards: impl Iterator<Item = Option<usize>>) -> KeyGroups {
        // One bucket per shard plus a last one for keys without an owner; a shard number out of range
        // (which no sharder in this crate produces) is treated as unassigned rather than panicking.
        let unassigned = shard_count;
        let buckets: Vec<usize> = shards
            .map(|shard| shard.filter(|&s| s < shard_count).unwrap_or(unassigned))
            .collect();
        let mut starts = vec![0usize; shard_count + 3];
        for &bucket in &buckets {
            starts[bucket + 2] += 1;
        }
        for i in 2..starts.len() {
            starts[i] += starts[i - 1];
        }
        // `starts[b + 1]` now is where bucket `b` begins; it is used as a write cursor and ends up at
        // the bucket's end, leaving `starts[b]..starts[b + 1]` as bucket `b`'s part of `indices`.
        let mut indices = vec![0usize; buckets.len()];
        for (index, &bucket) in buckets.iter().enumerate() {
            let cursor = &mut starts[bucket + 1];
            indices[*cursor] = index;
            *cursor += 1;
        }
        // The last entry only ever held the total, which `starts[shard_count + 1]` now repeats.
        starts.pop();
        KeyGroups { starts, indices }
    }

    /// Number of shards (groups, empty or not).
    pub fn shard_count(&self) -> usize {
        self.starts.len() - 2
    }

    /// Indices of the keys that belong to `shard`, in input order (empty for an unknown shard).
    pub fn group(&self, shard: usize) -> &[usize] {
        if shard >= self.shard_count() {
            return &[];
        }
        &self.indices[self.starts[shard]..self.starts[shard + 1]]
    }

    /// Indices of the keys whose slot has no owner, in input order.
    pub fn unassigned(&self) -> &[usize] {
        let shards = self.shard_count();
        &self.indices[self.starts[shards]..self.starts[shards + 1]]
    }

    /// Non-empty groups as `(shard, indices)`, in shard order; unassigned keys are not included.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[usize])> + '_ {
        (0..self.shard_count())
            .map(|shard| (shard, self.group(shard)))
            .filter(|(_, group)| !group.is_empty())
    }

    /// Number of keys grouped, unassigned ones included.
    pub fn key_count(&self) -> usize {
        self.indices.len()
    }
}

impl<S: Sharder + ?Sized> Sharder for &S {
    fn shard_count(&self) -> usize {
        (**self).shard_count()
    }
    fn shard_name(&self, shard: usize) -> Option<&str> {
        (**self).shard_name(shard)
    }
    fn shard_weight(&self, shard: usize) -> f64 {
        (**self).shard_weight(shard)
    }
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        (**self).shard_of(key)
    }
}

impl<S: Sharder + ?Sized> Sharder for Box<S> {
    fn shard_count(&self) -> usize {
        (**self).shard_count()
    }
    fn shard_name(&self, shard: usize) -> Option<&str> {
        (**self).shard_name(shard)
    }
    fn shard_weight(&self, shard: usize) -> f64 {
        (**self).shard_weight(shard)
    }
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        (**self).shard_of(key)
    }
}

impl<S: Sharder + ?Sized> Sharder for Arc<S> {
    fn shard_count(&self) -> usize {
        (**self).shard_count()
    }
    fn shard_name(&self, shard: usize) -> Option<&str> {
        (**self).shard_name(shard)
    }
    fn shard_weight(&self, shard: usize) -> f64 {
        (**self).shard_weight(shard)
    }
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        (**self).shard_of(key)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(shard_count: usize, shards: &[Option<usize>], groups: &[&[usize]], unassigned: &[usize]) {
        let built = KeyGroups::build(shard_count, shards.iter().copied());
        assert_eq!(built.shard_count(), shard_count);
        for (shard, expected) in groups.iter().enumerate() {
            assert_eq!(built.group(shard), *expected, "group {shard} of {shards:?}");
        }
        assert_eq!(built.unassigned(), unassigned, "unassigned of {shards:?}");
        assert_eq!(built.key_count(), shards.len());
    }

    #[test]
    fn groups_keep_input_order() {
        check(0, &[], &[], &[]);
        check(2, &[], &[&[], &[]], &[]);
        check(1, &[Some(0), Some(0)], &[&[0, 1]], &[]);
        check(
            3,
            &[Some(2), Some(0), Some(2), None, Some(0)],
            &[&[1, 4], &[], &[0, 2]],
            &[3],
        );
        // A shard number the grouping does not know is counted as unassigned, not a panic.
        check(1, &[Some(5), Some(0)], &[&[1]], &[0]);
    }

    #[test]
    fn iter_skips_empty_groups_and_unknown_shards_are_empty() {
        let built = KeyGroups::build(3, [Some(2), Some(2), None].into_iter());
        let seen: Vec<(usize, Vec<usize>)> = built.iter().map(|(s, g)| (s, g.to_vec())).collect();
        assert_eq!(seen, vec![(2, vec![0, 1])]);
        assert!(built.group(99).is_empty());
    }

    proptest! {
        #[test]
        fn grouping_is_a_stable_partition(shards in proptest::collection::vec(proptest::option::of(0usize..5), 0..200)) {
            let built = KeyGroups::build(5, shards.iter().copied());
            let mut seen = vec![false; shards.len()];
            for shard in 0..5 {
                let group = built.group(shard);
                prop_assert!(group.windows(2).all(|w| w[0] < w[1]));
                for &i in group {
                    prop_assert_eq!(shards[i], Some(shard));
                    seen[i] = true;
                }
            }
            for &i in built.unassigned() {
                prop_assert_eq!(shards[i], None);
                seen[i] = true;
            }
            prop_assert!(seen.into_iter().all(|s| s));
        }
    }
}
