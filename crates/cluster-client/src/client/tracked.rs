//! Tracked reads for a near cache: [`ClusterClient::enable_tracking`], [`ClusterClient::get_tracked`]
//! and [`ClusterClient::tracking_token`] (see the `tracking` module for the rules they keep).

use redis_protocol::resp3::types::BytesFrame;
use sharding::key_slot;

use super::ClusterClient;
use crate::Error;
use crate::tracking::{TrackToken, TrackedGet, TrackedRead, Tracking, TrackingMode, error_text};

impl ClusterClient {
    /// Turns on key tracking for a near cache: from now on, [`get_tracked`](Self::get_tracked) reads
    /// through one RESP3 connection per primary with `CLIENT TRACKING ON`, and the servers'
    /// invalidations go to the tracking's sink. Once per client (clones share it); a second call
    /// returns [`Error::TrackingAlreadyEnabled`].
    pub fn enable_tracking(&self, tracking: Tracking) -> Result<(), Error> {
        self.inner
            .tracking
            .set(tracking)
            .map_err(|_| Error::TrackingAlreadyEnabled)
    }

    /// Whether [`enable_tracking`](Self::enable_tracking) was called.
    pub fn tracking_enabled(&self) -> bool {
        self.inner.tracking.get().is_some()
    }

    /// `GET` on the tracking connection of the key's primary: the value, and the token under which a
    /// near cache may keep it. A read that cannot be tracked (tracking is off, the slot is migrating
    /// and answered `ASK`, the slot moved, the tracking connection is down, a ring change is under
    /// way) is served through the routed path ([`get`](Self::get)) and comes back without a token.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "GET"))]
    pub async fn get_tracked(&self, key: &[u8]) -> Result<TrackedGet, Error> {
        self.check_key(key)?;
        let untracked = |value| TrackedGet {
            value,
            token: None,
            ttl: None,
        };
        let Some(tracking) = self.inner.tracking.get() else {
            return Ok(untracked(self.get(key).await?));
        };
        // In broadcast mode the server invalidates only the keys under its prefixes: another key's
        // value could never be kept safely.
        if let TrackingMode::Broadcast { prefixes } = tracking.mode()
            && !prefixes.is_empty()
            && !prefixes.iter().any(|p| key.starts_with(p))
        {
            return Ok(untracked(self.get(key).await?));
        }
        let slot = key_slot(key);
        let node = match self.inner.primary_for(key, slot) {
            Some(node) if !node.is_replaced() && self.inner.reshard.load().is_none() => node,
            _ => return Ok(untracked(self.get(key).await?)),
        };
        let timeout = self.timeout()?;
        let started = std::time::Instant::now();
        match node
            .tracking()
            .get(node.bulk().settings(), tracking, key, timeout)
            .await
        {
            Ok(TrackedRead {
                value: BytesFrame::BlobString { data, .. },
                token,
                ttl,
            }) => Ok(TrackedGet {
                value: Some(data),
                token,
                ttl,
            }),
            Ok(TrackedRead {
                value: BytesFrame::Null,
                token,
                ttl,
            }) => Ok(TrackedGet {
                value: None,
                token,
                ttl,
            }),
            Ok(TrackedRead { value: frame, .. }) => {
                match error_text(&frame) {
                    Some(message) if message.starts_with("MOVED") || message.starts_with("CLUSTERDOWN") => {
                        self.inner.refresh_wanted.notify_one();
                    }
                    // ASK, TRYAGAIN, LOADING: the routed path knows what to do.
                    Some(_) => {}
                    None => {
                        return Err(Error::Reply {
                            node: node.addr.clone(),
                            command: "GET".into(),
                            detail: format!("a {frame:?} frame on the tracking connection"),
                        });
                    }
                }
                Ok(untracked(self.get(key).await?))
            }
            // The call's whole time is spent (a stopped node): a second try would double it.
            Err(_) if started.elapsed() >= timeout => Err(Error::Timeout {
                command: "GET".into(),
                node: node.addr.clone(),
                after: started.elapsed(),
            }),
            Err(message) => {
                tracing::debug!(node = %node.addr, %message, "tracked read failed; reading through the routed path");
                Ok(untracked(self.get(key).await?))
            }
        }
    }

    /// The token values of `key` read now are tracked under: that of the tracking connection of the
    /// node that serves the key's slot in this client's current slot table. A near cache serves a
    /// kept value only while this equals the token it was read with; `None` (no tracking connection,
    /// a failover or ring change under way) means serve nothing kept.
    pub fn tracking_token(&self, key: &[u8]) -> Option<TrackToken> {
        // Called on every near-cache hit: the node is read in place (no reference count changes,
        // which two threads serving hits would contend on).
        if self.inner.reshard.load().is_some() {
            return None;
        }
        let routing = self.inner.routing.load();
        let shard = routing.topology.shard_index(key, key_slot(key))?;
        let node = routing.primaries.get(shard)?;
        if node.is_replaced() {
            return None;
        }
        node.tracking().token()
    }
}
