//! `WAIT` on connections no other call shares.
//!
//! `WAIT` blocks the connection it is sent on until the replicas acknowledge or its timeout passes.
//! Sent on a routed connection (a [`Lane`](crate::lane::Lane)), it held every call multiplexed behind
//! it: with one replica stopped, `GET`s of other keys of that shard waited the whole command timeout and
//! failed. So a wait runs on a connection of its own, from a small per-node pool opened on first use.
//!
//! `WAIT` counts the replicas that acknowledged the writes *of the connection it runs on*, and the
//! caller's writes went over the routed connections. The pool's connection therefore first makes one
//! write of its own, to a marker key in the same slot as the caller's key (so the same primary takes
//! it, and a `MOVED` is followed like any write), then sends `WAIT` for it. A primary feeds its replicas
//! one ordered replication stream, and a write is in that stream before its reply leaves the primary:
//! every write the caller saw acknowledged comes before the marker, so a replica that acknowledged the
//! marker acknowledged them all. One write and one `WAIT` on one connection, with `REPLCONF GETACK`
//! sent by the primary as for any `WAIT`: cheaper and quicker than polling `INFO replication` offsets
//! (replicas report them once a second unasked, and `INFO` is `@dangerous`, which a cache's ACL user
//! usually lacks). The marker is an empty string with a short TTL; an ACL user needs write access to
//! `cluster-client:wait:*`.
//!
//! The marker is written by a two-line script that also answers the primary's `master_replid` (when
//! `INFO` is allowed), and the wait answers it with the count ([`WaitOutcome`]). A caller that knows
//! the replication id of the node that executed its write (consistency's scripts report it) can tell
//! when the wait ran on another stream: a write that a paused primary executed after its replica had
//! been promoted, followed by a wait that went to the new primary, is not acknowledged by that wait's
//! replicas, however many there are.
//!
//! Concurrent waits on one node each take a connection of their own (a `WAIT` blocks everything queued
//! behind it on its connection, so two waits must not share one): up to [`MAX_WAIT_CONNECTIONS`] are
//! open at once; more waits queue for a free one, and a wait that queued sends `WAIT` only for the time
//! left before its deadline, so it still answers in time. Idle connections are kept for the next waits;
//! one whose `WAIT` failed or timed out on the client side (it may still be blocked on the server) is
//! closed instead.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use sharding::key_slot;
use tokio::sync::Semaphore;

/// Dedicated wait connections open at once per node; further concurrent waits queue for one.
pub(crate) const MAX_WAIT_CONNECTIONS: usize = 8;

/// How long a marker key lives: long enough to be replicated before it expires, short enough to leave
/// nothing behind.
const MARKER_TTL_MS: i64 = 10_000;

/// Time kept between the end of the server's `WAIT` and the caller's deadline for the reply to travel.
const REPLY_SLACK: Duration = Duration::from_millis(200);

/// The marker key in `slot`: `cluster-client:wait:{n}`, where `n` is the first number whose hash tag
/// falls in that slot.
pub(crate) fn marker_key(slot: u16) -> Bytes {
    static TAGS: OnceLock<Vec<u32>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        // Every slot gets a tag after about 170,000 numbers (coupon collector over 16,384 slots): a few
        // milliseconds, once per process.
        let slots = usize::from(sharding::SLOT_COUNT);
        let mut tags = vec![u32::MAX; slots];
        let mut missing = slots;
        let mut n = 0u32;
        while missing > 0 && n < u32::MAX {
            let slot = usize::from(key_slot(n.to_string().as_bytes()));
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    let tag = tags.get(usize::from(slot)).copied().unwrap_or(0);
    Bytes::from(format!("cluster-client:wait:{{{tag}}}"))
}

/// A node's dedicated connections for `WAIT`.
pub(crate) struct WaitPool {
    builder: Builder,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

impl WaitPool {
    /// A pool that builds its connections with `builder` when first needed. The builder should not
    /// close connections whose reply is late (fred's unresponsive check): a `WAIT` is late by design,
    /// and the call's own deadline bounds it.
    pub(crate) fn new(builder: Builder) -> WaitPool {
        WaitPool {
            builder,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_WAIT_CONNECTIONS),
        }
    }

    /// Writes `marker` (after `ASKING` when `asking`), then `WAIT replicas wait_ms`, on a connection of
    /// the pool, all within `timeout`; the reply of `WAIT` (the replicas that acknowledged).
    pub(crate) async fn wait(
        &self,
        marker: &Bytes,
        replicas: i64,
        wait_ms: i64,
        asking: bool,
        timeout: Duration,
    ) -> Result<Value, fred::error::Error> {
        let deadline = Instant::now() + timeout;
        let timed_out = || fred::error::Error::new(ErrorKind::Timeout, "no wait connection free in time");
        let _permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| fred::error::Error::new_canceled())?;
        let client = match self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            Some(client) => client,
            None => self.open(deadline).await?,
        };
        let result = Box::pin(exchange(&client, marker, replicas, wait_ms, asking, deadline)).await;
        let reusable = match &result {
            Ok(_) => true,
            // The server answered with an error (MOVED, READONLY, NOPERM): the connection is fine.
            Err(e) => !matches!(
                e.kind(),
                ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing
            ),
        };
        if reusable && client.is_connected() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(client);
            }
        } else {
            discard(client);
        }
        result
    }

    async fn open(&self, deadline: Instant) -> Result<Client, fred::error::Error> {
        let client = self.builder.build()?;
        client.connect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, client.wait_for_connect()).await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => {
                discard(client);
                Err(e)
            }
            Err(_) => {
                discard(client);
                Err(fred::error::Error::new(
                    ErrorKind::Timeout,
                    "the wait connection did not open in time",
                ))
            }
        }
    }

    /// Closes the idle connections (in the background: `quit()` on a dead node can take a while).
    pub(crate) fn close(&self) {
        let idle = self.idle.lock().map(|mut idle| std::mem::take(&mut *idle));
        for client in idle.unwrap_or_default() {
            discard(client);
        }
    }
}

fn discard(client: Client) {
    tokio::spawn(async move {
        let _ = client.quit().await;
    });
}

/// The marker write and the `WAIT`, in order, on a connection nobody else uses.
async fn exchange(
    client: &Client,
    marker: &Bytes,
    replicas: i64,
    wait_ms: i64,
    asking: bool,
    deadline: Instant,
) -> Result<Value, fred::error::Error> {
    let options = |deadline: Instant| Options {
        timeout: Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ),
        fail_fast: true,
        max_attempts: Some(1),
        ..Options::default()
    };
    let before = client.with_options(&options(deadline));
    if asking {
        let asking = CustomCommand::new_static("ASKING", ClusterHash::Random, false);
        let _: Value = before.custom(asking, Vec::<Value>::new()).await?;
    }
    let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
    let replid: Value = before
        .custom(
            eval,
            vec![
                Value::from(MARKER_SCRIPT),
                Value::Integer(1),
                Value::Bytes(marker.clone()),
                Value::Integer(MARKER_TTL_MS),
            ],
        )
        .await?;
    // The server's WAIT ends early enough for its reply to arrive before the deadline (never `WAIT n 0`,
    // which blocks for ever).
    let left = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(REPLY_SLACK);
    let wait_ms = wait_ms
        .min(i64::try_from(left.as_millis()).unwrap_or(i64::MAX))
        .max(1);
    let acked: i64 = client
        .with_options(&options(deadline))
        .wait(replicas, wait_ms)
        .await?;
    Ok(Value::Array(vec![Value::Integer(acked), replid]))
}

/// Writes the marker (empty, with a TTL) and answers the primary's replication id, or `false` when the
/// node refuses `INFO` (an ACL user without it).
const MARKER_SCRIPT: &str = "redis.call('SET', KEYS[1], '', 'PX', ARGV[1]) \
local info = redis.pcall('INFO', 'replication') \
if type(info) == 'string' then return string.match(info, 'master_replid:(%x+)') or false end \
return false";

/// What a wait found: how many replicas acknowledged, and on which replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitOutcome {
    /// Replicas that acknowledged every write the primary had acknowledged before the wait.
    pub acked: u32,
    /// The `master_replid` of the primary the wait ran on, when it would say.
    pub replication_id: Option<String>,
}

impl WaitOutcome {
    /// Parses the wait exchange's reply: `[count, replid or nil]`.
    pub(crate) fn from_reply(reply: &Value) -> Option<WaitOutcome> {
        let Value::Array(items) = reply else {
            return None;
        };
        let acked = items.first()?.as_i64()?;
        let replication_id = items
            .get(1)
            .and_then(Value::as_string)
            .filter(|id| !id.is_empty());
        Some(WaitOutcome {
            acked: u32::try_from(acked.max(0)).unwrap_or(u32::MAX),
            replication_id,
        })
    }

    /// Whether the wait's acknowledgements count for a write executed on the stream `written_on`:
    /// `false` only when both replication ids are known and differ.
    pub fn covers(&self, written_on: Option<&str>) -> bool {
        match (written_on, self.replication_id.as_deref()) {
            (Some(written), Some(waited)) => written == waited,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_replies_parse_and_cover_only_their_own_stream() {
        let reply = |replid: Value| Value::Array(vec![Value::Integer(2), replid]);
        let known = WaitOutcome::from_reply(&reply(Value::from("abc123"))).unwrap();
        assert_eq!(
            (known.acked, known.replication_id.as_deref()),
            (2, Some("abc123"))
        );
        assert!(known.covers(Some("abc123")));
        assert!(!known.covers(Some("def456")), "another stream's acknowledgements");
        assert!(known.covers(None), "unknown write stream: as before");
        let unknown = WaitOutcome::from_reply(&reply(Value::Null)).unwrap();
        assert!(unknown.covers(Some("abc123")), "a node without INFO: as before");
        let negative = WaitOutcome::from_reply(&Value::Array(vec![Value::Integer(-1)])).unwrap();
        assert_eq!(negative.acked, 0);
        assert!(WaitOutcome::from_reply(&Value::Integer(1)).is_none());
    }

    #[test]
    fn markers_fall_in_their_slot() {
        for slot in [0, 1, 42, 8_191, 12_182, 16_383] {
            let marker = marker_key(slot);
            assert_eq!(key_slot(&marker), slot, "{marker:?}");
            assert!(marker.starts_with(b"cluster-client:wait:{"), "{marker:?}");
        }
        let all_found = (0..sharding::SLOT_COUNT).all(|slot| key_slot(&marker_key(slot)) == slot);
        assert!(all_found, "every slot has a marker");
    }
}
