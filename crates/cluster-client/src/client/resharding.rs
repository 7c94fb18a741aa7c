//! Online ring changes of client-sharded deployments (ketama or key-range over standalone nodes).
//!
//! A reshard has two rings: the old one, which placed every key stored so far, and the new one, which
//! routes every call from the moment the reshard begins. For a key whose owner differs between the
//! two (a *moved* key), the calls keep the cache whole while the key is in flight:
//!
//! - a read that misses on the new owner asks the old owner, and if that misses too, the new owner
//!   once more: a mover that copied the key and deleted the old copy between the first two reads is
//!   caught by the third, so a key that exists is never reported missing;
//! - a write goes to the new owner, then deletes the key on the old owner, so the old owner never
//!   holds a value older than the new owner's (a fallback read cannot return it, and turning the
//!   reshard around with [`Reshard::abort`] cannot bring it back);
//! - a delete removes the key on the old owner first, then on the new one, so a mover's copy that
//!   lands between the two is removed by the second, and a fallback read cannot resurrect it.
//!
//! Copying the moved keys is the mover's job (the `rebalance` crate): it copies each with `RESTORE`
//! without `REPLACE`, so a write that reached the new owner first is kept, and deletes the old copy
//! only if it is unchanged. Keys whose owner does not change are served exactly as before.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use cluster_config::NodeAddr;
use fred::prelude::*;
use fred::types::SetOptions as FredSetOptions;
use sharding::key_slot;

use super::routing::{Routing, send};
use super::{ClusterClient, Cmd, Inner};
use crate::Error;
use crate::events::ClientEvent;
use crate::node::NodeHandle;
use crate::topology::Topology;

/// Tells one reshard from the next, so a stale handle cannot finish a later one.
static NEXT_RESHARD_ID: AtomicU64 = AtomicU64::new(1);

/// The two rings of a reshard in progress, resolved to node handles.
pub(crate) struct ReshardState {
    id: u64,
    old: Arc<Routing>,
    new: Arc<Routing>,
    begun: Instant,
}

impl ReshardState {
    /// The old and new owners of `key`, if they differ.
    fn owners(&self, key: &[u8]) -> Option<(&Arc<NodeHandle>, &Arc<NodeHandle>)> {
        let slot = key_slot(key);
        let old = self.old.topology.shard_index(key, slot)?;
        let new = self.new.topology.shard_index(key, slot)?;
        let (old, new) = (self.old.primaries.get(old)?, self.new.primaries.get(new)?);
        (old.addr != new.addr).then_some((old, new))
    }

    /// The handle of the old owner of `key` if the reshard moves it.
    fn old_owner(&self, key: &[u8]) -> Option<Arc<NodeHandle>> {
        self.owners(key).map(|(old, _)| old.clone())
    }
}

/// Where a reshard moves one key: from its owner in the old ring to its owner in the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReshardMove {
    /// The key's owner in the old ring (`host:port`).
    pub from: String,
    /// The key's owner in the new ring (`host:port`).
    pub to: String,
}

/// A ring change in progress on a client-sharded [`ClusterClient`], from
/// [`ClusterClient::begin_reshard`].
///
/// While it lasts, every call routes by the new ring, and calls on keys whose owner changed fall back
/// to the old owner as the module documentation describes, so no key that exists on either owner is
/// reported missing. The mover copies the moved keys, then calls [`finish`](Reshard::finish).
/// Dropping the handle does not end the reshard (a mover that crashes leaves the client serving
/// correctly); [`ClusterClient::reshard_in_progress`] gives the handle back.
#[derive(Clone)]
pub struct Reshard {
    client: ClusterClient,
    state: Arc<ReshardState>,
}

impl fmt::Debug for Reshard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reshard")
            .field("old", &self.state.old.topology)
            .field("new", &self.state.new.topology)
            .finish()
    }
}

impl Reshard {
    /// The ring that placed the keys stored before the reshard.
    pub fn old_topology(&self) -> Arc<Topology> {
        self.state.old.topology.clone()
    }

    /// The ring every call routes by now, and the only one after [`finish`](Reshard::finish).
    pub fn new_topology(&self) -> Arc<Topology> {
        self.state.new.topology.clone()
    }

    /// Where the reshard moves `key`, or `None` if its owner does not change.
    pub fn moved(&self, key: &[u8]) -> Option<ReshardMove> {
        self.state.owners(key).map(|(old, new)| ReshardMove {
            from: old.addr.clone(),
            to: new.addr.clone(),
        })
    }

    /// Waits until every call the client routed by the old ring has ended: the configured command
    /// timeout after the reshard began. A mover reads the old owners after this, so that no write
    /// routed to an old owner before the switch lands after its copy was taken. (Handles with a longer
    /// per-call timeout than the configured one are not covered.)
    pub async fn settle(&self) {
        let until = self.state.begun + self.client.inner.config.timeouts().command;
        tokio::time::sleep_until(until.into()).await;
    }

    /// Ends the reshard: the new ring alone serves, reads no longer fall back, and the connections of
    /// nodes that left the ring are closed. Call it once every moved key is copied.
    pub fn finish(self) -> Result<(), Error> {
        let inner = &self.client.inner;
        self.take_over(None)?;
        let kept: std::collections::HashSet<&str> = self.state.new.topology.nodes().collect();
        let left: Vec<Arc<NodeHandle>> = {
            let mut nodes = inner.nodes.lock().map_err(|_| Error::Closed)?;
            let gone: Vec<String> = self
                .state
                .old
                .topology
                .nodes()
                .filter(|node| !kept.contains(node))
                .map(str::to_string)
                .collect();
            gone.iter().filter_map(|node| nodes.remove(node)).collect()
        };
        for node in left {
            node.close();
        }
        inner.emit(ClientEvent::TopologyChanged {
            at: SystemTime::now(),
        });
        Ok(())
    }

    /// Turns the reshard around: the old ring routes every call again, and calls on moved keys fall
    /// back to the new owners, which hold what was copied or written meanwhile (writes during the
    /// reshard deleted the key on its old owner, so no old value hides a newer one). Copy those keys
    /// back with the returned reshard (the rebalance crate's `resume` does), then finish it.
    pub fn abort(self) -> Result<Reshard, Error> {
        let reversed = Arc::new(ReshardState {
            id: NEXT_RESHARD_ID.fetch_add(1, Ordering::Relaxed),
            old: self.state.new.clone(),
            new: self.state.old.clone(),
            begun: Instant::now(),
        });
        self.take_over(Some(reversed.clone()))?;
        self.client.inner.routing.store(reversed.new.clone());
        self.client.inner.emit(ClientEvent::TopologyChanged {
            at: SystemTime::now(),
        });
        Ok(Reshard {
            client: self.client.clone(),
            state: reversed,
        })
    }

    /// Replaces this reshard's state with `next` (`None`: no reshard), if it is still the one in
    /// progress.
    fn take_over(&self, next: Option<Arc<ReshardState>>) -> Result<(), Error> {
        let current = self.client.inner.reshard.load_full();
        if current.as_ref().map(|state| state.id) != Some(self.state.id) {
            return Err(Error::ReshardOver);
        }
        let previous = self.client.inner.reshard.compare_and_swap(&current, next);
        match &*previous {
            Some(state) if state.id == self.state.id => Ok(()),
            _ => Err(Error::ReshardOver),
        }
    }
}

impl ClusterClient {
    /// Begins an online ring change of a client-sharded deployment to `nodes` (`host:port` and weight,
    /// in ring order; the strategy, ketama or key-range, stays the same).
    ///
    /// Nodes new to the ring are connected first (within the connect timeout; otherwise nothing
    /// changes and the error names the node). From the return on, every call routes by the new ring,
    /// and calls on keys whose owner changed fall back to their old owner (see [`Reshard`]); the
    /// rebalance crate's `sharded` module copies the moved keys and finishes the reshard.
    ///
    /// Fails with [`Error::NotSharded`] for a cluster or a standalone server,
    /// [`Error::ReshardInProgress`] while another reshard runs, and [`Error::InvalidRing`] for a node
    /// list the strategy cannot use.
    pub async fn begin_reshard(&self, nodes: Vec<(String, u32)>) -> Result<Reshard, Error> {
        let current = self.inner.routing.load_full();
        if let Some(state) = self.inner.reshard.load_full() {
            return Err(in_progress(&state));
        }
        let mut spelled = Vec::with_capacity(nodes.len());
        for (node, weight) in nodes {
            let addr: NodeAddr = node
                .parse()
                .map_err(|e: cluster_config::Error| Error::InvalidRing {
                    detail: format!("`{node}` is not a node address: {e}"),
                })?;
            spelled.push((addr.to_string(), weight));
        }
        let topology = match current.topology.resharded(spelled) {
            None => {
                return Err(Error::NotSharded {
                    deployment: format!("{:?}", current.topology.deployment()),
                });
            }
            Some(Err(e)) => {
                return Err(Error::InvalidRing {
                    detail: e.to_string(),
                });
            }
            Some(Ok(topology)) => topology,
        };
        let new = self.inner.connect_ring(topology).await?;
        let state = Arc::new(ReshardState {
            id: NEXT_RESHARD_ID.fetch_add(1, Ordering::Relaxed),
            old: current,
            new,
            begun: Instant::now(),
        });
        // The state is published before the routing switches, so that every call routed by the new
        // ring already knows where to fall back.
        let previous = self
            .inner
            .reshard
            .compare_and_swap(&None::<Arc<ReshardState>>, Some(state.clone()));
        if let Some(other) = &*previous {
            return Err(in_progress(other));
        }
        self.inner.routing.store(state.new.clone());
        self.inner.emit(ClientEvent::TopologyChanged {
            at: SystemTime::now(),
        });
        Ok(Reshard {
            client: self.clone(),
            state,
        })
    }

    /// The reshard in progress, if any (for example one a crashed mover left behind).
    pub fn reshard_in_progress(&self) -> Option<Reshard> {
        self.inner.reshard.load_full().map(|state| Reshard {
            client: self.clone(),
            state,
        })
    }

    // ----- hooks for the calls (commands.rs, batch.rs) -----

    /// After a read of `key` on its owner missed: the old owner's answer if a reshard moves the key,
    /// else `None` (the miss stands). `read` is the same command for any node.
    pub(crate) async fn read_fallback(&self, key: &[u8], read: Cmd) -> Result<Option<Value>, Error> {
        let Some(state) = self.inner.reshard.load_full() else {
            return Ok(None);
        };
        let Some(old) = state.old_owner(key) else {
            return Ok(None);
        };
        let on_old = self.call_on(&old, &read).await?;
        if !is_miss(&on_old) {
            return Ok(Some(on_old));
        }
        // A mover may have copied the key and deleted the old copy between the two reads.
        self.run(key, read, super::Access::Read).await.map(Some)
    }

    /// The old and new owners of `key` if a reshard in progress moves it.
    ///
    /// A call on a moved key goes to the new owner *named here*, not to whatever the routing says at
    /// the moment it is sent: the reshard's state is published just before the routing switches, and
    /// a write that landed on the old owner by the old routing must not then have its only copy deleted
    /// as a stale one.
    pub(crate) fn moved_owners(&self, key: &[u8]) -> Option<(Arc<NodeHandle>, Arc<NodeHandle>)> {
        let state = self.inner.reshard.load();
        let state = state.as_ref()?;
        state.owners(key).map(|(old, new)| (old.clone(), new.clone()))
    }

    /// A write of a moved key (`SET` or `DEL`): on the new owner, then the key is deleted on the old
    /// owner, so the old owner never holds a value older than the new owner's. A delete goes to the old
    /// owner first, so a mover's copy that lands between the two is removed by the second. A key that
    /// is only on its old owner exists for `SET NX` (not written) and `SET XX` (written). Returns the
    /// new owner's reply, and for a delete whether the old owner had the key.
    pub(crate) async fn write_moved(
        &self,
        key: &[u8],
        cmd: &Cmd,
        old: &Arc<NodeHandle>,
        new: &Arc<NodeHandle>,
    ) -> Result<(Value, bool), Error> {
        let del = Cmd::Del(Bytes::copy_from_slice(key));
        if matches!(cmd, Cmd::Del(_)) {
            let on_old = super::to_i64(&self.call_on(old, &del).await?, "DEL")? > 0;
            let reply = self.call_on(new, cmd).await?;
            self.inner.note_write(key);
            return Ok((reply, on_old));
        }
        let on_old = || async {
            let exists = Cmd::Exists(Bytes::copy_from_slice(key));
            Ok::<bool, Error>(super::to_i64(&self.call_on(old, &exists).await?, "EXISTS")? > 0)
        };
        if let Cmd::Set {
            condition: Some(FredSetOptions::NX),
            ..
        } = cmd
            && on_old().await?
        {
            return Ok((Value::Null, false));
        }
        let mut reply = self.call_on(new, cmd).await?;
        if let Cmd::Set {
            key: set_key,
            value,
            ttl_ms,
            condition: Some(FredSetOptions::XX),
        } = cmd
            && matches!(reply, Value::Null)
            && on_old().await?
        {
            let plain = Cmd::Set {
                key: set_key.clone(),
                value: value.clone(),
                ttl_ms: *ttl_ms,
                condition: None,
            };
            reply = self.call_on(new, &plain).await?;
        }
        self.inner.note_write(key);
        if !matches!(reply, Value::Null) {
            // A failure here only weakens what `Reshard::abort` promises, never a read (the new owner
            // has the value), so it is logged rather than returned.
            if let Err(error) = self.call_on(old, &del).await {
                tracing::warn!(node = %old.addr, %error, "reshard: deleting the old copy after a write failed");
            }
        }
        Ok((reply, false))
    }

    /// `(input index, old owner, new owner)` of the keys of a batch that a reshard in progress moves.
    pub(crate) fn moved_in_batch<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        wanted: impl Fn(usize) -> bool,
    ) -> Vec<(usize, Arc<NodeHandle>, Arc<NodeHandle>)> {
        let state = self.inner.reshard.load();
        let Some(state) = state.as_ref() else {
            return Vec::new();
        };
        keys.iter()
            .enumerate()
            .filter(|(index, _)| wanted(*index))
            .filter_map(|(index, key)| {
                state
                    .owners(key.as_ref())
                    .map(|(old, new)| (index, old.clone(), new.clone()))
            })
            .collect()
    }

    /// One command on one given node within the call's timeout, no routing.
    pub(crate) async fn call_on(&self, node: &Arc<NodeHandle>, cmd: &Cmd) -> Result<Value, Error> {
        let started = Instant::now();
        let result = send(node, cmd, self.timeout()?, false, false).await;
        node.record(started.elapsed());
        result.map_err(|e| self.inner.to_error(node, cmd.name(), &e, started))
    }
}

impl Inner {
    /// Handles for every node of `topology`, opened and connected (within the connect timeout) if new.
    /// On failure the nodes opened here are closed again and nothing else changes.
    async fn connect_ring(&self, topology: Topology) -> Result<Arc<Routing>, Error> {
        let mut opened = Vec::new();
        let mut primaries = Vec::with_capacity(topology.shards().len());
        {
            let mut nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
            for shard in topology.shards() {
                let handle = match nodes.get(&shard.primary) {
                    Some(handle) => handle.clone(),
                    None => {
                        let handle = NodeHandle::open(&shard.primary, &self.config)?;
                        nodes.insert(shard.primary.clone(), handle.clone());
                        opened.push(handle.clone());
                        handle
                    }
                };
                primaries.push(handle);
            }
        }
        let timeout = self.config.timeouts().connect;
        let waits = primaries
            .iter()
            .filter(|handle| !handle.is_connected())
            .map(|handle| async move { (handle.clone(), handle.wait_connected(timeout).await) });
        let down = futures::future::join_all(waits)
            .await
            .into_iter()
            .find(|(_, up)| !up)
            .map(|(handle, _)| handle);
        if let Some(down) = down {
            if let Ok(mut nodes) = self.nodes.lock() {
                for handle in &opened {
                    nodes.remove(&handle.addr);
                }
            }
            for handle in opened {
                handle.close();
            }
            return Err(Error::NodeUnreachable {
                node: down.addr.clone(),
                after: timeout,
            });
        }
        let replicas = vec![Vec::new(); primaries.len()];
        Ok(Arc::new(Routing {
            topology: Arc::new(topology),
            primaries,
            replicas,
        }))
    }
}

fn in_progress(state: &ReshardState) -> Error {
    Error::ReshardInProgress {
        target: state
            .new
            .topology
            .shards()
            .iter()
            .map(|shard| shard.primary.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Whether a reply says the key is absent: `GET`'s nil, `EXISTS`'s 0, `PTTL`'s -2, `PEXPIRE`'s 0.
pub(crate) fn is_miss(reply: &Value) -> bool {
    match reply {
        Value::Null => true,
        Value::Integer(n) => *n == 0 || *n == -2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_nil_zero_or_minus_two() {
        let check = |reply: Value, miss: bool| assert_eq!(is_miss(&reply), miss, "{reply:?}");
        check(Value::Null, true);
        check(Value::Integer(0), true);
        check(Value::Integer(-2), true);
        check(Value::Integer(-1), false);
        check(Value::Integer(1), false);
        check(Value::from("v"), false);
    }
}
