//! Replica reads: whether a call reads from a replica, lag sampling (`INFO replication` on every
//! primary), which replicas are fresh, and the recent writes that keep a key on its primary
//! (read-your-writes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cluster_config::{NodeAddr, ReplicaReadMode};
use fred::prelude::*;
use replies::Info;

use super::routing::raw;
use super::{ClusterClient, Cmd, Inner, ReadFrom};
use crate::node::NodeHandle;
use crate::topology::Deployment;

/// How often replica offsets are sampled once replica reads are used.
const LAG_SAMPLE_PERIOD: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(super) struct ReplicaLag {
    /// Per primary: recent `(time, master_repl_offset)` samples, oldest first.
    history: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl ClusterClient {
    pub(super) fn reads_from_replica(&self) -> bool {
        let wanted = match self.options.read_from {
            Some(ReadFrom::Replica) => true,
            Some(ReadFrom::Primary) => false,
            None => self.inner.config.replica_reads().mode == ReplicaReadMode::Prefer,
        };
        if wanted {
            self.inner.enable_replica_reads();
        }
        wanted
    }
}

impl Inner {
    pub(super) fn enable_replica_reads(self: &Arc<Self>) {
        let Ok(mut since) = self.replica_reads_since.lock() else {
            return;
        };
        // Only clusters and sentinel deployments have replicas to read from.
        let deployment = self.routing.load().topology.deployment();
        if since.is_some() || !matches!(deployment, Deployment::Cluster | Deployment::Sentinel) {
            return;
        }
        *since = Some(Instant::now());
        self.replica_reads_on.store(true, Ordering::Relaxed);
        let task = tokio::spawn(lag_loop(Arc::downgrade(self)));
        self.push_task(task);
    }

    pub(super) fn note_write(&self, key: &[u8]) {
        // Most clients never read from replicas: one relaxed load, no lock, on every write.
        if !self.replica_reads_on.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let window = self.config.replica_reads().max_lag * 2;
        if let Ok(mut writes) = self.recent_writes.lock() {
            writes.note(key_hash(key), now, window);
        }
    }

    /// A replica of the shard that may serve `key` now, if any.
    pub(super) fn fresh_replica(
        &self,
        replicas: &[Arc<NodeHandle>],
        key: &[u8],
        slot: u16,
    ) -> Option<Arc<NodeHandle>> {
        if replicas.is_empty() {
            return None;
        }
        let window = self.config.replica_reads().max_lag * 2;
        let since = (*self.replica_reads_since.lock().ok()?)?;
        // Writes made before replica reads were turned on were not tracked: wait out the window.
        if since.elapsed() < window {
            return None;
        }
        // A lock poisoned by a panic elsewhere tells nothing about this key: the primary serves it.
        let recent = self.recent_writes.lock().map_or(true, |writes| {
            writes.is_recent(key_hash(key), Instant::now(), window)
        });
        if recent {
            return None;
        }
        let fresh = self.fresh_replicas.load();
        let candidates: Vec<&Arc<NodeHandle>> = replicas
            .iter()
            .filter(|r| r.readonly().client.is_connected() && fresh.contains(&r.addr))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[slot as usize % candidates.len()].clone())
    }

    /// Samples `INFO replication` on every primary (read by [`replies::Info`]) and marks which replicas
    /// are within the lag bound.
    async fn sample_lag(&self) {
        let routing = self.routing.load_full();
        let max_lag = self.config.replica_reads().max_lag;
        let now = Instant::now();
        let mut fresh = HashSet::new();
        for (shard, primary) in routing.topology.shards().iter().zip(&routing.primaries) {
            let Ok(info) = raw::<String>(
                primary,
                Cmd::custom("INFO", vec!["replication".into()]),
                Duration::from_millis(500),
            )
            .await
            else {
                continue;
            };
            let info = Info::parse(&info);
            let offset = info.master_repl_offset.unwrap_or(0);
            // The primary's offset as of `max_lag` ago: a replica at or past it is at most `max_lag` behind.
            let threshold = {
                let Ok(mut lag) = self.lag.lock() else { return };
                // Primaries that left the topology (failed over, removed) are forgotten.
                lag.history
                    .retain(|primary, _| routing.topology.shards().iter().any(|s| s.primary == *primary));
                let history = lag.history.entry(shard.primary.clone()).or_default();
                lag_threshold(history, now, offset, max_lag)
            };
            for replica in info
                .replicas
                .iter()
                .filter(|r| r.is_online() && r.offset >= threshold)
            {
                // A primary that does not know a replica's ip prints it empty: the replica is reached on
                // the primary's host.
                let addr = match (replica.addr(), replica.port) {
                    (Some(addr), _) => addr,
                    (None, Some(port)) => NodeAddr::new(primary.host(), port),
                    (None, None) => continue,
                };
                fresh.insert(addr.to_string());
            }
        }
        self.fresh_replicas.store(Arc::new(fresh));
    }
}

/// Samples of a primary's offset kept at most: with one every 200 ms, 64 cover 12.8 s. A larger
/// `max_lag` (up to 49 days are accepted) would otherwise keep one sample per 200 ms of it.
const LAG_HISTORY_MAX: usize = 64;

/// Adds `(now, offset)` to a primary's history and returns its offset as of `max_lag` ago: a replica at
/// or past it is at most `max_lag` behind. Without a sample that old, the oldest kept one stands in,
/// which is newer, so the bound only gets stricter (fewer replicas count as fresh), never looser.
fn lag_threshold(
    history: &mut VecDeque<(Instant, u64)>,
    now: Instant,
    offset: u64,
    max_lag: Duration,
) -> u64 {
    history.push_back((now, offset));
    while history.len() > LAG_HISTORY_MAX
        || (history.len() > 2
            && history
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= max_lag))
    {
        history.pop_front();
    }
    history
        .iter()
        .rev()
        .find(|(t, _)| now.saturating_duration_since(*t) >= max_lag)
        .or(history.front())
        .map_or(offset, |(_, o)| *o)
}

async fn lag_loop(inner: Weak<Inner>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::Relaxed) {
                return;
            }
            inner.sample_lag().await;
        }
        tokio::time::sleep(LAG_SAMPLE_PERIOD).await;
    }
}

fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_history_is_bounded_and_errs_on_the_strict_side() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        let max_lag = Duration::from_millis(u64::from(u32::MAX));
        let mut threshold = 0;
        for i in 0..10_000u64 {
            threshold = lag_threshold(
                &mut history,
                start + Duration::from_millis(200 * i),
                i * 10,
                max_lag,
            );
            assert!(history.len() <= LAG_HISTORY_MAX);
        }
        // No sample is 49 days old: the oldest kept one stands in, newer than the true bound.
        assert_eq!(threshold, (10_000 - LAG_HISTORY_MAX as u64) * 10);
        // With a 1 s bound the sample of 1 s ago is the threshold.
        let mut history = VecDeque::new();
        for i in 0..20u64 {
            threshold = lag_threshold(
                &mut history,
                start + Duration::from_millis(200 * i),
                i * 10,
                Duration::from_secs(1),
            );
        }
        assert_eq!(threshold, 140);
    }
}
