//! The plan, as pure functions: which entries are written, in which order, grouped how.
//!
//! A window of entries is deduplicated (the last entry for a key wins), split into phases by priority
//! (highest first), and within a phase sorted by slot, so that one shard's entries are contiguous
//! after grouping and each batch holds few slots (one script call per slot carries many entries).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::time::Duration;

use sharding::key_slot;

use crate::entry::{Entry, Priority};

/// A window's entries in write order.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Phases, highest priority first; each phase's entries sorted by slot.
    pub(crate) phases: Vec<(Priority, Vec<Entry>)>,
    /// Entries dropped because a later entry in the window had the same key.
    pub(crate) replaced: u64,
}

/// Plans a window: dedupe (last wins), phases by priority (highest first), slot order within a phase.
pub(crate) fn plan(entries: Vec<Entry>) -> Plan {
    let total = entries.len();
    let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(total);
    for (index, entry) in entries.iter().enumerate() {
        last.insert(&entry.key, index);
    }
    let keep: Vec<bool> = {
        let mut keep = vec![false; total];
        for &index in last.values() {
            keep[index] = true;
        }
        keep
    };
    drop(last);
    let mut phases: BTreeMap<std::cmp::Reverse<Priority>, Vec<(u16, Entry)>> = BTreeMap::new();
    let mut kept = 0u64;
    for (entry, keep) in entries.into_iter().zip(keep) {
        if keep {
            kept += 1;
            phases
                .entry(std::cmp::Reverse(entry.priority))
                .or_default()
                .push((key_slot(&entry.key), entry));
        }
    }
    let phases = phases
        .into_iter()
        .map(|(priority, mut entries)| {
            // Stable: entries of one slot keep their input order.
            entries.sort_by_key(|(slot, _)| *slot);
            (priority.0, entries.into_iter().map(|(_, e)| e).collect())
        })
        .collect();
    Plan {
        phases,
        replaced: total as u64 - kept,
    }
}

/// Groups entries by the shard `shard_of` names (keeping their order within a shard), and returns
/// the entries no shard serves apart. With `by_slot` (cluster and key-range modes, where the slot
/// decides the shard) `shard_of` is asked once per run of same-slot entries; otherwise once per key.
pub(crate) fn group_by_shard<F>(
    entries: Vec<Entry>,
    by_slot: bool,
    shard_of: F,
) -> (Vec<(String, Vec<Entry>)>, Vec<Entry>)
where
    F: Fn(&[u8]) -> Option<String>,
{
    let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut unroutable = Vec::new();
    let mut cached: Option<(u16, Option<String>)> = None;
    for entry in entries {
        let shard = if by_slot {
            let slot = key_slot(&entry.key);
            match &cached {
                Some((s, shard)) if *s == slot => shard.clone(),
                _ => {
                    let shard = shard_of(&entry.key);
                    cached = Some((slot, shard.clone()));
                    shard
                }
            }
        } else {
            shard_of(&entry.key)
        };
        match shard {
            Some(shard) => groups.entry(shard).or_default().push(entry),
            None => unroutable.push(entry),
        }
    }
    (groups.into_iter().collect(), unroutable)
}

/// Index ranges of consecutive entries that share a group: the same slot when `by_slot`, otherwise
/// one range per `max` entries (standalone nodes take any keys in one script).
pub(crate) fn slot_runs(keys: &[&[u8]], by_slot: bool, max: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut current: Option<u16> = None;
    for (index, key) in keys.iter().enumerate() {
        let group = if by_slot { Some(key_slot(key)) } else { None };
        if index > start && (group != current || index - start >= max) {
            runs.push(start..index);
            start = index;
        }
        current = group;
    }
    if start < keys.len() {
        runs.push(start..keys.len());
    }
    runs
}

/// A stable 64-bit hash of a key with a purpose-specific seed.
fn key_hash(key: &[u8], seed: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    seed.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// A share in `[0, 1)` picked from the key's hash.
fn key_share(key: &[u8], seed: u64) -> f64 {
    (key_hash(key, seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// The TTL stretched by a share in `[0, jitter)` picked from the key's hash: keys warmed together
/// expire spread over time, and the same key always gets the same stretch.
pub(crate) fn jittered(ttl: Duration, key: &[u8], jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    let stretch = ttl.as_secs_f64() * jitter * key_share(key, 0x6a69_7474_6572);
    ttl + Duration::from_secs_f64(stretch)
}

/// Whether a key is in the validation sample of share `ratio` (decided by the key's hash).
pub(crate) fn sampled(key: &[u8], ratio: f64) -> bool {
    ratio >= 1.0 || key_share(key, 0x7361_6d70_6c65) < ratio
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(key: &str, priority: Priority) -> Entry {
        Entry::new(key.to_string(), key.to_string()).priority(priority)
    }

    fn keys(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.key).into_owned())
            .collect()
    }

    #[test]
    fn plans_by_priority_then_slot() {
        use Priority::*;
        let check = |input: Vec<Entry>, want: Vec<(Priority, Vec<&str>)>, replaced: u64| {
            let plan = plan(input);
            let got: Vec<(Priority, Vec<String>)> = plan.phases.iter().map(|(p, e)| (*p, keys(e))).collect();
            let want: Vec<(Priority, Vec<String>)> = want
                .into_iter()
                .map(|(p, k)| (p, k.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!((got, plan.replaced), (want, replaced));
        };
        check(vec![], vec![], 0);
        // "{a}x" and "{a}y" share a slot and keep their input order; the slot of "{b}" is lower.
        assert!(key_slot(b"{b}") < key_slot(b"{a}"));
        check(
            vec![
                entry("{a}y", Normal),
                entry("{a}x", Normal),
                entry("{b}", Normal),
                entry("c", Critical),
                entry("d", Low),
            ],
            vec![
                (Critical, vec!["c"]),
                (Normal, vec!["{b}", "{a}y", "{a}x"]),
                (Low, vec!["d"]),
            ],
            0,
        );
        // The last entry for a key wins, with its own priority.
        check(
            vec![entry("k", Critical), entry("j", Low), entry("k", Low)],
            vec![(Low, vec!["j", "k"])],
            1,
        );
    }

    #[test]
    fn groups_by_shard_keeping_order() {
        let entries: Vec<Entry> = ["a1", "b1", "a2", "x", "b2"]
            .iter()
            .map(|k| entry(k, Priority::Normal))
            .collect();
        let (groups, unroutable) = group_by_shard(entries, false, |key| match key[0] {
            b'a' => Some("node-a".into()),
            b'b' => Some("node-b".into()),
            _ => None,
        });
        let groups: Vec<(String, Vec<String>)> = groups.into_iter().map(|(s, e)| (s, keys(&e))).collect();
        assert_eq!(
            groups,
            [
                ("node-a".to_string(), vec!["a1".to_string(), "a2".to_string()]),
                ("node-b".to_string(), vec!["b1".to_string(), "b2".to_string()]),
            ]
        );
        assert_eq!(keys(&unroutable), ["x"]);
    }

    #[test]
    fn runs_split_by_slot_and_size() {
        let check = |input: &[&str], by_slot: bool, max: usize, want: &[Range<usize>]| {
            let keys: Vec<&[u8]> = input.iter().map(|k| k.as_bytes()).collect();
            assert_eq!(
                slot_runs(&keys, by_slot, max),
                want,
                "{input:?} by_slot={by_slot} max={max}"
            );
        };
        check(&[], true, 10, &[]);
        check(&["{a}1", "{a}2", "{b}1", "{a}3"], true, 10, &[0..2, 2..3, 3..4]);
        check(&["{a}1", "{a}2", "{a}3"], true, 2, &[0..2, 2..3]);
        check(&["x", "y", "z"], false, 2, &[0..2, 2..3]);
    }

    #[test]
    fn jitter_stretches_within_bounds() {
        let ttl = Duration::from_secs(100);
        let check = |jitter: f64| {
            let stretched: Vec<Duration> = (0..1000)
                .map(|i| jittered(ttl, format!("k{i}").as_bytes(), jitter))
                .collect();
            let max = ttl + Duration::from_secs_f64(100.0 * jitter);
            assert!(
                stretched.iter().all(|t| *t >= ttl && *t <= max),
                "jitter {jitter}"
            );
            stretched
        };
        assert!(check(0.0).iter().all(|t| *t == ttl));
        let spread = check(0.2);
        let distinct: std::collections::HashSet<_> = spread.iter().collect();
        assert!(
            distinct.len() > 900,
            "jitter spreads expiries: {} distinct",
            distinct.len()
        );
        assert_eq!(jittered(ttl, b"same", 0.2), jittered(ttl, b"same", 0.2));
    }

    #[test]
    fn samples_take_about_the_share_asked() {
        let check = |ratio: f64, low: usize, high: usize| {
            let n = (0..10_000)
                .filter(|i| sampled(format!("k{i}").as_bytes(), ratio))
                .count();
            assert!((low..=high).contains(&n), "ratio {ratio}: {n} sampled");
        };
        check(1.0, 10_000, 10_000);
        check(0.1, 850, 1150);
        check(0.5, 4700, 5300);
    }

    proptest! {
        #[test]
        fn every_key_is_planned_once_in_priority_then_slot_order(
            input in proptest::collection::vec(("[a-e]{1,3}", 0u8..4), 0..200)
        ) {
            let priorities = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];
            let entries: Vec<Entry> = input
                .iter()
                .map(|(k, p)| entry(k, priorities[*p as usize]))
                .collect();
            let distinct: std::collections::HashSet<&String> = input.iter().map(|(k, _)| k).collect();
            let plan = plan(entries);
            let planned: Vec<&Entry> = plan.phases.iter().flat_map(|(_, e)| e).collect();
            prop_assert_eq!(planned.len(), distinct.len());
            prop_assert_eq!(plan.replaced as usize, input.len() - distinct.len());
            // Each key keeps the priority of its last entry.
            for e in &planned {
                let last = input.iter().rev().find(|(k, _)| k.as_bytes() == &e.key[..]).map(|(_, p)| *p);
                prop_assert_eq!(Some(e.priority), last.map(|p| priorities[p as usize]));
            }
            for window in plan.phases.windows(2) {
                prop_assert!(window[0].0 > window[1].0);
            }
            for (priority, entries) in &plan.phases {
                prop_assert!(entries.iter().all(|e| e.priority == *priority));
                prop_assert!(entries.windows(2).all(|w| key_slot(&w[0].key) <= key_slot(&w[1].key)));
            }
        }
    }
}
