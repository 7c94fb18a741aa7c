//! The plan, as pure functions: which entries are written, in which order, grouped how.
//!
//! A window of entries is deduplicated (the last entry for a key wins), split into phases by priority
//! (highest first), and within a phase sorted by slot, so that each batch holds few slots (one command
//! per slot group carries many entries).

use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use sharding::key_slot;

use crate::entry::{Entry, Priority};

/// An entry of a planned window, with its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slotted<'a> {
    pub(crate) slot: u16,
    pub(crate) entry: &'a Entry,
}

/// A window's entries and their write order. Entries stay where the source put them; phases and
/// batches are lists of indices, so that a million entries are never moved or copied while planning.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The window's entries, in source order.
    pub(crate) entries: Vec<Entry>,
    /// Each entry's slot.
    pub(crate) slots: Vec<u16>,
    /// Phases, highest priority first: indices of the entries to write, in slot order.
    pub(crate) phases: Vec<(Priority, Vec<u32>)>,
    /// Entries dropped because a later entry in the window had the same key.
    pub(crate) replaced: u64,
}

impl Plan {
    /// The entry at `index`, with its slot.
    pub(crate) fn slotted(&self, index: u32) -> Slotted<'_> {
        Slotted {
            slot: self.slots[index as usize],
            entry: &self.entries[index as usize],
        }
    }
}

/// A fast 64-bit hash of a key, seeded once per process. Planning hashes every key of a window, and
/// SipHash alone cost a tenth of a 1,000,000-entry warm-up's client time.
fn fast_hash(key: &[u8]) -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x7761_726d_7570u64));
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // Final avalanche (murmur3's), so that every output bit depends on every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Plans a window: dedupe (the last entry for a key wins), phases by priority (highest first), slot
/// order within a phase.
///
/// One sequential pass computes every slot and key hash; a counting sort by slot follows; duplicates
/// can only share a slot, so each slot's few entries are sorted by hash to find them. Nothing here
/// moves an entry.
pub(crate) fn plan(entries: Vec<Entry>) -> Plan {
    const SLOTS: usize = sharding::SLOT_COUNT as usize;
    let total = entries.len();
    let (slots, hashes): (Vec<u16>, Vec<u64>) = entries
        .iter()
        .map(|e| (key_slot(&e.key), fast_hash(&e.key)))
        .unzip();
    let mut starts = vec![0u32; SLOTS + 1];
    for &slot in &slots {
        starts[slot as usize + 1] += 1;
    }
    for slot in 1..=SLOTS {
        starts[slot] += starts[slot - 1];
    }
    let mut order = vec![0u32; total];
    let mut next = starts.clone();
    for (index, &slot) in slots.iter().enumerate() {
        order[next[slot as usize] as usize] = index as u32;
        next[slot as usize] += 1;
    }
    drop(next);
    let mut phases: [Vec<u32>; 4] = Default::default();
    let mut kept = 0u64;
    let mut bucket: Vec<(u64, u32)> = Vec::new();
    for slot in 0..SLOTS {
        let members = &order[starts[slot] as usize..starts[slot + 1] as usize];
        if members.len() == 1 {
            kept += 1;
            phases[entries[members[0] as usize].priority as usize].push(members[0]);
            continue;
        }
        bucket.clear();
        bucket.extend(members.iter().map(|&i| (hashes[i as usize], i)));
        // By hash, then index: equal keys end up next to each other, in input order.
        bucket.sort_unstable();
        let mut start = 0;
        while start < bucket.len() {
            let mut end = start + 1;
            while end < bucket.len() && bucket[end].0 == bucket[start].0 {
                end += 1;
            }
            for a in start..end {
                let index = bucket[a].1 as usize;
                let key = &entries[index].key;
                // Replaced when a later entry of the same hash run has the same key (a run longer
                // than one is a duplicate, or a rare hash collision).
                if !(a + 1..end).any(|b| entries[bucket[b].1 as usize].key == *key) {
                    kept += 1;
                    phases[entries[index].priority as usize].push(index as u32);
                }
            }
            start = end;
        }
    }
    let phases = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ]
    .into_iter()
    .map(|p| (p, std::mem::take(&mut phases[p as usize])))
    .filter(|(_, indices)| !indices.is_empty())
    .collect();
    Plan {
        entries,
        slots,
        phases,
        replaced: total as u64 - kept,
    }
}

/// Groups entry indices by the shard `shard_of` names (keeping their order within a shard), and
/// returns the indices no shard serves apart. With `by_slot` (cluster, standalone and key-range
/// modes, where the slot decides the shard) `shard_of` is asked once per run of same-slot entries;
/// otherwise (ketama) once per key.
pub(crate) fn group_by_shard<F>(
    indices: Vec<u32>,
    slots: &[u16],
    by_slot: bool,
    shard_of: F,
) -> (Vec<(String, Vec<u32>)>, Vec<u32>)
where
    F: Fn(u32) -> Option<String>,
{
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let mut unroutable = Vec::new();
    let mut cached: Option<(u16, Option<usize>)> = None;
    for index in indices {
        let slot = slots[index as usize];
        let group = match cached {
            Some((cached_slot, group)) if by_slot && cached_slot == slot => group,
            _ => {
                let group = shard_of(index).map(|shard| {
                    groups.iter().position(|(s, _)| *s == shard).unwrap_or_else(|| {
                        groups.push((shard, Vec::new()));
                        groups.len() - 1
                    })
                });
                cached = Some((slot, group));
                group
            }
        };
        match group {
            Some(group) => groups[group].1.push(index),
            None => unroutable.push(index),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    (groups, unroutable)
}

/// Index ranges of consecutive entries that one script call may carry: the same slot when `by_slot`
/// (cluster mode), otherwise any run; never more than `max`.
pub(crate) fn slot_runs(slots: &[u16], by_slot: bool, max: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for index in 1..slots.len() {
        if (by_slot && slots[index] != slots[start]) || index - start >= max {
            runs.push(start..index);
            start = index;
        }
    }
    if start < slots.len() {
        runs.push(start..slots.len());
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

/// The TTL shortened by a share in `[0, jitter)` picked from the key's hash, never below 1 ms: keys
/// warmed together expire spread over time, and the same key always gets the same cut. Shortening is
/// the one meaning of `ttl_jitter`, the same as `cache_facade::CacheConfig::ttl_jitter`: no entry
/// outlives the TTL its source gave it.
pub(crate) fn jittered(ttl: Duration, key: &[u8], jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    let cut = ttl.as_secs_f64() * jitter * key_share(key, 0x6a69_7474_6572);
    // The cut is at most `ttl` (rounded through f64), even near `Duration::MAX`: one that does not fit
    // a `Duration` is all of it.
    let cut = Duration::try_from_secs_f64(cut).unwrap_or(ttl);
    ttl.saturating_sub(cut).max(Duration::from_millis(1))
}

/// Whether a key is in the validation sample of share `ratio` (decided by the key's hash).
pub(crate) fn sampled(key: &[u8], ratio: f64) -> bool {
    ratio >= 1.0 || key_share(key, 0x7361_6d70_6c65) < ratio
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn jitter_never_overflows() {
        let check = |ttl: Duration, jitter: f64| {
            let got = jittered(ttl, b"key", jitter);
            assert!(
                got <= ttl.max(Duration::from_millis(1)) && got >= Duration::from_millis(1),
                "{ttl:?} jittered by {jitter} is {got:?}"
            );
        };
        check(Duration::MAX, 0.5);
        check(Duration::MAX, 1.0);
        check(Duration::from_millis(u64::MAX), 0.5);
        check(Duration::ZERO, 0.5);
        check(Duration::from_millis(1), 0.5);
        check(Duration::from_secs(60), 0.5);
    }

    fn entry(key: &str, priority: Priority) -> Entry {
        Entry::new(key.to_string(), key.to_string()).priority(priority)
    }

    fn keys(plan: &Plan, indices: &[u32]) -> Vec<String> {
        indices
            .iter()
            .map(|&i| String::from_utf8_lossy(&plan.entries[i as usize].key).into_owned())
            .collect()
    }

    #[test]
    fn plans_by_priority_then_slot() {
        use Priority::*;
        let check = |input: Vec<Entry>, want: Vec<(Priority, Vec<&str>)>, replaced: u64| {
            let plan = plan(input);
            let got: Vec<(Priority, Vec<String>)> = plan
                .phases
                .iter()
                .map(|(p, indices)| {
                    // Keys of one slot come in no particular order.
                    let mut keys = keys(&plan, indices);
                    keys.sort_by_key(|k| (key_slot(k.as_bytes()), k.clone()));
                    (*p, keys)
                })
                .collect();
            let want: Vec<(Priority, Vec<String>)> = want
                .into_iter()
                .map(|(p, k)| (p, k.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!((got, plan.replaced), (want, replaced));
        };
        check(vec![], vec![], 0);
        // "{a}x" and "{a}y" share a slot; the slot of "{b}" is lower.
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
                (Normal, vec!["{b}", "{a}x", "{a}y"]),
                (Low, vec!["d"]),
            ],
            0,
        );
        // The last entry for a key wins, with its own priority and value.
        let plan = plan(vec![
            entry("k", Critical),
            entry("j", Low),
            Entry::new("k", "last").priority(Low),
        ]);
        assert_eq!(plan.replaced, 1);
        assert_eq!(plan.phases.len(), 1);
        let k = plan.phases[0]
            .1
            .iter()
            .map(|&i| plan.slotted(i))
            .find(|s| &s.entry.key[..] == b"k")
            .unwrap();
        assert_eq!(*k.entry, Entry::new("k", "last").priority(Low));
        assert_eq!(k.slot, key_slot(b"k"));
    }

    #[test]
    fn groups_by_shard_keeping_order() {
        // Indices 0..5 with these slots; the shard is named by the index's parity here.
        let slots = [1u16, 1, 2, 3, 4];
        let shard_of = |i: u32| match i {
            0 | 1 | 4 => Some("node-a".to_string()),
            2 => Some("node-b".to_string()),
            _ => None,
        };
        for by_slot in [true, false] {
            let (groups, unroutable) = group_by_shard(vec![0, 1, 2, 3, 4], &slots, by_slot, shard_of);
            assert_eq!(
                groups,
                [
                    ("node-a".to_string(), vec![0, 1, 4]),
                    ("node-b".to_string(), vec![2])
                ]
            );
            assert_eq!(unroutable, [3]);
        }
        // By slot, the shard is asked once per slot: an entry that would route elsewhere within a
        // slot follows its slot (the slot decides in cluster mode).
        let (groups, _) = group_by_shard(vec![1, 2], &[5, 5, 5], true, shard_of);
        assert_eq!(groups, [("node-a".to_string(), vec![1, 2])]);
    }

    #[test]
    fn runs_split_by_slot_and_size() {
        let check = |slots: &[u16], by_slot: bool, max: usize, want: &[Range<usize>]| {
            assert_eq!(
                slot_runs(slots, by_slot, max),
                want,
                "{slots:?} by_slot={by_slot} max={max}"
            );
        };
        check(&[], true, 10, &[]);
        check(&[5, 5, 7, 5], true, 10, &[0..2, 2..3, 3..4]);
        check(&[5, 5, 5], true, 2, &[0..2, 2..3]);
        check(&[1, 2, 3], false, 2, &[0..2, 2..3]);
    }

    #[test]
    fn fast_hashes_differ_for_close_keys() {
        let hashes: std::collections::HashSet<u64> = (0..100_000)
            .map(|i| fast_hash(format!("key:{i}").as_bytes()) >> 16)
            .collect();
        assert_eq!(hashes.len(), 100_000);
        assert_ne!(fast_hash(b""), fast_hash(b"\0"));
        assert_ne!(fast_hash(b"abcdefgh"), fast_hash(b"abcdefgh\0"));
    }

    #[test]
    fn jitter_shortens_within_bounds() {
        let ttl = Duration::from_secs(100);
        let check = |jitter: f64| {
            let shortened: Vec<Duration> = (0..1000)
                .map(|i| jittered(ttl, format!("k{i}").as_bytes(), jitter))
                .collect();
            let min = ttl - Duration::from_secs_f64(100.0 * jitter);
            assert!(
                shortened.iter().all(|t| *t <= ttl && *t >= min),
                "jitter {jitter}: every TTL within [{min:?}, {ttl:?}]"
            );
            shortened
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
            input in proptest::collection::vec(("[a-e{}]{1,4}", 0u8..4, 0u8..3), 0..300)
        ) {
            let priorities = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];
            let entries: Vec<Entry> = input
                .iter()
                .map(|(k, p, v)| Entry::new(k.clone(), v.to_string()).priority(priorities[*p as usize]))
                .collect();
            let distinct: std::collections::HashSet<&String> = input.iter().map(|(k, _, _)| k).collect();
            let plan = plan(entries);
            let planned: Vec<Slotted<'_>> = plan.phases.iter().flat_map(|(_, e)| e).map(|&i| plan.slotted(i)).collect();
            prop_assert_eq!(planned.len(), distinct.len());
            prop_assert_eq!(plan.replaced as usize, input.len() - distinct.len());
            // Each key keeps its last entry (priority and value), and its slot.
            for s in &planned {
                let (_, p, v) = input.iter().rev().find(|(k, _, _)| k.as_bytes() == &s.entry.key[..]).unwrap();
                prop_assert_eq!(s.entry.priority, priorities[*p as usize]);
                prop_assert_eq!(&s.entry.payload, &crate::entry::Payload::Bytes(Bytes::from(v.to_string())));
                prop_assert_eq!(s.slot, key_slot(&s.entry.key));
            }
            for window in plan.phases.windows(2) {
                prop_assert!(window[0].0 > window[1].0);
            }
            for (priority, indices) in &plan.phases {
                let entries: Vec<Slotted<'_>> = indices.iter().map(|&i| plan.slotted(i)).collect();
                prop_assert!(entries.iter().all(|e| e.entry.priority == *priority));
                prop_assert!(entries.windows(2).all(|w| w[0].slot <= w[1].slot));
            }
        }
    }
}
