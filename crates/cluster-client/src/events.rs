use std::time::SystemTime;

use sharding::SlotRange;

/// Something this client noticed about the deployment. Subscribe with
/// [`ClusterClient::subscribe`](crate::ClusterClient::subscribe).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The set of shards, their primaries or their replicas changed.
    TopologyChanged {
        /// When the change was seen.
        at: SystemTime,
    },
    /// A node stopped answering (its connection dropped or a command to it failed on the connection).
    NodeDown {
        /// `host:port`.
        node: String,
        /// When it was seen.
        at: SystemTime,
    },
    /// A node answers again.
    NodeUp {
        /// `host:port`.
        node: String,
        /// When it was seen.
        at: SystemTime,
    },
    /// Slots moved from a primary to one of its replicas: a failover (automatic or manual).
    FailoverObserved {
        /// The primary that served the slots before.
        old_primary: String,
        /// The former replica that serves them now.
        new_primary: String,
        /// The slot ranges that moved.
        slots: Vec<SlotRange>,
        /// When it was seen.
        at: SystemTime,
    },
}
