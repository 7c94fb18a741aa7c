//! Routing: the run loop that sends a command for a key to the node serving it, picks the primary or a
//! replica, follows MOVED/ASK, retries TRYAGAIN/CLUSTERDOWN/LOADING, and fails fast (or waits) when the
//! shard's primary is down; and the single attempt on one node that every path shares.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cluster_config::{Backoff, RetryConfig};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use sharding::key_slot;

use super::failure::{Failure, classify};
use super::{ClusterClient, Cmd, Inner};
use crate::Error;
use crate::events::ClientEvent;
use crate::node::NodeHandle;
use crate::topology::{ShardInfo, Topology};

/// Redirects followed for one call before giving up.
const MAX_REDIRECTS: u32 = 5;

/// The pause before retry number `retry` (1 for the first) of one call, at most `remaining`: the
/// configured backoff (`REDIS_RETRY_INITIAL_DELAY_MS`, times `REDIS_RETRY_BACKOFF_MULTIPLIER` per retry,
/// capped at `REDIS_RETRY_MAX_DELAY_MS`) with equal jitter, so that the clients that met one failover
/// or one migrating slot do not retry in step. The call counts its retries and the [`Backoff`] is built
/// only when one happens, so the run loop's state stays as small as it was.
fn retry_pause(retry: &RetryConfig, count: u32, remaining: Duration) -> Duration {
    Backoff::from(retry).jittered(count).min(remaining)
}

/// How many retries a call may make, and the setting that says so: a read of one key has its own limit
/// (`REDIS_MAX_RETRIES_READ_KEY`), every other call `REDIS_MAX_RETRIES`. 0 means one attempt only.
fn retry_limit(retry: &RetryConfig, access: Access) -> (u32, &'static str) {
    match access {
        Access::Read => (retry.read_key_max_retries, "REDIS_MAX_RETRIES_READ_KEY"),
        Access::Write => (retry.max_retries, "REDIS_MAX_RETRIES"),
    }
}

/// Whether a call whose connection failed may be sent again. A read may: it changes nothing. A write
/// only when fred's words say it never left this process (the connection was not up, or the write to
/// the socket failed): a write cut off in flight may have run, and sending it again could apply it
/// twice or over a newer write.
fn resend_allowed(access: Access, message: &str) -> bool {
    access == Access::Read
        || message.contains(crate::bulk::NOT_SENT)
        || message.contains("not initialized")
        || message.contains("Failed to send command")
        || message.contains("Failed to route command")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Which node serves each shard, resolved to connection handles.
pub(super) struct Routing {
    pub(super) topology: Arc<Topology>,
    pub(super) primaries: Vec<Arc<NodeHandle>>,
    pub(super) replicas: Vec<Vec<Arc<NodeHandle>>>,
}

impl ClusterClient {
    /// Sends `cmd` for `key` to the node that serves it, following redirects and retrying transient
    /// errors until the call's deadline.
    pub(crate) async fn run(&self, key: &[u8], cmd: Cmd, access: Access) -> Result<Value, Error> {
        let started = Instant::now();
        let deadline = started + self.timeout()?;
        let slot = key_slot(key);
        let mut redirects = 0;
        let mut redirect: Option<(Arc<NodeHandle>, bool)> = None;
        let mut retries: u32 = 0;
        loop {
            let (node, asking, readonly) = match redirect.take() {
                Some((node, asking)) => (node, asking, false),
                None => match self.pick(key, slot, access) {
                    Ok((node, replica)) => (node, false, replica),
                    Err(error) if self.options.wait_for_failover && Instant::now() < deadline => {
                        tracing::debug!(%error, "waiting for a failover");
                        self.inner.refresh_wanted.notify_one();
                        tokio::time::sleep(Duration::from_millis(20).min(deadline - Instant::now())).await;
                        continue;
                    }
                    Err(error) => {
                        // A fail-fast error comes back without awaiting anything. A caller that
                        // retries at once would then never yield, and on a runtime with few
                        // threads it starves the refresh that would end the outage; so the call
                        // takes its share of tokio's cooperative budget, yielding once it is spent.
                        tokio::task::consume_budget().await;
                        return Err(error);
                    }
                },
            };
            let mut remaining = deadline.saturating_duration_since(Instant::now());
            if readonly {
                // A replica gets half the time left, so that the primary can still answer if it fails.
                remaining /= 2;
            }
            if remaining.is_zero() {
                return Err(Error::Timeout {
                    command: cmd.name().into(),
                    node: node.addr.clone(),
                    after: started.elapsed(),
                });
            }
            if !readonly && !node.has_connected() {
                // A node new to this client (it just joined, or a MOVED/ASK names it first): its first
                // connection is still opening, which is no sign of failure. The call waits for it
                // within its deadline.
                if !node.wait_routable(remaining).await {
                    self.inner.refresh_wanted.notify_one();
                    return Err(Error::Timeout {
                        command: cmd.name().into(),
                        node: node.addr.clone(),
                        after: started.elapsed(),
                    });
                }
            }
            let attempt = Instant::now();
            let result = send(&node, &cmd, remaining, asking, readonly).await;
            node.record(attempt.elapsed());
            let error = match result {
                Ok(_) if access == Access::Write && node.is_replaced() => {
                    return Err(Error::WriteUncertain {
                        command: cmd.name().into(),
                        node: node.addr.clone(),
                    });
                }
                Ok(value) => {
                    if access == Access::Write {
                        self.inner.note_write(key);
                    }
                    if !node.is_up() && node.set_up(true) {
                        self.inner.emit(ClientEvent::NodeUp {
                            node: node.addr.clone(),
                            at: SystemTime::now(),
                        });
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            match classify(&error, node.host()) {
                Failure::Moved { addr } | Failure::Ask { addr } if redirects >= MAX_REDIRECTS => {
                    let _ = addr;
                    return Err(Error::TooManyRedirects {
                        command: cmd.name().into(),
                        slot,
                        redirects,
                    });
                }
                Failure::Moved { addr } => {
                    redirects += 1;
                    node.record_redirect();
                    self.inner.refresh_wanted.notify_one();
                    redirect = Some((self.inner.node_handle(&addr)?, false));
                }
                Failure::Ask { addr } => {
                    redirects += 1;
                    node.record_redirect();
                    redirect = Some((self.inner.node_handle(&addr)?, true));
                }
                Failure::Retry(message) => {
                    let retry = self.inner.config.retry();
                    let (limit, setting) = retry_limit(retry, access);
                    if retries >= limit {
                        return Err(Error::RetriesExhausted {
                            command: cmd.name().into(),
                            node: node.addr.clone(),
                            retries,
                            message,
                            setting,
                        });
                    }
                    tracing::debug!(node = %node.addr, %message, "retrying");
                    if message.starts_with("CLUSTERDOWN") {
                        // A node that serves no slots answers CLUSTERDOWN: one that is leaving or has
                        // left the cluster (a removed primary, reset after its slots moved away) and
                        // that this client still routes to. Only a fresh slot table sends the retry
                        // elsewhere; a cluster that is really down answers the same after it.
                        self.inner.refresh_wanted.notify_one();
                    }
                    retries = retries.saturating_add(1);
                    let pause =
                        retry_pause(retry, retries, deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Failure::Down(message) if readonly => {
                    // A replica read that failed on the connection goes to the primary at once.
                    node.record_error();
                    self.inner.node_failed(&node);
                    tracing::debug!(node = %node.addr, %message, "replica down; reading from the primary");
                    let primary = self
                        .inner
                        .primary_for(key, slot)
                        .ok_or(Error::SlotUncovered { slot })?;
                    redirect = Some((primary, false));
                }
                Failure::Down(message) => {
                    let retry = self.inner.config.retry();
                    if retries < retry_limit(retry, access).0 && resend_allowed(access, &message) {
                        // A reset connection and a dying node look the same at the first error; fred
                        // reconnects at once, so a node whose connection is back within one backoff
                        // pause was only reset, and the call goes on there.
                        let pause = retry_pause(
                            retry,
                            retries.saturating_add(1),
                            deadline.saturating_duration_since(Instant::now()),
                        );
                        if node.wait_routable(pause).await {
                            tracing::debug!(node = %node.addr, %message, "connection reset; sending again");
                            retries = retries.saturating_add(1);
                            continue;
                        }
                    }
                    node.record_error();
                    self.inner.node_failed(&node);
                    if !(self.options.wait_for_failover && Instant::now() < deadline) {
                        tracing::debug!(node = %node.addr, %message, "node down");
                        // See the fail-fast path above: never a loop that cannot yield.
                        tokio::task::consume_budget().await;
                        return Err(self.inner.unavailable(key, slot, &node.addr));
                    }
                    tokio::time::sleep(
                        Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                Failure::Timeout if readonly => {
                    node.record_error();
                    tracing::debug!(node = %node.addr, "replica read timed out; reading from the primary");
                    let primary = self
                        .inner
                        .primary_for(key, slot)
                        .ok_or(Error::SlotUncovered { slot })?;
                    redirect = Some((primary, false));
                }
                Failure::Timeout => {
                    self.inner.refresh_wanted.notify_one();
                    return Err(Failure::Timeout.into_error(&node, cmd.name(), started.elapsed()));
                }
                failure @ Failure::Server(_) => {
                    return Err(failure.into_error(&node, cmd.name(), started.elapsed()));
                }
            }
        }
    }

    /// The node to send a command for `key` to: the shard's primary, or a fresh replica for reads.
    /// The node to send to, and whether it is a replica read (on the READONLY connection).
    fn pick(&self, key: &[u8], slot: u16, access: Access) -> Result<(Arc<NodeHandle>, bool), Error> {
        let routing = self.inner.routing.load();
        let Some(shard) = routing.topology.shard_index(key, slot) else {
            self.inner.refresh_wanted.notify_one();
            return Err(Error::SlotUncovered { slot });
        };
        if access == Access::Read
            && self.reads_from_replica()
            && let Some(replica) = self.inner.fresh_replica(&routing.replicas[shard], key, slot)
        {
            return Ok((replica, true));
        }
        let primary = &routing.primaries[shard];
        // A primary that never connected is new, not down: the run loop waits for its connection.
        if !primary.is_routable() && primary.has_connected() {
            self.inner.node_failed(primary);
            return Err(self.inner.unavailable(key, slot, &primary.addr));
        }
        Ok((primary.clone(), false))
    }

    // ----- helpers for the batch module -----

    /// Routes `keys` to their primaries and groups them: the input indexes each primary serves, in
    /// input order, and the keys that could not be routed with why. One handle clone per node, not per
    /// key (the handle's count is shared by every task, so a clone per key costs a contended atomic
    /// each), and each primary's state is asked once per call.
    pub(crate) fn group_by_primary<K: AsRef<[u8]>>(&self, keys: &[K]) -> Routed {
        let routing = self.inner.routing.load();
        // Per primary: its group's position in `groups`, or that it is down.
        let mut seen: Vec<Option<Result<usize, ()>>> = vec![None; routing.primaries.len()];
        let mut routed = Routed::default();
        for (index, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            if let Err(error) = self.check_key(key) {
                routed.failed.push((index, error));
                continue;
            }
            let slot = key_slot(key);
            let Some(shard) = routing.topology.shard_index(key, slot) else {
                routed.failed.push((index, Error::SlotUncovered { slot }));
                continue;
            };
            let primary = &routing.primaries[shard];
            let group = *seen[shard].get_or_insert_with(|| {
                // A new primary's pipeline waits in fred for its first connection (see `run`).
                if !primary.is_routable() && primary.has_connected() {
                    return Err(());
                }
                routed.groups.push((primary.clone(), Vec::new()));
                Ok(routed.groups.len() - 1)
            });
            match group {
                Ok(group) => routed.groups[group].1.push(index),
                Err(()) => routed
                    .failed
                    .push((index, self.inner.unavailable(key, slot, &primary.addr))),
            }
        }
        routed
    }

    pub(crate) fn note_write(&self, key: &[u8]) {
        self.inner.note_write(key);
    }

    /// The handle of a node, opened if new (as for a node named by `MOVED`).
    pub(crate) fn node_for(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        self.inner.node_handle(addr)
    }

    pub(crate) fn node_error(
        &self,
        node: &Arc<NodeHandle>,
        command: &str,
        error: &fred::error::Error,
        started: Instant,
    ) -> Error {
        self.inner.to_error(node, command, error, started)
    }

    pub(crate) fn call_timeout(&self) -> Result<Duration, Error> {
        self.timeout()
    }
}

impl Inner {
    pub(super) fn primary_for(&self, key: &[u8], slot: u16) -> Option<Arc<NodeHandle>> {
        let routing = self.routing.load();
        routing
            .topology
            .shard_index(key, slot)
            .map(|shard| routing.primaries[shard].clone())
    }

    fn unavailable(&self, _key: &[u8], slot: u16, node: &str) -> Error {
        let routing = self.routing.load();
        // A node that is no shard's primary in this client's table (a MOVED target not yet refreshed
        // in) is named with the one slot the call was for, never with an empty list.
        let ranges = routing
            .topology
            .shards()
            .iter()
            .find(|s| s.primary == node)
            .map_or_else(|| slot.to_string(), ShardInfo::ranges_text);
        Error::ShardUnavailable {
            slot,
            ranges,
            node: node.into(),
        }
    }
}

/// One command on one node with a timeout, no routing.
pub(super) async fn raw<R: FromValue>(node: &NodeHandle, cmd: Cmd, timeout: Duration) -> Result<R, Error> {
    let value = send(node, &cmd, timeout, false, false)
        .await
        .map_err(|e| classify(&e, node.host()).into_error(node, cmd.name(), timeout))?;
    R::from_value(value).map_err(|e| Error::Reply {
        node: node.addr.clone(),
        command: cmd.name().into(),
        detail: e.to_string(),
    })
}

/// One attempt on one node; with `asking`, `ASKING` and the command go in one pipeline on one connection.
pub(super) async fn send(
    node: &NodeHandle,
    cmd: &Cmd,
    timeout: Duration,
    asking: bool,
    readonly: bool,
) -> Result<Value, fred::error::Error> {
    if let Cmd::Wait {
        replicas,
        timeout_ms,
        marker,
    } = cmd
    {
        // A blocking command never goes on a shared connection (see the `wait` module).
        return Box::pin(node.waits().wait(marker, *replicas, *timeout_ms, asking, timeout)).await;
    }
    // The usual way: the node's pipelined connection (see the `bulk` module). Replica reads (their
    // connection sends READONLY), ASK redirects and the commands it does not carry take fred's.
    let mut request = bytes::BytesMut::new();
    if !readonly && !asking && cmd.encode(&mut request) {
        let mut replies = node.bulk().call(request.freeze(), 1, timeout).await?;
        return match replies.pop() {
            Some(reply) => crate::bulk::frame_value(reply),
            None => Err(fred::error::Error::new(ErrorKind::Unknown, "no reply")),
        };
    }
    let lane = if readonly { node.readonly() } else { node.lane() };
    if asking {
        // Rare: boxed, so that the common path's future stays small.
        return Box::pin(ask(&lane.client, cmd, timeout)).await;
    }
    // One attempt: when the connection drops with the command in flight, the call fails now (and the
    // routing loop decides what to do) instead of fred re-sending it after a reconnect that, for a
    // dead node, never comes before the deadline.
    let options = Options {
        timeout: Some(timeout),
        fail_fast: true,
        max_attempts: Some(1),
        ..Options::default()
    };
    lane.call(cmd, options).await
}

/// `ASKING` and the command in one pipeline on one connection, so no other command can come between.
async fn ask(client: &Client, cmd: &Cmd, timeout: Duration) -> Result<Value, fred::error::Error> {
    let pipeline = client.pipeline();
    let asking = CustomCommand::new_static("ASKING", ClusterHash::Random, false);
    let _: () = pipeline.custom(asking, Vec::<Value>::new()).await?;
    let _ = cmd.issue(&pipeline).await?;
    let mut results = tokio::time::timeout(timeout, pipeline.try_all::<Value>())
        .await
        .map_err(|_| fred::error::Error::new(ErrorKind::Timeout, "ASK pipeline timed out"))?;
    results.pop().unwrap_or_else(|| {
        Err(fred::error::Error::new(
            ErrorKind::Unknown,
            "empty pipeline reply",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_follow_the_configured_backoff_and_never_pass_the_deadline() {
        let config = cluster_config::ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .build()
            .expect("valid");
        let retry = config.retry();
        let long = Duration::from_secs(10);
        for (count, whole) in [(1, 100), (2, 200), (3, 400), (6, 3000), (40, 3000)] {
            let pause = retry_pause(retry, count, long).as_millis() as u64;
            assert!(
                (whole / 2..=whole).contains(&pause),
                "retry {count}: {pause} ms, want {}..={whole}",
                whole / 2
            );
        }
        assert_eq!(
            retry_pause(retry, 9, Duration::from_millis(3)),
            Duration::from_millis(3)
        );
        assert_eq!(retry_pause(retry, 10, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn reads_and_writes_have_their_own_retry_limits() {
        let config = cluster_config::ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .max_retries(7)
            .read_key_max_retries(0)
            .build()
            .expect("valid");
        assert_eq!(
            retry_limit(config.retry(), Access::Write),
            (7, "REDIS_MAX_RETRIES")
        );
        assert_eq!(
            retry_limit(config.retry(), Access::Read),
            (0, "REDIS_MAX_RETRIES_READ_KEY")
        );
    }

    #[test]
    fn only_writes_that_never_left_are_sent_again_after_a_reset() {
        assert!(resend_allowed(Access::Read, "Connection reset by peer"));
        assert!(!resend_allowed(Access::Write, "Connection reset by peer"));
        assert!(!resend_allowed(Access::Write, "Canceled"));
        assert!(resend_allowed(Access::Write, "Failed to send command"));
        assert!(resend_allowed(Access::Write, "Client is not initialized."));
        assert!(resend_allowed(
            Access::Write,
            &format!("connecting to 127.0.0.1:7000: refused: {}", crate::bulk::NOT_SENT)
        ));
        assert!(!resend_allowed(
            Access::Write,
            "the connection closed before the replies arrived"
        ));
    }
}

/// Keys routed to their primaries: see [`ClusterClient::group_by_primary`].
#[derive(Default)]
pub(crate) struct Routed {
    /// Each primary and the input indexes of the keys it serves, ascending.
    pub(crate) groups: Vec<(Arc<NodeHandle>, Vec<usize>)>,
    /// The keys that could not be routed (an invalid key, an uncovered slot, a primary that is down).
    pub(crate) failed: Vec<(usize, Error)>,
}
