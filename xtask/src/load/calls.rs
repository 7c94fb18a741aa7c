//! One call of a workload, chosen before the client is, so every client replays the same sequence.

use std::sync::Arc;

use fred::prelude::*;

use super::Workload;

/// Keys in one batch call (get-many, set-many, del-many) unless `--batch-size` says otherwise.
pub(crate) const BATCH: usize = 100;

/// The batch size of this run (`--batch-size`), set once before any load starts.
static BATCH_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(BATCH);

/// Keys in one batch call of this run.
pub(crate) fn batch_size() -> usize {
    BATCH_SIZE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets the batch size of this run (at least 1).
pub(crate) fn set_batch_size(size: usize) {
    BATCH_SIZE.store(size.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// The hot key set of `HotGet`: the first this many keys.
pub(crate) const HOT_KEYS: usize = 1000;

pub(crate) fn key(i: usize) -> String {
    format!("load:{i}")
}

/// A small fast generator per task (xorshift), so key choice costs nothing next to a network call.
pub(crate) struct Rng(pub(super) u64);

impl Rng {
    pub(crate) fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Versions and envelopes for `VersionedSet`, the way consistency makes them.
#[derive(Clone)]
pub(super) struct Lww {
    clock: Arc<consistency::Clock>,
    writer: consistency::WriterId,
    pub(super) script: Arc<cluster_client::Script>,
}

impl Lww {
    pub(super) fn new() -> Lww {
        Lww {
            clock: Arc::new(consistency::Clock::new()),
            writer: consistency::WriterId::random(),
            script: Arc::new(cluster_client::Script::new(consistency::LWW_SCRIPT)),
        }
    }

    /// `value` in an envelope under a fresh version.
    pub(super) fn envelope(&self, value: &[u8]) -> Vec<u8> {
        let version = consistency::Version::new(self.clock.now(), self.writer);
        consistency::Envelope::Value {
            version,
            payload: value,
        }
        .encode()
    }

    /// Whether the script's reply is a decision: written (`{1}`), or kept because another task's newer
    /// version of the same key got there first (`{0, header}`), which is last-write-wins doing its job.
    pub(super) fn decided(&self, reply: &Value) -> bool {
        matches!(reply, Value::Array(parts) if matches!(parts.first().and_then(Value::as_i64), Some(0 | 1)))
    }

    /// [`Lww::decided`] for cluster-client's reply type.
    pub(super) fn decided_reply(&self, reply: &cluster_client::Value) -> bool {
        use cluster_client::Value;
        matches!(reply, Value::Array(parts) if matches!(parts.first().and_then(Value::as_i64), Some(0 | 1)))
    }
}

/// One call of a workload, chosen before the client is: the same sequence of calls for every client.
pub(super) enum Call {
    Set(String),
    VersionedSet(String),
    Get(String),
    GetMany(Vec<String>),
    SetMany(Vec<String>),
    DelMany(Vec<String>),
}

impl Call {
    pub(super) fn next(workload: Workload, rng: &mut Rng, keys: usize) -> Call {
        let (op, keys) = match workload {
            Workload::Mixed if rng.next(100) < 80 => (Workload::Get, keys),
            Workload::Mixed => (Workload::Set, keys),
            Workload::HotGet if rng.next(100) < 90 => (Workload::Get, keys.min(HOT_KEYS)),
            Workload::HotGet => (Workload::Set, keys.min(HOT_KEYS)),
            other => (other, keys),
        };
        let size = batch_size();
        let mut batch = || (0..size).map(|_| key(rng.next(keys))).collect();
        match op {
            Workload::Set => Call::Set(key(rng.next(keys))),
            Workload::VersionedSet => Call::VersionedSet(key(rng.next(keys))),
            Workload::GetMany => Call::GetMany(batch()),
            Workload::SetMany => Call::SetMany(batch()),
            Workload::DelMany => Call::DelMany(batch()),
            _ => Call::Get(key(rng.next(keys))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_get_reads_nine_in_ten_within_the_hot_keys() {
        let mut rng = Rng(42);
        let (mut gets, mut sets) = (0, 0);
        for _ in 0..10_000 {
            let k = match Call::next(Workload::HotGet, &mut rng, 20_000) {
                Call::Get(k) => {
                    gets += 1;
                    k
                }
                Call::Set(k) => {
                    sets += 1;
                    k
                }
                _ => panic!("hot-get makes single-key calls"),
            };
            let index: usize = k.trim_start_matches("load:").parse().unwrap_or(usize::MAX);
            assert!(index < HOT_KEYS, "{k} is outside the hot keys");
        }
        assert!((8_700..9_300).contains(&gets), "{gets} gets, {sets} sets");
    }

    #[test]
    fn set_many_writes_a_batch_of_keys() {
        let mut rng = Rng(7);
        match Call::next(Workload::SetMany, &mut rng, 500) {
            Call::SetMany(keys) => assert_eq!(keys.len(), BATCH),
            _ => panic!("set-many makes one batch call"),
        }
        assert_eq!(Workload::SetMany.keys_per_call(), 100);
        assert_eq!(Workload::GetMany.keys_per_call(), 100);
        assert_eq!(Workload::HotGet.keys_per_call(), 1);
    }
}
