//! The fault schedule of `chaos safety`: seeded, one fault at a time, each kind once per round in a
//! seeded order, with seeded pauses between them and seeded choices of victims.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_cluster::{FailoverKind, LocalCluster, Node, Role};

use super::history::FaultKind;
use super::stage::wait_for_role;

/// How long a paused primary stays stopped: past the 2 s node timeout, so its replica is promoted.
const PAUSE_MASTER: Duration = Duration::from_secs(5);
/// How long a paused replica stays stopped: writes with `WAIT 1` time out with 0 acknowledgements.
const PAUSE_REPLICA: Duration = Duration::from_secs(3);
/// Slots a migration moves.
const MIGRATED_SLOTS: usize = 100;
/// How long the cluster may take to promote a replica, and to be healthy again after a fault.
const PROMOTION: Duration = Duration::from_secs(20);
const HEALTHY: Duration = Duration::from_secs(40);

/// The next fault kinds in seeded order: every kind once per round.
pub(super) struct Plan {
    rng: fastrand::Rng,
    round: Vec<FaultKind>,
}

impl Plan {
    pub(super) fn new(seed: u64) -> Plan {
        Plan {
            rng: fastrand::Rng::with_seed(seed),
            round: Vec::new(),
        }
    }

    /// The next fault and the pause before it.
    pub(super) fn next(&mut self) -> (FaultKind, Duration) {
        if self.round.is_empty() {
            self.round = FaultKind::EVERY.to_vec();
            self.rng.shuffle(&mut self.round);
        }
        let kind = self.round.pop().unwrap_or(FaultKind::KillMaster);
        (kind, Duration::from_millis(self.rng.u64(500..1_500)))
    }

    /// A seeded index below `n` (`n` > 0).
    pub(super) fn pick(&mut self, n: usize) -> usize {
        self.rng.usize(0..n.max(1))
    }
}

/// The running primaries, by port (so that a seeded index picks the same node in every run).
async fn primaries(cluster: &LocalCluster) -> Result<Vec<&Node>> {
    let mut primaries = cluster.primaries().await.context("listing primaries")?;
    primaries.sort_by_key(|n| n.port());
    if primaries.is_empty() {
        bail!("no primary is running");
    }
    Ok(primaries)
}

async fn replica_of<'a>(cluster: &'a LocalCluster, primary: &Node) -> Result<&'a Node> {
    let mut replicas = cluster.replicas_of(primary).await.context("listing replicas")?;
    replicas.sort_by_key(|n| n.port());
    replicas
        .into_iter()
        .find(|n| n.is_running())
        .with_context(|| format!("{} has no running replica", primary.addr()))
}

/// Injects a cluster fault (every kind but the warm-up and the skewed clock, which the runner drives)
/// and returns once the cluster is healthy again, with a line saying what happened.
pub(super) async fn inject(kind: FaultKind, cluster: &LocalCluster, plan: &mut Plan) -> Result<String> {
    let started = Instant::now();
    let secs = |at: Instant| format!("{:.1} s", at.duration_since(started).as_secs_f64());
    match kind {
        FaultKind::KillMaster => {
            let primaries = primaries(cluster).await?;
            let victim = primaries[plan.pick(primaries.len())];
            victim.kill()?;
            let promoted = cluster.wait_for_promotion(victim, PROMOTION).await?;
            let promoted_at = Instant::now();
            victim.restart().await.context("restarting the killed primary")?;
            cluster.wait_until_healthy(HEALTHY).await?;
            Ok(format!(
                "killed {}, {} promoted after {}, restarted as a replica, healthy after {}",
                victim.addr(),
                promoted.addr(),
                secs(promoted_at),
                secs(Instant::now())
            ))
        }
        FaultKind::PauseMaster => {
            let primaries = primaries(cluster).await?;
            let victim = primaries[plan.pick(primaries.len())];
            victim.pause()?;
            let promoted = cluster.wait_for_promotion(victim, PROMOTION).await;
            let until = started + PAUSE_MASTER;
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            victim.resume()?;
            let promoted = promoted?;
            cluster.wait_until_healthy(HEALTHY).await?;
            Ok(format!(
                "stopped {} for {} s, {} promoted, healthy after {}",
                victim.addr(),
                PAUSE_MASTER.as_secs(),
                promoted.addr(),
                secs(Instant::now())
            ))
        }
        FaultKind::PauseReplica => {
            let primaries = primaries(cluster).await?;
            let primary = primaries[plan.pick(primaries.len())];
            let replica = replica_of(cluster, primary).await?;
            replica.pause()?;
            tokio::time::sleep(PAUSE_REPLICA).await;
            replica.resume()?;
            cluster.wait_until_healthy(HEALTHY).await?;
            Ok(format!(
                "stopped replica {} (of {}) for {} s, healthy after {}",
                replica.addr(),
                primary.addr(),
                PAUSE_REPLICA.as_secs(),
                secs(Instant::now())
            ))
        }
        FaultKind::ManualFailover => {
            let primaries = primaries(cluster).await?;
            let primary = primaries[plan.pick(primaries.len())];
            let replica = replica_of(cluster, primary).await?;
            replica.failover(FailoverKind::Graceful).await?;
            wait_for_role(replica, Role::Primary, PROMOTION).await?;
            cluster.wait_until_healthy(HEALTHY).await?;
            Ok(format!(
                "CLUSTER FAILOVER on {} (replica of {}), healthy after {}",
                replica.addr(),
                primary.addr(),
                secs(Instant::now())
            ))
        }
        FaultKind::MigrateSlots => {
            let primaries = primaries(cluster).await?;
            if primaries.len() < 2 {
                bail!("a migration needs two primaries");
            }
            let from = plan.pick(primaries.len());
            let to = (from + 1 + plan.pick(primaries.len() - 1)) % primaries.len();
            let moved = cluster
                .migrate_slots(MIGRATED_SLOTS, primaries[from], primaries[to])
                .await?;
            cluster.wait_until_healthy(HEALTHY).await?;
            Ok(format!(
                "moved {} slots from {} to {} in {}",
                moved.len(),
                primaries[from].addr(),
                primaries[to].addr(),
                secs(Instant::now())
            ))
        }
        FaultKind::WarmupRollback | FaultKind::SkewedClock => {
            bail!("{} is driven by the runner, not by local-cluster", kind.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_and_cover_every_kind_per_round() {
        let take = |seed| {
            let mut plan = Plan::new(seed);
            (0..14).map(|_| plan.next()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7), "the same seed gives the same schedule");
        assert_ne!(take(7), take(8), "another seed gives another schedule");
        for round in take(7).chunks(FaultKind::EVERY.len()) {
            let mut kinds: Vec<FaultKind> = round.iter().map(|(k, _)| *k).collect();
            kinds.sort();
            assert_eq!(kinds, FaultKind::EVERY.to_vec());
        }
        assert!(
            take(1)
                .iter()
                .all(|(_, gap)| (500..1_500).contains(&(gap.as_millis() as u64)))
        );
    }
}
