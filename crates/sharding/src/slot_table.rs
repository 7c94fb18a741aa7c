//! Slot → shard for all 16,384 slots, as a Redis Cluster reports it.

use std::fmt;
use std::ops::RangeInclusive;

use crate::slot::ranges_from_sorted;
use crate::{Error, SLOT_COUNT, Sharder, SlotRange, key_slot};

/// Marks a slot that no shard owns.
const NO_OWNER: u16 = u16::MAX;

/// Which shard owns each of the 16,384 slots, built from `(slot range, shard)` assignments as
/// `CLUSTER SHARDS` or `CLUSTER SLOTS` return them.
///
/// A shard is named by any stable string (usually its primary's `host:port` or node id); ranges
/// given for the same name belong to the same shard, numbered in order of first appearance.
/// Slots that no assignment covers are *unassigned*: the table reports them, and keys in them map
/// to no shard, because a cluster with `cluster-require-full-coverage no` keeps serving the rest.
///
/// Look-ups are one key hash and one array read; the table takes 32 KiB.
///
/// ```
/// use sharding::{SlotTable, Sharder, key_slot};
///
/// let table = SlotTable::from_ranges([
///     (0..=5460, "127.0.0.1:30001"),
///     (5461..=10922, "127.0.0.1:30002"),
///     (10923..=16383, "127.0.0.1:30003"),
/// ])?;
/// assert!(table.is_complete());
/// assert_eq!(table.shard_of_slot(key_slot(b"foo")), Some(2)); // "foo" is in slot 12182.
/// assert_eq!(table.shard_name(2), Some("127.0.0.1:30003"));
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Clone)]
pub struct SlotTable {
    /// Shard number of every slot, or `NO_OWNER`.
    owners: Box<[u16]>,
    shards: Vec<String>,
    /// Number of slots each shard owns.
    slot_counts: Vec<usize>,
}

impl SlotTable {
    /// The most shards a table can name: one per slot, which also keeps shard numbers below `NO_OWNER`.
    pub const MAX_SHARDS: usize = SLOT_COUNT as usize;

    /// A table in which no slot is assigned yet.
    pub fn empty() -> SlotTable {
        SlotTable {
            owners: vec![NO_OWNER; usize::from(SLOT_COUNT)].into_boxed_slice(),
            shards: Vec::new(),
            slot_counts: Vec::new(),
        }
    }

    /// Builds a table from `(range, shard name)` pairs; ranges include both ends, as Redis writes them.
    ///
    /// Fails if a range is inverted or past slot 16383, a shard name is empty, or one slot is given to
    /// two different shards. Repeating a slot for the same shard is accepted.
    pub fn from_ranges<I, S>(assignments: I) -> Result<SlotTable, Error>
    where
        I: IntoIterator<Item = (RangeInclusive<u16>, S)>,
        S: AsRef<str>,
    {
        let mut table = SlotTable::empty();
        for (range, shard) in assignments {
            let range = SlotRange::try_from(range)?;
            let shard = table.shard_number(shard.as_ref())?;
            for slot in range.slots() {
                let owner = table.owners[usize::from(slot)];
                if owner != NO_OWNER && owner != shard {
                    return Err(Error::SlotAssignedTwice {
                        slot,
                        first: table.shards[usize::from(owner)].clone(),
                        second: table.shards[usize::from(shard)].clone(),
                    });
                }
            }
            table.set_owner(range, shard);
        }
        Ok(table)
    }

    /// Gives every slot of `range` to `shard` (adding the shard if it is new), whoever owned it before:
    /// what a `MOVED` reply or a finished slot migration tells. Returns the shard's number.
    pub fn assign(&mut self, range: SlotRange, shard: &str) -> Result<usize, Error> {
        let shard = self.shard_number(shard)?;
        self.set_owner(range, shard);
        Ok(usize::from(shard))
    }

    /// Leaves every slot of `range` without an owner (its shard stays known, possibly with 0 slots).
    pub fn unassign(&mut self, range: SlotRange) {
        self.set_owner(range, NO_OWNER);
    }

    /// The shard that owns `slot`, or `None` if it is unassigned or not a slot.
    #[inline]
    pub fn shard_of_slot(&self, slot: u16) -> Option<usize> {
        match self.owners.get(usize::from(slot)) {
            Some(&owner) if owner != NO_OWNER => Some(usize::from(owner)),
            _ => None,
        }
    }

    /// The names of all shards, indexed by shard number.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The number of the shard called `name`, if the table knows it.
    pub fn shard_index(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|shard| shard == name)
    }

    /// How many slots `shard` owns (0 for an unknown shard).
    pub fn slot_count_of(&self, shard: usize) -> usize {
        self.slot_counts.get(shard).copied().unwrap_or(0)
    }

    /// The slots `shard` owns, as ascending ranges.
    pub fn ranges_of(&self, shard: usize) -> Vec<SlotRange> {
        self.ranges_where(|owner| usize::from(owner) == shard && owner != NO_OWNER)
    }

    /// The slots no shard owns, as ascending ranges (empty when the table is complete).
    pub fn unassigned_slots(&self) -> Vec<SlotRange> {
        self.ranges_where(|owner| owner == NO_OWNER)
    }

    /// Number of slots that have an owner.
    pub fn assigned_slot_count(&self) -> usize {
        self.slot_counts.iter().sum()
    }

    /// Whether every slot has an owner.
    pub fn is_complete(&self) -> bool {
        self.assigned_slot_count() == usize::from(SLOT_COUNT)
    }

    /// Runs of consecutive slots with the same owner, in slot order, as `(range, shard)`;
    /// unassigned runs are left out.
    pub fn assignments(&self) -> impl Iterator<Item = (SlotRange, usize)> + '_ {
        let mut slot: usize = 0;
        std::iter::from_fn(move || {
            while slot < self.owners.len() {
                let owner = self.owners[slot];
                let start = slot;
                while slot < self.owners.len() && self.owners[slot] == owner {
                    slot += 1;
                }
                if owner != NO_OWNER {
                    // Both ends are below SLOT_COUNT, so the conversions cannot truncate.
                    let range = SlotRange::new(start as u16, (slot - 1) as u16).ok()?;
                    return Some((range, usize::from(owner)));
                }
            }
            None
        })
    }

    /// The name of the shard owning `slot`, if any.
    pub(crate) fn owner_name(&self, slot: u16) -> Option<&str> {
        self.shard_of_slot(slot).map(|shard| self.shards[shard].as_str())
    }

    fn shard_number(&mut self, name: &str) -> Result<u16, Error> {
        if name.is_empty() {
            return Err(Error::EmptyShardName);
        }
        if let Some(index) = self.shard_index(name) {
            // Shard numbers are kept below MAX_SHARDS, which fits in u16.
            return Ok(index as u16);
        }
        if self.shards.len() >= SlotTable::MAX_SHARDS {
            return Err(Error::TooManyShards {
                count: self.shards.len() + 1,
                max: SlotTable::MAX_SHARDS,
            });
        }
        self.shards.push(name.to_string());
        self.slot_counts.push(0);
        Ok((self.shards.len() - 1) as u16)
    }

    fn set_owner(&mut self, range: SlotRange, shard: u16) {
        for slot in range.slots() {
            let owner = &mut self.owners[usize::from(slot)];
            if *owner != NO_OWNER {
                self.slot_counts[usize::from(*owner)] -= 1;
            }
            *owner = shard;
            if shard != NO_OWNER {
                self.slot_counts[usize::from(shard)] += 1;
            }
        }
    }

    fn ranges_where(&self, keep: impl Fn(u16) -> bool) -> Vec<SlotRange> {
        ranges_from_sorted((0..SLOT_COUNT).filter(|&slot| keep(self.owners[usize::from(slot)])))
    }
}

impl Default for SlotTable {
    fn default() -> SlotTable {
        SlotTable::empty()
    }
}

impl AsRef<SlotTable> for SlotTable {
    fn as_ref(&self) -> &SlotTable {
        self
    }
}

/// Two tables are equal when every slot has an owner of the same name (or none in both), whatever
/// order the shards were named in.
impl PartialEq for SlotTable {
    fn eq(&self, other: &SlotTable) -> bool {
        (0..SLOT_COUNT).all(|slot| self.owner_name(slot) == other.owner_name(slot))
    }
}

impl Eq for SlotTable {}

/// Shows each shard with its ranges instead of 16,384 numbers.
impl fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (shard, name) in self.shards.iter().enumerate() {
            map.entry(name, &DisplayRanges(self.ranges_of(shard)));
        }
        let unassigned = self.unassigned_slots();
        if !unassigned.is_empty() {
            map.entry(&"unassigned", &DisplayRanges(unassigned));
        }
        map.finish()
    }
}

struct DisplayRanges(Vec<SlotRange>);

impl fmt::Debug for DisplayRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", shown.join(", "))
    }
}

impl Sharder for SlotTable {
    fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard_name(&self, shard: usize) -> Option<&str> {
        self.shards.get(shard).map(String::as_str)
    }

    fn shard_weight(&self, shard: usize) -> f64 {
        self.slot_count_of(shard) as f64
    }

    #[inline]
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        self.shard_of_slot(key_slot(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(assignments: &[(RangeInclusive<u16>, &str)], expected: Result<(&[&str], &[&str]), Error>) {
        let built = SlotTable::from_ranges(assignments.iter().cloned());
        let shown = built.as_ref().map(|table| {
            let shards: Vec<String> = (0..table.shard_count())
                .map(|s| {
                    let ranges: Vec<String> = table.ranges_of(s).iter().map(ToString::to_string).collect();
                    format!("{}={}", table.shards()[s], ranges.join(","))
                })
                .collect();
            let unassigned: Vec<String> = table.unassigned_slots().iter().map(ToString::to_string).collect();
            (shards, unassigned)
        });
        match (shown, expected) {
            (Ok((shards, unassigned)), Ok((want_shards, want_unassigned))) => {
                assert_eq!(shards, want_shards, "shards of {assignments:?}");
                assert_eq!(unassigned, want_unassigned, "unassigned of {assignments:?}");
            }
            (Err(got), Err(want)) => assert_eq!(got, &want, "error of {assignments:?}"),
            (got, want) => panic!("{assignments:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn builds_from_cluster_slots_style_ranges() {
        check(
            &[(0..=5460, "a"), (5461..=10922, "b"), (10923..=16383, "c")],
            Ok((&["a=0-5460", "b=5461-10922", "c=10923-16383"], &[])),
        );
        // A shard with two ranges (after a reshard) and a gap.
        check(
            &[(0..=99, "a"), (200..=16383, "b"), (100..=149, "a")],
            Ok((&["a=0-149", "b=200-16383"], &["150-199"])),
        );
        check(&[], Ok((&[], &["0-16383"])));
        // The same slot twice for the same shard is harmless.
        check(&[(0..=10, "a"), (5..=16383, "a")], Ok((&["a=0-16383"], &[])));
    }

    #[test]
    fn rejects_bad_assignments() {
        check(
            &[(0..=10, "a"), (10..=20, "b")],
            Err(Error::SlotAssignedTwice {
                slot: 10,
                first: "a".into(),
                second: "b".into(),
            }),
        );
        #[allow(clippy::reversed_empty_ranges)] // The inverted range is the point of this case.
        let inverted = 10..=9;
        check(
            &[(inverted, "a")],
            Err(Error::InvertedSlotRange { start: 10, end: 9 }),
        );
        check(&[(0..=16384, "a")], Err(Error::SlotOutOfRange { slot: 16384 }));
        check(&[(0..=1, "")], Err(Error::EmptyShardName));
    }

    #[test]
    fn too_many_shards_is_an_error() {
        let mut table = SlotTable::empty();
        for slot in 0..SLOT_COUNT {
            table
                .assign(SlotRange::single(slot).unwrap(), &format!("s{slot}"))
                .unwrap();
        }
        assert_eq!(
            table.assign(SlotRange::single(0).unwrap(), "one more"),
            Err(Error::TooManyShards {
                count: 16_385,
                max: 16_384
            })
        );
    }

    #[test]
    fn assign_and_unassign_keep_counts() {
        let mut table = SlotTable::from_ranges([(0..=16383, "a")]).unwrap();
        let b = table.assign(SlotRange::new(100, 199).unwrap(), "b").unwrap();
        assert_eq!((table.slot_count_of(0), table.slot_count_of(b)), (16_284, 100));
        table.unassign(SlotRange::new(150, 249).unwrap());
        assert_eq!((table.slot_count_of(0), table.slot_count_of(b)), (16_234, 50));
        assert_eq!(table.unassigned_slots(), vec![SlotRange::new(150, 249).unwrap()]);
        assert!(!table.is_complete());
        assert_eq!(table.shard_of_slot(160), None);
        assert_eq!(table.shard_of_slot(120), Some(b));
        assert_eq!(table.shard_of_slot(16_384), None);
        let runs: Vec<(String, usize)> = table.assignments().map(|(r, s)| (r.to_string(), s)).collect();
        assert_eq!(
            runs,
            [
                ("0-99".to_string(), 0),
                ("100-149".to_string(), 1),
                ("250-16383".to_string(), 0)
            ]
        );
    }

    #[test]
    fn equality_ignores_shard_order() {
        let one = SlotTable::from_ranges([(0..=8191, "a"), (8192..=16383, "b")]).unwrap();
        let two = SlotTable::from_ranges([(8192..=16383, "b"), (0..=8191, "a")]).unwrap();
        let three = SlotTable::from_ranges([(0..=8190, "a"), (8191..=16383, "b")]).unwrap();
        assert_eq!(one, two);
        assert_ne!(one, three);
        assert_eq!(format!("{one:?}"), r#"{"a": [0-8191], "b": [8192-16383]}"#);
    }

    #[test]
    fn keys_follow_their_slot() {
        let table = SlotTable::from_ranges([(0..=8191, "a"), (8192..=16383, "b")]).unwrap();
        for key in [&b"foo"[..], b"bar", b"{user}:1", b""] {
            let expected = if key_slot(key) < 8192 { 0 } else { 1 };
            assert_eq!(table.shard_of(key), Some(expected), "{key:?}");
        }
        assert_eq!(table.shard_weight(1), 8192.0);
    }
}
