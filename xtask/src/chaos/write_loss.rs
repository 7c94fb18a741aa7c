//! Acknowledged writes a kill -9 loses: writers put distinct keys on the victim's shard right up to the
//! kill — versioned writes without `WAIT`, versioned writes with `WAIT 1`, and plain `SET`s through
//! fred's and through redis-rs's cluster clients — and note which the server acknowledged. After the promotion, the keys the
//! new primary lacks are counted, and the journal of the versioned writes without `WAIT` repairs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cluster_client::{Bytes, ClusterClient, Topology};
use consistency::{ConsistencyConfig, Failover, Versioned, WriteOptions, WriteOutcome};
use fred::prelude::{Client, KeysInterface};
use redis::AsyncCommands;
use redis::cluster_async::ClusterConnection;
use tokio::task::JoinHandle;

/// Writer tasks per kind.
const WRITERS: usize = 2;
/// Pause between one writer's writes: 500 writes/s per task, 1,000 per kind.
const WRITE_PACE: Duration = Duration::from_millis(2);
/// How long a write with `WAIT` waits for its replica.
const WAIT_TIMEOUT: Duration = Duration::from_millis(500);

/// The running writers.
pub(super) struct LossWriters {
    stop: Arc<AtomicBool>,
    nowait: Vec<JoinHandle<Vec<Bytes>>>,
    wait: Vec<JoinHandle<(Vec<Bytes>, u64)>>,
    fred: Vec<JoinHandle<Vec<Bytes>>>,
    redis_rs: Vec<JoinHandle<Vec<Bytes>>>,
    nowait_store: Versioned,
}

/// The keys whose writes were acknowledged before the kill.
pub(super) struct Acked {
    nowait: Vec<Bytes>,
    /// Acknowledged by the primary and, through `WAIT`, by at least one replica.
    wait: Vec<Bytes>,
    /// Acknowledged by the primary, but `WAIT` saw no replica confirm them in time.
    wait_unconfirmed: u64,
    fred: Vec<Bytes>,
    redis_rs: Vec<Bytes>,
    nowait_store: Versioned,
}

/// What the failover lost and what the journal got back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Loss {
    pub(super) nowait_acked: usize,
    pub(super) nowait_lost: usize,
    /// Journaled writes the check after the failover read on the new primary.
    pub(super) journal_checked: u64,
    /// Lost writes the journal check found (missing or older on the new primary).
    pub(super) journal_found: usize,
    pub(super) repaired: u64,
    /// Acknowledged writes without `WAIT` still missing after the repair.
    pub(super) remaining: usize,
    pub(super) wait_acked: usize,
    pub(super) wait_unconfirmed: u64,
    pub(super) wait_lost: usize,
    pub(super) fred_acked: usize,
    pub(super) fred_lost: usize,
    pub(super) redis_rs_acked: usize,
    pub(super) redis_rs_lost: usize,
    /// Reads that failed while counting (each counts as neither present nor lost).
    pub(super) read_errors: usize,
}

/// The next key, from `n` on, that the shard of `victim` serves.
fn victim_key(topology: &Topology, victim: &str, prefix: &str, n: &mut u64) -> Bytes {
    loop {
        let key = format!("chaos:loss:{prefix}:{n}");
        *n += 1;
        if topology
            .shard_for_key(key.as_bytes())
            .is_some_and(|s| s.primary == victim)
        {
            return Bytes::from(key);
        }
    }
}

impl LossWriters {
    /// Starts the writers against the shard whose primary is `victim`.
    pub(super) fn start(
        raw: &ClusterClient,
        fred: &Client,
        redis_rs: &ClusterConnection,
        victim: &str,
    ) -> Result<LossWriters> {
        let topology = raw.topology();
        if !topology.shards().iter().any(|s| s.primary == victim) {
            bail!("{victim} serves no slots");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let nowait_store = Versioned::new(raw.clone(), ConsistencyConfig::default())?;
        let wait_store = Versioned::new(raw.clone(), ConsistencyConfig::default())?;
        let paced = || {
            let mut tick = tokio::time::interval(WRITE_PACE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        let nowait = (0..WRITERS)
            .map(|task| {
                let (store, stop, topology, victim) = (
                    nowait_store.clone(),
                    stop.clone(),
                    topology.clone(),
                    victim.to_string(),
                );
                let mut tick = paced();
                tokio::spawn(async move {
                    let (mut acked, mut n) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let key = victim_key(&topology, &victim, &format!("nowait{task}"), &mut n);
                        if let Ok(WriteOutcome::Written { .. }) =
                            store.set(&key, b"v", None, WriteOptions::default()).await
                        {
                            acked.push(key);
                        }
                    }
                    acked
                })
            })
            .collect();
        let wait = (0..WRITERS)
            .map(|task| {
                let (store, stop, topology, victim) = (
                    wait_store.clone(),
                    stop.clone(),
                    topology.clone(),
                    victim.to_string(),
                );
                let mut tick = paced();
                tokio::spawn(async move {
                    let (mut acked, mut unconfirmed, mut n) = (Vec::new(), 0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let key = victim_key(&topology, &victim, &format!("wait{task}"), &mut n);
                        let options = WriteOptions::wait(1, WAIT_TIMEOUT);
                        match store.set(&key, b"v", None, options).await {
                            Ok(WriteOutcome::Written {
                                replicas_acked: Some(replicas),
                                ..
                            }) if replicas >= 1 => acked.push(key),
                            Ok(WriteOutcome::Written { .. }) => unconfirmed += 1,
                            _ => {}
                        }
                    }
                    (acked, unconfirmed)
                })
            })
            .collect();
        let fred = (0..WRITERS)
            .map(|task| {
                let (client, stop, topology, victim) =
                    (fred.clone(), stop.clone(), topology.clone(), victim.to_string());
                let mut tick = paced();
                tokio::spawn(async move {
                    let (mut acked, mut n) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let key = victim_key(&topology, &victim, &format!("fred{task}"), &mut n);
                        let written = client.set::<(), _, _>(key.as_ref(), "v", None, None, false).await;
                        if written.is_ok() {
                            acked.push(key);
                        }
                    }
                    acked
                })
            })
            .collect();
        let redis_rs = (0..WRITERS)
            .map(|task| {
                let (mut connection, stop, topology, victim) = (
                    redis_rs.clone(),
                    stop.clone(),
                    topology.clone(),
                    victim.to_string(),
                );
                let mut tick = paced();
                tokio::spawn(async move {
                    let (mut acked, mut n) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let key = victim_key(&topology, &victim, &format!("redis-rs{task}"), &mut n);
                        let written = connection.set::<_, _, ()>(key.as_ref(), "v").await;
                        if written.is_ok() {
                            acked.push(key);
                        }
                    }
                    acked
                })
            })
            .collect();
        Ok(LossWriters {
            stop,
            nowait,
            wait,
            fred,
            redis_rs,
            nowait_store,
        })
    }

    /// Tells the writers to start no new write. Calls already sent still finish, so a write the server
    /// acknowledges just before the kill counts.
    pub(super) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the writers (after [`LossWriters::halt`]) and returns what was acknowledged.
    pub(super) async fn join(self) -> Acked {
        self.halt();
        let mut acked = Acked {
            nowait: Vec::new(),
            wait: Vec::new(),
            wait_unconfirmed: 0,
            fred: Vec::new(),
            redis_rs: Vec::new(),
            nowait_store: self.nowait_store,
        };
        for task in self.nowait {
            acked.nowait.extend(task.await.unwrap_or_default());
        }
        for task in self.wait {
            let (keys, unconfirmed) = task.await.unwrap_or_default();
            acked.wait.extend(keys);
            acked.wait_unconfirmed += unconfirmed;
        }
        for task in self.fred {
            acked.fred.extend(task.await.unwrap_or_default());
        }
        for task in self.redis_rs {
            acked.redis_rs.extend(task.await.unwrap_or_default());
        }
        acked
    }
}

/// Counts `keys` that read as absent through `raw`; errors separately.
async fn count_missing(raw: &ClusterClient, keys: &[Bytes]) -> (usize, usize) {
    let (mut missing, mut errors) = (0, 0);
    for chunk in keys.chunks(500) {
        for read in raw.get_many(chunk).await {
            match read {
                Ok(Some(_)) => {}
                Ok(None) => missing += 1,
                Err(_) => errors += 1,
            }
        }
    }
    (missing, errors)
}

/// After the promotion: which acknowledged writes the new primary lacks, and what the journal repairs.
pub(super) async fn measure(raw: &ClusterClient, acked: Acked, failover: &Failover) -> Result<Loss> {
    // Reads must reach the promoted replica: make sure the client routes the victim's slots to it.
    let slot = failover.slots.first().map_or(0, |range| range.start());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = raw.refresh_topology().await;
        let routed = raw.topology().shard_for_slot(slot).map(|s| s.primary.clone());
        if routed.as_deref() == Some(failover.new_primary.as_str()) {
            break;
        }
        if Instant::now() >= until {
            bail!(
                "the client still routes slot {slot} to {routed:?}, not to the promoted {}",
                failover.new_primary
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (nowait_lost, e1) = count_missing(raw, &acked.nowait).await;
    let (wait_lost, e2) = count_missing(raw, &acked.wait).await;
    let (fred_lost, e3) = count_missing(raw, &acked.fred).await;
    let (redis_rs_lost, e5) = count_missing(raw, &acked.redis_rs).await;
    let check = acked.nowait_store.repair_after_failover(failover).await?;
    let (remaining, e4) = count_missing(raw, &acked.nowait).await;
    Ok(Loss {
        nowait_acked: acked.nowait.len(),
        nowait_lost,
        journal_checked: check.checked,
        journal_found: check.lost(),
        repaired: check.repairs.repaired,
        remaining,
        wait_acked: acked.wait.len(),
        wait_unconfirmed: acked.wait_unconfirmed,
        wait_lost,
        fred_acked: acked.fred.len(),
        fred_lost,
        redis_rs_acked: acked.redis_rs.len(),
        redis_rs_lost,
        read_errors: e1 + e2 + e3 + e4 + e5 + check.errors.len(),
    })
}
