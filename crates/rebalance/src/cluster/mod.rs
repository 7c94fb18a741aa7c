//! The Redis Cluster side: [`Rebalancer`] and the rooms it uses: `view` (the live topology from
//! `CLUSTER NODES`), `mover` (one slot's move and the scheduler of many), `membership` (adding and
//! removing primaries), `distribution` (the check afterwards).

use std::sync::Arc;

use cluster_client::{Admin, ClusterClient};

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
        let _ = weights;
        unimplemented!()
    }

    /// Carries out `plan`: first finishes open migrations of an earlier run, then moves every slot of
    /// the plan that its `from` primary still owns (a slot that moved meanwhile is skipped).
    pub async fn execute(&self, plan: &Plan) -> Result<MoveReport, Error> {
        let _ = plan;
        unimplemented!()
    }

    /// Finishes open migrations, then plans with `weights` and carries the plan out.
    pub async fn rebalance(&self, weights: &Weights) -> Result<MoveReport, Error> {
        let _ = weights;
        unimplemented!()
    }

    /// Adds `addr` as a primary with weight 1 (see [`Rebalancer::add_primary_with_weights`]).
    pub async fn add_primary(&self, addr: &str, replicas: &[&str]) -> Result<MoveReport, Error> {
        self.add_primary_with_weights(addr, replicas, &Weights::new()).await
    }

    /// Adds `addr` (an empty, cluster-enabled node in no other cluster) as a primary: `CLUSTER MEET`
    /// from a node of the cluster, waits until every node knows it, makes each of `replicas` (empty
    /// nodes too) its replica and waits for their links, then moves slots onto it by a plan with
    /// `weights` (its own weight is 1 unless `weights` names it).
    pub async fn add_primary_with_weights(
        &self,
        addr: &str,
        replicas: &[&str],
        weights: &Weights,
    ) -> Result<MoveReport, Error> {
        let _ = (addr, replicas, weights);
        unimplemented!()
    }

    /// Removes the primary `addr`: drains its slots to the others by plan (its weight 0), re-attaches
    /// its replicas to the primary with the fewest replicas (they keep serving the cluster), runs
    /// `CLUSTER FORGET` on every other node at once (within Redis's 60 s ban), resets the removed
    /// node (`CLUSTER RESET SOFT`, it is empty) so that it forgets the cluster too, and refreshes the
    /// client's topology.
    pub async fn remove_primary(&self, addr: &str) -> Result<MoveReport, Error> {
        let _ = addr;
        unimplemented!()
    }

    /// Finds open migrations (`CLUSTER NODES` migration markers of every primary) left by a run that
    /// stopped midway (a crash, a dropped future) and finishes them: the remaining keys move and the
    /// slot ends owned by its target.
    pub async fn resume(&self) -> Result<MoveReport, Error> {
        unimplemented!()
    }

    /// Slots, keys (`DBSIZE`) and memory (`INFO memory` `used_memory`) per primary, each judged
    /// against `weights` and the configured
    /// [`distribution_thresholds`](RebalanceConfig::distribution_thresholds), so skew shows.
    pub async fn validate_distribution(&self, weights: &Weights) -> Result<DistributionCheck, Error> {
        let _ = weights;
        unimplemented!()
    }
}
