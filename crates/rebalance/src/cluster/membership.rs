//! Adding and removing nodes: checks of a node to add, `CLUSTER MEET` and the wait for gossip,
//! `CLUSTER REPLICATE`, and the retirement of a drained primary (`CLUSTER FORGET` everywhere).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use cluster_client::ClusterClient;
use cluster_config::NodeAddr;
use futures::future::join_all;
use replies::Role;

use super::mover::server_says;
use super::view::{Ops, View};
use crate::Error;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// A node's failure to answer a check, as [`Error::NodeUnreachable`].
fn unreachable(node: &str, error: Error) -> Error {
    match error {
        Error::Client(
            e @ (cluster_client::Error::Connection { .. }
            | cluster_client::Error::Timeout { .. }
            | cluster_client::Error::UnknownNode { .. }),
        ) => Error::NodeUnreachable {
            node: node.to_string(),
            detail: e.to_string(),
        },
        other => other,
    }
}

/// Checks that `node` can join: not a member already, cluster-enabled, knows no other node, holds
/// no key and no slot.
pub(crate) async fn check_joinable(ops: Ops<'_>, view: &View, node: &str) -> Result<(), Error> {
    if let Some(member) = view.member(node) {
        return Err(Error::AlreadyMember {
            node: node.to_string(),
            role: if member.line.role == Role::Primary {
                "primary"
            } else {
                "replica"
            },
        });
    }
    let info = ops
        .info(node, "cluster")
        .await
        .map_err(|e| unreachable(node, e))?;
    if info.cluster_enabled != Some(true) {
        return Err(Error::NotClusterEnabled {
            node: node.to_string(),
        });
    }
    let lines = ops.cluster_nodes(node).await.map_err(|e| unreachable(node, e))?;
    let others = lines.iter().filter(|line| !line.has_flag("myself")).count();
    if others > 0 {
        return Err(Error::NodeInOtherCluster {
            node: node.to_string(),
            known: others,
        });
    }
    let keys: i64 = ops
        .words(node, &["DBSIZE"])
        .await
        .map_err(|e| unreachable(node, e))?;
    let slots: usize = lines
        .iter()
        .filter(|l| l.has_flag("myself"))
        .map(|l| l.slot_count())
        .sum();
    if keys != 0 || slots != 0 {
        return Err(Error::NodeNotEmpty {
            node: node.to_string(),
            keys: u64::try_from(keys).unwrap_or(0),
            slots,
        });
    }
    Ok(())
}

/// Sleeps and asks `check` again until it says yes, for at most `timeout`; then [`Error::Timeout`]
/// saying `what` (and the last reason `check` gave).
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>, Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // `None`: done; `Some(reason)`: not yet.
        let reason = match check().await {
            Ok(None) => return Ok(()),
            Ok(Some(reason)) => reason,
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(Error::Timeout {
                what: format!("{what} (last: {reason})"),
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `CLUSTER MEET` `node` from a primary of the cluster, then waits until every member knows it (its
/// handshake done) and it knows every member. Returns its node id.
pub(crate) async fn join(ops: Ops<'_>, view: &View, node: &str, timeout: Duration) -> Result<String, Error> {
    let id: String = ops
        .words(node, &["CLUSTER", "MYID"])
        .await
        .map_err(|e| unreachable(node, e))?;
    let addr: NodeAddr = node.parse().map_err(|_| Error::NodeUnreachable {
        node: node.to_string(),
        detail: "not an address host:port".into(),
    })?;
    let port = addr.port().to_string();
    let from =
        view.primaries().into_iter().next().ok_or_else(|| {
            Error::Inconsistent("the cluster has no primary to meet a new node from".into())
        })?;
    ops.words::<()>(&from, &["CLUSTER", "MEET", addr.host(), &port])
        .await?;
    let members: Vec<(String, String)> = view
        .members
        .iter()
        .map(|m| (m.addr.clone(), m.line.id.clone()))
        .collect();
    let what = format!("every node to know {node} after CLUSTER MEET");
    wait_until(&what, timeout, || async {
        let everyone = members.iter().map(|(addr, _)| addr.as_str()).chain([node]);
        let answers = join_all(everyone.clone().map(|m| ops.cluster_nodes(m))).await;
        for (member, answer) in everyone.zip(answers) {
            let lines = answer?;
            let knows = |id: &str| {
                lines
                    .iter()
                    .any(|l| l.id == id && !l.has_flag("handshake") && l.addr.is_some())
            };
            if member == node {
                if let Some((addr, _)) = members.iter().find(|(_, id)| !knows(id)) {
                    return Ok(Some(format!("{node} does not know {addr} yet")));
                }
            } else if !knows(&id) {
                return Ok(Some(format!("{member} does not know {node} yet")));
            }
        }
        Ok(None)
    })
    .await?;
    Ok(id)
}

/// `CLUSTER REPLICATE primary_id` on `replica`, then waits until it replicates `primary` with its
/// link up.
pub(crate) async fn replicate(
    ops: Ops<'_>,
    replica: &str,
    primary: &str,
    primary_id: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let port = primary
        .parse::<NodeAddr>()
        .map(|a| a.port())
        .map_err(|_| Error::Inconsistent(format!("{primary} is not an address host:port")))?;
    ops.words::<()>(replica, &["CLUSTER", "REPLICATE", primary_id])
        .await?;
    let what = format!("{replica} to replicate {primary} with its link up");
    wait_until(&what, timeout, || async {
        let info = ops.info(replica, "replication").await?;
        Ok((info.role != Some(Role::Replica)
            || info.master_port != Some(port)
            || info.master_link_up != Some(true))
        .then(|| {
            format!(
                "role {:?}, primary port {:?}, link up {:?}",
                info.role, info.master_port, info.master_link_up
            )
        }))
    })
    .await
}

/// Retires the drained primary `addr`: its replicas go to the remaining primaries with the fewest
/// replicas, every other node forgets it once all see it without slots nor replicas, and it is reset
/// so that it forgets the cluster.
pub(crate) async fn retire(
    client: &ClusterClient,
    ops: Ops<'_>,
    addr: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let view = View::load(client, ops).await?;
    let id = view
        .id_of(addr)
        .ok_or_else(|| Error::Inconsistent(format!("{addr} left the cluster while it was being removed")))?
        .to_string();
    if let Some(line) = view.own.get(addr)
        && !line.slots.is_empty()
    {
        return Err(Error::Inconsistent(format!(
            "{addr} still owns {} slots after its drain; run resume() and remove it again",
            line.slot_count()
        )));
    }
    let mut replica_counts: BTreeMap<String, usize> = view
        .primaries()
        .into_iter()
        .filter(|p| p != addr)
        .map(|p| {
            let count = view.replicas_of(&p).len();
            (p, count)
        })
        .collect();
    for replica in view.replicas_of(addr) {
        let Some((target, _)) = replica_counts
            .iter()
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(p, c)| (p.clone(), *c))
        else {
            break;
        };
        let target_id = view
            .id_of(&target)
            .ok_or_else(|| Error::Inconsistent(format!("{target} has no node id")))?
            .to_string();
        tracing::info!(%replica, primary = %target, "re-attaching a replica of the removed primary");
        replicate(ops, &replica, &target, &target_id, timeout).await?;
        *replica_counts.entry(target).or_default() += 1;
    }
    let others: Vec<String> = view
        .members
        .iter()
        .filter(|m| m.addr != addr)
        .map(|m| m.addr.clone())
        .collect();
    // A node that still sees slots or replicas on the removed one would lose them when it forgets it.
    let what = format!("every node to see {addr} without slots nor replicas");
    wait_until(&what, timeout, || async {
        let answers = join_all(others.iter().map(|m| ops.cluster_nodes(m))).await;
        for (member, answer) in others.iter().zip(answers) {
            let lines = answer?;
            if lines.iter().any(|l| l.id == id && !l.slots.is_empty()) {
                return Ok(Some(format!("{member} still sees slots on it")));
            }
            if lines.iter().any(|l| l.primary_id.as_deref() == Some(id.as_str())) {
                return Ok(Some(format!("{member} still sees a replica of it")));
            }
        }
        Ok(None)
    })
    .await?;
    // All at once: a node that forgot it learns it again from one that did not within 60 s.
    let forget = ["CLUSTER", "FORGET", id.as_str()];
    let results = join_all(others.iter().map(|m| ops.words::<()>(m, &forget))).await;
    let failed: Vec<String> = others
        .iter()
        .zip(results)
        .filter_map(|(member, result)| match result {
            Ok(()) => None,
            Err(e) if server_says(&e, "Unknown node") => None,
            Err(e) => Some(format!("{member}: {e}")),
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::Inconsistent(format!(
            "CLUSTER FORGET of {addr} failed on {}; run remove_primary again within 60 s",
            failed.join("; ")
        )));
    }
    // Redis turns a primary that lost its last slot into a replica of the node that took it
    // (`cluster-allow-replica-migration`, on by default): its keys are then a copy of that primary's,
    // which `CLUSTER RESET` flushes. A primary that still holds keys of its own is left as it is.
    let role = ops.info(addr, "replication").await?.role;
    let keys: i64 = ops.words(addr, &["DBSIZE"]).await?;
    if role == Some(Role::Replica) || keys == 0 {
        ops.words::<()>(addr, &["CLUSTER", "RESET", "SOFT"]).await?;
    } else {
        tracing::warn!(
            node = addr,
            keys,
            "the removed primary still holds keys: not reset"
        );
    }
    Ok(())
}

/// Refreshes the client's topology until it shows `addr` connected, for at most `timeout`; on
/// timeout only logs (the client connects on first use anyway).
pub(crate) async fn wait_client_connected(client: &ClusterClient, addr: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if client.node_stats().iter().any(|s| s.node == addr && s.connected) {
            return;
        }
        if tokio::time::Instant::now() + POLL > deadline {
            tracing::warn!(node = addr, "the client has not connected to the new primary yet");
            return;
        }
        if let Err(error) = client.refresh_topology().await {
            tracing::debug!(%error, "topology refresh failed");
        }
        tokio::time::sleep(POLL).await;
    }
}
