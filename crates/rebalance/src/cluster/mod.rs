//! The Redis Cluster side: [`Rebalancer`] and the rooms it uses: `view` (the live topology from
//! `CLUSTER NODES`), `mover` (one slot's move and the scheduler of many), `membership` (adding and
//! removing primaries), `distribution` (the check afterwards).

mod distribution;
mod membership;
mod mover;
mod view;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use cluster_client::{Admin, ClusterClient};
use replies::MigrationDirection;

use self::mover::{Job, Mover};
use self::view::{Ops, View};
use crate::{DistributionCheck, Error, MoveReport, Plan, Progress, RebalanceConfig, Weights};

/// The progress callback: called after every batch and every slot, from the task running the move.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Adds and removes primaries of a Redis Cluster and moves slots between them, online, through a
/// [`ClusterClient`]'s credentials. See the crate documentation.
pub struct Rebalancer {
    client: ClusterClient,
    config: RebalanceConfig,
    admin: Admin,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Rebalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebalancer")
            .field("config", &self.config)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

impl Rebalancer {
    /// A rebalancer for the cluster `client` is connected to. Administrative commands go on
    /// connections of their own (cluster-client's [`Admin`]), with the client's credentials.
    pub fn new(client: ClusterClient, config: RebalanceConfig) -> Rebalancer {
        let admin = client.admin();
        Rebalancer {
            client,
            config,
            admin,
            progress: None,
        }
    }

    /// This rebalancer, calling `callback` with a [`Progress`] after every batch and every slot.
    pub fn on_progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Rebalancer {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// The settings.
    pub fn config(&self) -> &RebalanceConfig {
        &self.config
    }

    /// The client it works through.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// Plans a rebalance with `weights` over the live topology (read from the primaries' `CLUSTER
    /// NODES`), without moving anything. See [`Plan`] for the rules.
    pub async fn plan(&self, weights: &Weights) -> Result<Plan, Error> {
        let view = View::load(&self.client, self.ops()).await?;
        self.plan_over(&view, weights)
    }

    /// Carries out `plan`: first finishes open migrations of an earlier run, then moves every slot of
    /// the plan that its `from` primary still owns (a slot that moved meanwhile is skipped), and
    /// refreshes the client's topology.
    pub async fn execute(&self, plan: &Plan) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let mut report = self.resume().await?;
        let view = View::load(&self.client, self.ops()).await?;
        report.absorb(self.execute_over(&view, plan).await?);
        report.took = started.elapsed();
        Ok(report)
    }

    /// Finishes open migrations, then plans with `weights` over the live topology and carries the
    /// plan out.
    pub async fn rebalance(&self, weights: &Weights) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let mut report = self.resume().await?;
        let view = View::load(&self.client, self.ops()).await?;
        let plan = self.plan_over(&view, weights)?;
        tracing::info!(%plan, "rebalancing");
        report.absorb(self.execute_over(&view, &plan).await?);
        report.took = started.elapsed();
        Ok(report)
    }

    /// Adds `addr` as a primary with weight 1 (see [`Rebalancer::add_primary_with_weights`]).
    pub async fn add_primary(&self, addr: &str, replicas: &[&str]) -> Result<MoveReport, Error> {
        self.add_primary_with_weights(addr, replicas, &Weights::new())
            .await
    }

    /// Adds `addr` (an empty, cluster-enabled node in no other cluster) as a primary: finishes open
    /// migrations, checks every node given, `CLUSTER MEET` from a primary of the cluster, waits until
    /// every node knows it, makes each of `replicas` (empty nodes too) its replica and waits for their
    /// links, then moves slots onto it by a plan with `weights` (its own weight is 1 unless `weights`
    /// names it).
    ///
    /// Bad input is refused before anything changes: [`Error::AlreadyMember`],
    /// [`Error::NodeNotEmpty`], [`Error::NodeInOtherCluster`], [`Error::NotClusterEnabled`],
    /// [`Error::NodeUnreachable`], [`Error::InvalidWeight`].
    pub async fn add_primary_with_weights(
        &self,
        addr: &str,
        replicas: &[&str],
        weights: &Weights,
    ) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let mut report = self.resume().await?;
        let view = View::load(&self.client, self.ops()).await?;
        let mut named: Vec<&str> = std::iter::once(addr).chain(replicas.iter().copied()).collect();
        named.sort_unstable();
        if let Some(twice) = named.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::InvalidConfig {
                field: "replicas",
                value: twice[0].to_string(),
                allowed: "name each new node once, and not the new primary among its replicas".into(),
            });
        }
        for node in std::iter::once(&addr).chain(replicas) {
            membership::check_joinable(self.ops(), &view, node).await?;
        }
        for (node, weight) in weights.iter() {
            if node != addr && !view.own.contains_key(node) {
                return Err(Error::InvalidWeight {
                    node: node.to_string(),
                    weight,
                    reason: "it is neither a primary of the cluster nor the node being added".into(),
                });
            }
        }
        let timeout = self.config.join_timeout;
        let id = membership::join(self.ops(), &view, addr, timeout).await?;
        for replica in replicas {
            let view = View::load(&self.client, self.ops()).await?;
            membership::join(self.ops(), &view, replica, timeout).await?;
            membership::replicate(self.ops(), replica, addr, &id, timeout).await?;
        }
        // The client connects to the new primary before any slot (or ASK) sends calls there.
        membership::wait_client_connected(&self.client, addr, timeout).await;
        let view = View::load(&self.client, self.ops()).await?;
        let plan = self.plan_over(&view, weights)?;
        tracing::info!(%plan, node = addr, "moving slots to the new primary");
        report.absorb(self.execute_over(&view, &plan).await?);
        report.took = started.elapsed();
        Ok(report)
    }

    /// Removes the primary `addr`: finishes open migrations, drains its slots to the others by plan
    /// (its weight 0, the others' 1), re-attaches its replicas to the remaining primaries with the
    /// fewest replicas (they keep serving the cluster; to drop them too, remove them with redis-cli
    /// afterwards), waits until every node sees it without slots, runs `CLUSTER FORGET` on every
    /// other node at once (well within Redis's 60 s ban), resets the removed node (`CLUSTER RESET
    /// SOFT`) so that it forgets the cluster too, and refreshes the client's topology. Redis itself
    /// turns a primary that lost its last slot into a replica of the node that took it
    /// (`cluster-allow-replica-migration`); the reset makes it an empty primary of no cluster again
    /// (flushing that replica copy), ready to be added elsewhere.
    ///
    /// [`Error::UnknownPrimary`] if `addr` is not a primary, [`Error::LastPrimary`] if it is the only
    /// one; nothing changes then.
    pub async fn remove_primary(&self, addr: &str) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let mut report = self.resume().await?;
        let view = View::load(&self.client, self.ops()).await?;
        if !view.own.contains_key(addr) {
            return Err(Error::UnknownPrimary {
                node: addr.to_string(),
                primaries: view.primaries().join(","),
            });
        }
        if view.own.len() < 2 {
            return Err(Error::LastPrimary {
                node: addr.to_string(),
            });
        }
        let plan = self.plan_over(&view, &Weights::new().with(addr, 0.0))?;
        tracing::info!(%plan, node = addr, "draining the primary");
        report.absorb(self.execute_over(&view, &plan).await?);
        membership::retire(&self.client, self.ops(), addr, self.config.join_timeout).await?;
        self.refresh().await;
        report.took = started.elapsed();
        Ok(report)
    }

    /// Finds open migrations (`CLUSTER NODES` migration markers of every primary) left by a run that
    /// stopped midway (a crash, a dropped future) and finishes them: the remaining keys move and the
    /// slot ends owned by its target. A target that imports from a node that does not own the slot
    /// (and holds none of its keys) is set back to stable.
    pub async fn resume(&self) -> Result<MoveReport, Error> {
        let view = View::load(&self.client, self.ops()).await?;
        let jobs = self.open_jobs(&view).await?;
        if jobs.is_empty() {
            return Ok(MoveReport::default());
        }
        tracing::info!(slots = jobs.len(), "finishing open migrations of an earlier run");
        let report = self.mover(&view).run(jobs).await?;
        self.refresh().await;
        Ok(report)
    }

    /// Slots, keys (`DBSIZE`) and memory (`INFO memory` `used_memory`) per primary, each judged
    /// against `weights` and the configured
    /// [`distribution_thresholds`](RebalanceConfig::distribution_thresholds), so skew shows.
    pub async fn validate_distribution(&self, weights: &Weights) -> Result<DistributionCheck, Error> {
        let view = View::load(&self.client, self.ops()).await?;
        distribution::check(self.ops(), &view, weights, &self.config.distribution_thresholds).await
    }

    fn ops(&self) -> Ops<'_> {
        Ops {
            admin: &self.admin,
            timeout: self.config.admin_timeout,
        }
    }

    fn mover(&self, view: &View) -> Mover<'_> {
        Mover::new(
            self.ops(),
            &self.admin,
            &self.config,
            self.progress.as_ref(),
            view.primaries(),
        )
    }

    fn plan_over(&self, view: &View, weights: &Weights) -> Result<Plan, Error> {
        Plan::compute(
            &view.slot_table()?,
            &view.primaries(),
            weights,
            self.config.threshold_percent,
        )
    }

    /// Moves the slots of `plan` that their `from` still owns in `view`.
    async fn execute_over(&self, view: &View, plan: &Plan) -> Result<MoveReport, Error> {
        let mut jobs = Vec::with_capacity(plan.moved_slot_count());
        for planned in plan.moves() {
            if !view.claims(&planned.from, planned.slot) {
                tracing::info!(slot = planned.slot, from = %planned.from, "skipped: the slot moved since the plan");
                continue;
            }
            let (Some(from_id), Some(to_id)) = (view.id_of(&planned.from), view.id_of(&planned.to)) else {
                return Err(Error::UnknownPrimary {
                    node: planned.to.clone(),
                    primaries: view.primaries().join(","),
                });
            };
            jobs.push(Job {
                slot: planned.slot,
                from: planned.from.clone(),
                from_id: from_id.to_string(),
                to: planned.to.clone(),
                to_id: to_id.to_string(),
                resumed: false,
            });
        }
        // Interleave the sources, so that the scheduler finds a slot of a free source at once.
        jobs.sort_by_key(|job| job.slot);
        let mut by_source: BTreeMap<String, VecDeque<Job>> = BTreeMap::new();
        for job in jobs {
            by_source.entry(job.from.clone()).or_default().push_back(job);
        }
        let mut jobs = Vec::new();
        while by_source.values().any(|queue| !queue.is_empty()) {
            for queue in by_source.values_mut() {
                jobs.extend(queue.pop_front());
            }
        }
        if jobs.is_empty() {
            return Ok(MoveReport::default());
        }
        let report = self.mover(view).run(jobs).await;
        // Whatever happened, the client should see the slots that did move.
        self.refresh().await;
        report
    }

    /// The open migrations of `view` as moves to finish.
    async fn open_jobs(&self, view: &View) -> Result<Vec<Job>, Error> {
        let open = view.migrations();
        let job = |slot: u16, from: &str, to: &str| -> Result<Job, Error> {
            let missing =
                |node: &str| Error::Inconsistent(format!("slot {slot}: {node} is not a node of the cluster"));
            Ok(Job {
                slot,
                from: from.to_string(),
                from_id: view.id_of(from).ok_or_else(|| missing(from))?.to_string(),
                to: to.to_string(),
                to_id: view.id_of(to).ok_or_else(|| missing(to))?.to_string(),
                resumed: true,
            })
        };
        let peer = |node: &str, slot: u16, id: &str| -> Result<String, Error> {
            view.addr_of_id(id).map(str::to_string).ok_or_else(|| {
                Error::Inconsistent(format!(
                    "slot {slot} on {node} is marked as moving to or from node {id}, which the cluster does not \
                     know; run CLUSTER SETSLOT {slot} STABLE on {node} after checking its keys"
                ))
            })
        };
        let mut jobs: BTreeMap<u16, Job> = BTreeMap::new();
        for (node, marker) in open
            .iter()
            .filter(|(_, m)| m.direction == MigrationDirection::Migrating)
        {
            let to = peer(node, marker.slot, &marker.peer_id)?;
            jobs.insert(marker.slot, job(marker.slot, node, &to)?);
        }
        for (node, marker) in open
            .iter()
            .filter(|(_, m)| m.direction == MigrationDirection::Importing)
        {
            if jobs.contains_key(&marker.slot) {
                continue;
            }
            let from = peer(node, marker.slot, &marker.peer_id)?;
            if view.claims(&from, marker.slot) {
                // Stopped between IMPORTING on the target and MIGRATING on the source: go on.
                jobs.insert(marker.slot, job(marker.slot, &from, node)?);
                continue;
            }
            // Importing from a node that does not own the slot: stale. It can be dropped only if the
            // importer holds none of the slot's keys.
            let slot = marker.slot.to_string();
            let keys: i64 = self
                .ops()
                .words(node, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
                .await?;
            if keys != 0 {
                return Err(Error::Inconsistent(format!(
                    "slot {slot}: {node} imports it from {from}, which does not own it, and holds {keys} of its \
                     keys; decide which copy to keep, then run CLUSTER SETSLOT {slot} NODE <owner-id> on {node}"
                )));
            }
            self.ops()
                .words::<()>(node, &["CLUSTER", "SETSLOT", &slot, "STABLE"])
                .await?;
        }
        Ok(jobs.into_values().collect())
    }

    /// Refreshes the client's topology; a failure is only logged (the client refreshes on its own
    /// on the next MOVED, and the move itself is done).
    async fn refresh(&self) {
        if let Err(error) = self.client.refresh_topology().await {
            tracing::warn!(%error, "topology refresh after rebalancing failed");
        }
    }
}
