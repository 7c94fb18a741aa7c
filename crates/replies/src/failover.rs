//! Failover diffing: which slots changed primary between two views of a cluster, and whether that was a
//! failover (a replica promoted) rather than a migration (slots handed to another primary).

use sharding::SlotRange;

/// One shard of a cluster view: the primary serving some slot ranges, and the replicas it had.
///
/// `N` names a node the way the caller does: an address, a node ID, an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView<N> {
    /// The node serving the slots.
    pub primary: N,
    /// Its replicas in that view.
    pub replicas: Vec<N>,
    /// The slot ranges it serves.
    pub slots: Vec<SlotRange>,
}

/// A failover seen between two views: slots that `old_primary` served now served by `new_primary`,
/// which was its replica (or no primary at all) before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover<N> {
    /// The primary that served the slots before.
    pub old_primary: N,
    /// The former replica that serves them now.
    pub new_primary: N,
    /// The slot ranges that moved, as the new view lists them.
    pub slots: Vec<SlotRange>,
}

/// The failovers between `before` and `after`, one per `(old, new)` primary pair, in the order of
/// `after`'s shards.
///
/// Slots count as failed over when their new primary was a replica of their old primary, or was no
/// primary at all in `before` (a replica flagged failing can be missing from its primary's replica list
/// and still be promoted). Slots handed from one primary to another are a migration, not a failover.
///
/// ```
/// use replies::{Failover, ShardView, failovers};
/// use sharding::SlotRange;
///
/// let shard = |primary, replicas: &[&'static str], first, last| ShardView {
///     primary,
///     replicas: replicas.to_vec(),
///     slots: vec![SlotRange::new(first, last).unwrap()],
/// };
/// let before = [shard("a", &["b"], 0, 8191), shard("c", &["d"], 8192, 16383)];
/// let after = [shard("b", &[], 0, 8191), shard("c", &["d"], 8192, 16383)];
/// assert_eq!(
///     failovers(&before, &after),
///     [Failover { old_primary: "a", new_primary: "b", slots: vec![SlotRange::new(0, 8191).unwrap()] }]
/// );
/// assert!(failovers(&before, &before).is_empty());
/// ```
pub fn failovers<N: PartialEq + Clone>(before: &[ShardView<N>], after: &[ShardView<N>]) -> Vec<Failover<N>> {
    let mut out: Vec<Failover<N>> = Vec::new();
    for shard in after {
        let was_primary = before.iter().any(|s| s.primary == shard.primary);
        for range in &shard.slots {
            let Some(old) = before
                .iter()
                .find(|s| s.slots.iter().any(|r| r.contains(range.start())))
            else {
                continue;
            };
            // The new owner was a replica of the old one, or no primary at all before.
            let promoted = old.replicas.contains(&shard.primary) || !was_primary;
            if old.primary == shard.primary || !promoted {
                continue;
            }
            match out
                .iter_mut()
                .find(|f| f.old_primary == old.primary && f.new_primary == shard.primary)
            {
                Some(failover) => failover.slots.push(*range),
                None => out.push(Failover {
                    old_primary: old.primary.clone(),
                    new_primary: shard.primary.clone(),
                    slots: vec![*range],
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(
        primary: &'static str,
        replicas: &[&'static str],
        ranges: &[(u16, u16)],
    ) -> ShardView<&'static str> {
        ShardView {
            primary,
            replicas: replicas.to_vec(),
            slots: ranges
                .iter()
                .map(|&(a, b)| SlotRange::new(a, b).expect("a range"))
                .collect(),
        }
    }

    /// `(old primary, new primary, slot ranges)`, as plain data to compare.
    type Seen<'a> = (&'a str, &'a str, Vec<(u16, u16)>);

    fn check(before: &[ShardView<&'static str>], after: &[ShardView<&'static str>], want: &[Seen<'_>]) {
        let got: Vec<Seen<'_>> = failovers(before, after)
            .into_iter()
            .map(|f| {
                (
                    f.old_primary,
                    f.new_primary,
                    f.slots.iter().map(|r| (r.start(), r.end())).collect(),
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn promotions_are_failovers_and_hand_overs_are_not() {
        let before = [
            shard("a", &["b"], &[(0, 8191)]),
            shard("c", &["d"], &[(8192, 16383)]),
        ];
        // The replica took over.
        check(
            &before,
            &[
                shard("b", &[], &[(0, 8191)]),
                shard("c", &["d"], &[(8192, 16383)]),
            ],
            &[("a", "b", vec![(0, 8191)])],
        );
        // Slots moved to another primary: a migration.
        check(
            &before,
            &[
                shard("a", &["b"], &[(0, 8000)]),
                shard("c", &["d"], &[(8001, 16383)]),
            ],
            &[],
        );
        // A node unknown before (a failing replica left out of the list) that now serves slots.
        check(
            &before,
            &[
                shard("e", &[], &[(0, 8191)]),
                shard("c", &["d"], &[(8192, 16383)]),
            ],
            &[("a", "e", vec![(0, 8191)])],
        );
        // Two ranges of one old primary gathered in one failover; two old primaries in two.
        let split = [
            shard("a", &["b"], &[(0, 99), (200, 299)]),
            shard("c", &["d"], &[(100, 199)]),
        ];
        check(
            &split,
            &[
                shard("b", &[], &[(0, 99), (200, 299)]),
                shard("d", &[], &[(100, 199)]),
            ],
            &[
                ("a", "b", vec![(0, 99), (200, 299)]),
                ("c", "d", vec![(100, 199)]),
            ],
        );
        check(&before, &before, &[]);
        check(&[], &before, &[]);
        check(&before, &[], &[]);
    }
}
