//! Moving slots: one slot's move (`SETSLOT IMPORTING`/`MIGRATING`, keys in pipelined `MIGRATE`
//! batches, `SETSLOT NODE` everywhere) and the scheduler that runs several at once.
//!
//! Keys are listed and sized in one round trip: a small script on the source runs `CLUSTER
//! GETKEYSINSLOT` and `MEMORY USAGE` of each key listed (`MEMORY USAGE` samples 5 elements of an
//! aggregate, which is an estimate, and is cheap for strings, where it is exact). One listing covers
//! `keys_per_batch × batches_in_flight` keys; they are cut into batches by keys and bytes, and every
//! batch's `MIGRATE` is sent at once on the source's admin connection, followed by the next listing,
//! so the server always has the next command queued. The server runs one connection's commands in
//! order, so the listing sees what the `MIGRATE`s left.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{Admin, MigrateReply, Value, printable_key};
use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;

use super::ProgressFn;
use super::view::Ops;
use crate::{BusyKey, BusyKeyPolicy, Error, MoveReport, Progress, RebalanceConfig, SlotReport};

/// Lists up to `ARGV[2]` keys of slot `ARGV[1]` with their `MEMORY USAGE` (0 for a key gone since).
const LIST_KEYS: &str = "local keys = redis.call('CLUSTER', 'GETKEYSINSLOT', tonumber(ARGV[1]), tonumber(ARGV[2])) \
local out = {} \
for _, key in ipairs(keys) do \
  out[#out + 1] = key \
  out[#out + 1] = redis.call('MEMORY', 'USAGE', key) or 0 \
end \
return out";

/// Deletes `KEYS[1]` only if its `DUMP` is still `ARGV[1]`: the source's copy of a key the target
/// already holds goes only if no write changed it since it was looked at.
const DEL_IF_UNCHANGED: &str = "if redis.call('DUMP', KEYS[1]) == ARGV[1] then \
  return redis.call('DEL', KEYS[1]) \
end \
return 0";

/// How often a round of a slot (listing and its batches) is tried again after a transient failure
/// (a timeout, a broken connection, `IOERR` between the nodes) before the move gives up.
const ROUND_ATTEMPTS: u32 = 3;

/// The pause before attempt `failures + 1` of a listing or MIGRATE round: the workspace's one backoff
/// (100 ms, doubling, at most 1 s) with jitter, so that two movers that met one failover do not retry
/// in step.
fn round_pause(failures: u32) -> Duration {
    cluster_config::Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(1)).jittered(failures)
}

/// How often a key the target already holds is looked at again when its source copy keeps changing.
const BUSY_ATTEMPTS: u32 = 5;

/// One slot to move.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) slot: u16,
    pub(crate) from: String,
    pub(crate) from_id: String,
    pub(crate) to: String,
    pub(crate) to_id: String,
    /// An open migration of an earlier run: the nodes may already be past some steps.
    pub(crate) resumed: bool,
}

#[derive(Default)]
struct Tally {
    slots_done: usize,
    keys: u64,
    bytes: u64,
}

/// Runs slot moves and reports progress.
pub(crate) struct Mover<'a> {
    pub(crate) ops: Ops<'a>,
    pub(crate) admin: &'a Admin,
    pub(crate) config: &'a RebalanceConfig,
    pub(crate) progress: Option<&'a ProgressFn>,
    /// Every primary, told the new owner of each slot moved.
    pub(crate) primaries: Vec<String>,
    total: usize,
    started: Instant,
    tally: Mutex<Tally>,
}

impl<'a> Mover<'a> {
    pub(crate) fn new(
        ops: Ops<'a>,
        admin: &'a Admin,
        config: &'a RebalanceConfig,
        progress: Option<&'a ProgressFn>,
        primaries: Vec<String>,
    ) -> Mover<'a> {
        Mover {
            ops,
            admin,
            config,
            progress,
            primaries,
            total: 0,
            started: Instant::now(),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Moves every job's slot, `concurrent_slots` at a time and never two from one source at once.
    /// After a failure no new move starts; the ones running finish, and the first error is returned
    /// (the failed slot stays migrating, for [`Rebalancer::resume`](crate::Rebalancer::resume)).
    pub(crate) async fn run(mut self, jobs: Vec<Job>) -> Result<MoveReport, Error> {
        self.total = jobs.len();
        self.started = Instant::now();
        let this = &self;
        let mut pending: VecDeque<Job> = jobs.into();
        let mut sources: HashSet<String> = HashSet::new();
        let mut running = FuturesUnordered::new();
        let mut report = MoveReport::default();
        let mut failure: Option<Error> = None;
        loop {
            if failure.is_none() {
                let mut i = 0;
                while running.len() < this.config.concurrent_slots && i < pending.len() {
                    if sources.contains(&pending[i].from) {
                        i += 1;
                        continue;
                    }
                    let Some(job) = pending.remove(i) else { break };
                    sources.insert(job.from.clone());
                    running.push(async move {
                        let result = this.move_slot(&job).await;
                        (job, result)
                    });
                }
            }
            let Some((job, result)) = running.next().await else {
                break;
            };
            sources.remove(&job.from);
            match result {
                Ok((slot, busy)) => {
                    report.keys += slot.keys;
                    report.bytes += slot.bytes;
                    report.slots.push(slot);
                    report.busy_keys.extend(busy);
                    let done = {
                        let mut tally = this.tally();
                        tally.slots_done += 1;
                        tally.slots_done
                    };
                    tracing::debug!(slot = job.slot, from = %job.from, to = %job.to, done, "slot moved");
                    this.report(Some(job.slot));
                }
                Err(error) => {
                    tracing::warn!(slot = job.slot, from = %job.from, to = %job.to, %error, "slot move failed");
                    failure.get_or_insert(error);
                }
            }
        }
        report.took = self.started.elapsed();
        match failure {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // Plain counters: a poisoned lock still holds usable numbers.
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self, current_slot: Option<u16>) {
        let Some(progress) = self.progress else { return };
        let snapshot = {
            let tally = self.tally();
            Progress {
                slots_done: tally.slots_done,
                slots_total: self.total,
                keys_moved: tally.keys,
                bytes_moved: tally.bytes,
                current_slot,
                elapsed: self.started.elapsed(),
            }
        };
        progress(&snapshot);
    }

    /// One slot, from `SETSLOT IMPORTING` to the last `SETSLOT NODE`.
    async fn move_slot(&self, job: &Job) -> Result<(SlotReport, Vec<BusyKey>), Error> {
        let started = Instant::now();
        let slot = job.slot.to_string();
        let ops = self.ops;
        // The target first: once the source is migrating it sends clients to the target with ASK, and
        // the target must accept them.
        match ops
            .words::<()>(&job.to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &job.from_id])
            .await
        {
            Ok(()) => {}
            // A resumed move whose target already took the slot over: its keys still move below.
            Err(e) if job.resumed && server_says(&e, "already the owner") => {}
            Err(e) => return Err(e),
        }
        // The first listing is queued right behind MIGRATING on the source's connection: one round
        // trip for both, and the server runs them in that order.
        let per_listing = self.config.keys_per_batch * self.config.batches_in_flight;
        let migrating_words = [
            "CLUSTER",
            "SETSLOT",
            slot.as_str(),
            "MIGRATING",
            job.to_id.as_str(),
        ];
        let (migrating, first) = futures::join!(
            ops.words::<()>(&job.from, &migrating_words),
            self.list(job, per_listing)
        );
        match migrating {
            Ok(()) => {}
            Err(e) if job.resumed && server_says(&e, "not the owner") => {}
            Err(e) => return Err(e),
        }
        let mut first = Some(first);
        let mut keys = 0u64;
        let mut bytes = 0u64;
        let mut busy = Vec::new();
        // The source refuses `SETSLOT NODE` while it still holds keys of the slot; a key it got since
        // the listing ended (it should get none while migrating) sends the move back to its keys.
        let mut attempts = 0;
        loop {
            let (k, b, mut found) = self.drain(job, first.take()).await?;
            keys += k;
            bytes += b;
            busy.append(&mut found);
            match self.assign(job).await {
                Ok(()) => break,
                Err(e) if attempts < ROUND_ATTEMPTS && server_says(&e, "still hold keys") => attempts += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((
            SlotReport {
                slot: job.slot,
                from: job.from.clone(),
                to: job.to.clone(),
                keys,
                bytes,
                took: started.elapsed(),
                resumed: job.resumed,
            },
            busy,
        ))
    }

    /// `SETSLOT NODE` on the target first (so the slot always has an owner that holds its keys), then
    /// on the source and every other primary.
    async fn assign(&self, job: &Job) -> Result<(), Error> {
        let slot = job.slot.to_string();
        let words = ["CLUSTER", "SETSLOT", slot.as_str(), "NODE", job.to_id.as_str()];
        self.ops.words::<()>(&job.to, &words).await?;
        // Then the source and every other primary at once. The source's answer decides (it refuses
        // while it still holds keys of the slot); another primary that does not answer learns the
        // owner by gossip, so its failure is only logged.
        let others: Vec<&String> = self
            .primaries
            .iter()
            .filter(|p| **p != job.to && **p != job.from)
            .collect();
        let (source, results) = futures::join!(
            self.ops.words::<()>(&job.from, &words),
            join_all(others.iter().map(|p| self.ops.words::<()>(p, &words)))
        );
        for (primary, result) in others.into_iter().zip(results) {
            if let Err(error) = result {
                tracing::warn!(slot = job.slot, %primary, %error, "SETSLOT NODE failed; gossip will tell it");
            }
        }
        match source {
            // The source's last slot: Redis may turn a primary that lost its last slot into a replica
            // of the node that took it (`cluster-allow-replica-migration`, on by default) as soon as
            // gossip tells it, before this reaches it. A replica serves no slot, so the move is done.
            Err(Error::Client(cluster_client::Error::Server { message, .. }))
                if message.contains("SETSLOT only with masters") =>
            {
                tracing::debug!(slot = job.slot, source = %job.from, "the emptied source is a replica now");
                Ok(())
            }
            other => other,
        }
    }

    /// Moves every key of the slot: rounds of one listing (the first one given, if it was taken
    /// already) and its pipelined batches until the listing is empty. Returns keys and bytes sent, and the keys the target already held.
    async fn drain(
        &self,
        job: &Job,
        listed: Option<Result<Vec<(Bytes, u64)>, Error>>,
    ) -> Result<(u64, u64, Vec<BusyKey>), Error> {
        let per_listing = self.config.keys_per_batch * self.config.batches_in_flight;
        let mut keys = 0u64;
        let mut bytes = 0u64;
        let mut busy = Vec::new();
        let mut failures = 0;
        let mut listed = match listed {
            Some(listed) => listed,
            None => self.list(job, per_listing).await,
        };
        loop {
            let entries = match listed {
                Ok(entries) => entries,
                Err(e) if failures + 1 < ROUND_ATTEMPTS && is_transient(&e) => {
                    failures += 1;
                    tokio::time::sleep(round_pause(failures)).await;
                    listed = self.list(job, per_listing).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if entries.is_empty() {
                return Ok((keys, bytes, busy));
            }
            let batches = cut(entries, self.config.keys_per_batch, self.config.bytes_per_batch);
            let migrates = join_all(batches.iter().map(|batch| {
                let keys: Vec<Bytes> = batch.iter().map(|(k, _)| k.clone()).collect();
                async move {
                    self.admin
                        .migrate(&job.from, &job.to, &keys, self.config.migrate_timeout)
                        .await
                }
            }));
            // The next listing is queued behind the batches on the same connection.
            let (replies, next) = futures::join!(migrates, self.list(job, per_listing));
            let mut round_failed = None;
            let (mut round_keys, mut round_bytes) = (0u64, 0u64);
            for (batch, reply) in batches.iter().zip(replies) {
                match reply {
                    Ok(MigrateReply::Moved) => {
                        round_keys += batch.len() as u64;
                        round_bytes += batch.iter().map(|(_, size)| size).sum::<u64>();
                    }
                    Ok(MigrateReply::BusyKey) => {
                        let (k, b, mut found) = self.settle_busy(job, batch).await?;
                        round_keys += k;
                        round_bytes += b;
                        busy.append(&mut found);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        round_failed.get_or_insert(Error::from(e));
                    }
                }
            }
            keys += round_keys;
            bytes += round_bytes;
            self.add_to_tally(round_keys, round_bytes);
            self.report(Some(job.slot));
            listed = match round_failed {
                None => {
                    failures = 0;
                    next
                }
                Some(e) if failures + 1 < ROUND_ATTEMPTS && is_transient(&e) => {
                    failures += 1;
                    tracing::debug!(slot = job.slot, %e, "MIGRATE round failed, trying again");
                    tokio::time::sleep(round_pause(failures)).await;
                    self.list(job, per_listing).await
                }
                Some(e) => return Err(e),
            };
        }
    }

    fn add_to_tally(&self, keys: u64, bytes: u64) {
        let mut tally = self.tally();
        tally.keys += keys;
        tally.bytes += bytes;
    }

    /// Up to `count` keys of the slot still on the source, with their sizes.
    async fn list(&self, job: &Job, count: usize) -> Result<Vec<(Bytes, u64)>, Error> {
        let args = vec![
            Value::from("EVAL"),
            Value::from(LIST_KEYS),
            Value::from(0i64),
            Value::from(job.slot),
            Value::from(count.to_string()),
        ];
        let reply: Value = self.ops.args(&job.from, args).await?;
        let bad = |detail: &str| Error::Reply {
            node: job.from.clone(),
            command: "CLUSTER GETKEYSINSLOT".into(),
            detail: detail.into(),
        };
        let Value::Array(items) = reply else {
            return Err(bad("not an array"));
        };
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(size)) = (items.next(), items.next()) {
            let key = key.into_bytes().ok_or_else(|| bad("a key is not a string"))?;
            let size = size.as_u64().unwrap_or(0);
            entries.push((key, size));
        }
        Ok(entries)
    }

    /// A batch answered `BUSYKEY`: every key of it that moved is gone from the source, the others are
    /// tried one by one, and a key the target holds is settled by the policy. Returns keys and bytes
    /// moved, and the keys whose target copy was kept.
    async fn settle_busy(
        &self,
        job: &Job,
        batch: &[(Bytes, u64)],
    ) -> Result<(u64, u64, Vec<BusyKey>), Error> {
        let mut keys = 0;
        let mut bytes = 0;
        let mut kept = Vec::new();
        for (key, size) in batch {
            let mut attempt = 0;
            loop {
                let reply = self
                    .admin
                    .migrate(
                        &job.from,
                        &job.to,
                        std::slice::from_ref(key),
                        self.config.migrate_timeout,
                    )
                    .await?;
                match reply {
                    MigrateReply::Moved => {
                        keys += 1;
                        bytes += size;
                        break;
                    }
                    MigrateReply::BusyKey => {}
                    // Gone from the source: the batch's `MIGRATE` moved it (or it was deleted since).
                    _ => {
                        keys += 1;
                        bytes += size;
                        break;
                    }
                }
                let busy_error = || Error::BusyKey {
                    slot: job.slot,
                    key: printable_key(key),
                    source_node: job.from.clone(),
                    target: job.to.clone(),
                };
                if self.config.busy_key_policy == BusyKeyPolicy::Abort || attempt >= BUSY_ATTEMPTS {
                    return Err(busy_error());
                }
                attempt += 1;
                // The target's copy was written through ASK after the source's was gone or expired:
                // it is the newer one. The source's copy goes, if no write changed it meanwhile.
                let dump: Value = match self
                    .ops
                    .args(&job.from, vec![Value::from("DUMP"), Value::from(key.clone())])
                    .await
                {
                    Ok(dump) => dump,
                    // `ASK`: the source no longer has the key.
                    Err(e) if server_says(&e, "ASK") => break,
                    Err(e) => return Err(e),
                };
                let Some(dump) = dump.into_bytes() else {
                    break;
                };
                let deleted: i64 = match self
                    .ops
                    .args(
                        &job.from,
                        vec![
                            Value::from("EVAL"),
                            Value::from(DEL_IF_UNCHANGED),
                            Value::from(1i64),
                            Value::from(key.clone()),
                            Value::from(dump),
                        ],
                    )
                    .await
                {
                    Ok(deleted) => deleted,
                    Err(e) if server_says(&e, "ASK") => break,
                    Err(e) => return Err(e),
                };
                if deleted == 1 {
                    tracing::warn!(
                        slot = job.slot,
                        key = %printable_key(key),
                        source = %job.from,
                        target = %job.to,
                        "the target already held this key (written through ASK): kept the target's copy"
                    );
                    kept.push(BusyKey {
                        slot: job.slot,
                        key: key.clone(),
                        source: job.from.clone(),
                        target: job.to.clone(),
                    });
                    break;
                }
            }
        }
        Ok((keys, bytes, kept))
    }
}

/// Cuts listed keys into batches of at most `max_keys` keys and, unless one key alone is larger,
/// `max_bytes` bytes. No batch is empty.
pub(crate) fn cut(entries: Vec<(Bytes, u64)>, max_keys: usize, max_bytes: u64) -> Vec<Vec<(Bytes, u64)>> {
    let mut batches = Vec::new();
    let mut batch: Vec<(Bytes, u64)> = Vec::new();
    let mut batch_bytes = 0u64;
    for (key, size) in entries {
        if !batch.is_empty()
            && (batch.len() >= max_keys || batch_bytes.checked_add(size).is_none_or(|b| b > max_bytes))
        {
            batches.push(std::mem::take(&mut batch));
            batch_bytes = 0;
        }
        batch_bytes = batch_bytes.saturating_add(size);
        batch.push((key, size));
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Whether `error` is the server's error reply containing `text`.
pub(crate) fn server_says(error: &Error, text: &str) -> bool {
    matches!(error, Error::Client(cluster_client::Error::Server { message, .. }) if message.contains(text))
}

/// Whether trying again may help: a timeout, a broken connection, or an I/O error between the nodes.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Client(e) => e.is_transient() || server_says(error, "IOERR"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entries(sizes: &[u64]) -> Vec<(Bytes, u64)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (Bytes::from(format!("k{i}")), s))
            .collect()
    }

    #[test]
    fn batches_stop_at_keys_or_bytes_and_carry_a_huge_key_alone() {
        let sizes = |batches: Vec<Vec<(Bytes, u64)>>| -> Vec<Vec<u64>> {
            batches
                .into_iter()
                .map(|b| b.into_iter().map(|(_, s)| s).collect())
                .collect()
        };
        assert_eq!(
            sizes(cut(entries(&[1, 1, 1, 1, 1]), 2, 100)),
            vec![vec![1, 1], vec![1, 1], vec![1]]
        );
        assert_eq!(
            sizes(cut(entries(&[60, 60, 30]), 10, 100)),
            vec![vec![60], vec![60, 30]]
        );
        // A key above the byte bound goes alone rather than never.
        assert_eq!(
            sizes(cut(entries(&[10, 500, 10]), 10, 100)),
            vec![vec![10], vec![500], vec![10]]
        );
        assert!(cut(Vec::new(), 10, 100).is_empty());
        assert_eq!(cut(entries(&[u64::MAX, u64::MAX]), 10, u64::MAX).len(), 2);
    }

    proptest! {
        #[test]
        fn batches_keep_every_key_in_order_within_bounds(
            sizes in proptest::collection::vec(0u64..5_000, 0..300),
            max_keys in 1usize..50,
            max_bytes in 1024u64..20_000,
        ) {
            let all = entries(&sizes);
            let batches = cut(all.clone(), max_keys, max_bytes);
            let flat: Vec<(Bytes, u64)> = batches.iter().flatten().cloned().collect();
            prop_assert_eq!(flat, all);
            for batch in &batches {
                prop_assert!(!batch.is_empty() && batch.len() <= max_keys);
                let bytes: u64 = batch.iter().map(|(_, s)| s).sum();
                prop_assert!(batch.len() == 1 || bytes <= max_bytes);
            }
        }
    }
}
