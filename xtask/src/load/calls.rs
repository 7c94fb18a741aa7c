//! One call of a workload, chosen before the client is, so every client replays the same sequence.

use std::sync::Arc;

use fred::prelude::*;

use super::Workload;

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
}

impl Call {
    pub(super) fn next(workload: Workload, rng: &mut Rng, keys: usize) -> Call {
        let op = match workload {
            Workload::Mixed if rng.next(100) < 80 => Workload::Get,
            Workload::Mixed => Workload::Set,
            other => other,
        };
        match op {
            Workload::Set => Call::Set(key(rng.next(keys))),
            Workload::VersionedSet => Call::VersionedSet(key(rng.next(keys))),
            Workload::GetMany => Call::GetMany((0..100).map(|_| key(rng.next(keys))).collect()),
            _ => Call::Get(key(rng.next(keys))),
        }
    }
}
