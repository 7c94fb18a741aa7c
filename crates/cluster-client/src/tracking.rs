//! Server-assisted client-side caching: one RESP3 connection per node with `CLIENT TRACKING ON`, on
//! which tracked reads travel and the server's invalidation pushes arrive, in the order it sent them.
//!
//! A near cache above this client (the `near-cache` crate) keeps values read through
//! [`ClusterClient::get_tracked`](crate::ClusterClient::get_tracked) and must learn of every change to
//! them. The rules this module keeps, each because an invalidation can be lost:
//!
//! - **One connection carries both the reads and their invalidations** (default tracking mode, not
//!   `REDIRECT`): the server writes an invalidation after the reply of the read that tracked the key,
//!   and the reader task hands the invalidation to the [`InvalidationSink`] before it decodes the next
//!   frame. fred's tracking support delivers pushes on a broadcast channel apart from replies, and its
//!   reconnects re-enable tracking on their own schedule; this connection is written and read by this
//!   crate (like the batch connection) so that the order is kept.
//! - **Every connection has a [`TrackToken`]**, new for each connection and again after the server
//!   flushes its tracking table (a `null` invalidation). A read returns the token of the connection it
//!   travelled on; a near cache keeps it with the value and serves the value only while
//!   [`ClusterClient::tracking_token`](crate::ClusterClient::tracking_token) for the key still returns
//!   the same token. The token of a key changes when its connection drops, is killed, stops answering
//!   its heartbeat, is flushed, or when the key's slot is served by another node (failover, migration,
//!   a ring change): whatever its connection tracked is then no longer served, without a scan.
//! - **A heartbeat bounds a silent connection**: a `PING` every [`HEARTBEAT`] that is not answered
//!   within the stall timeout closes the connection (a stopped node, a cut network). A failover takes
//!   at least the cluster's node timeout, far longer, so a paused primary's entries stop being served
//!   before its replica can accept a write.
//! - **Redirected reads are not tracked**: a read answered with `MOVED` or `ASK` (a migrating slot) is
//!   served through the routed path and returned without a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BorrowedFrame;
use redis_protocol::resp3::decode::complete::decode_bytes_mut;
use redis_protocol::resp3::types::BytesFrame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::bulk::{Dispatch, Pending, READ_CHUNK, Request, Settings, encode, write_loop};

/// How often an idle tracking connection is checked with `PING`.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// How the server tracks the keys of a near cache (`CLIENT TRACKING ON ...`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrackingMode {
    /// The server remembers the keys each connection read and invalidates those (the default mode).
    #[default]
    Default,
    /// The server remembers only reads preceded by `CLIENT CACHING YES` (sent with every tracked read
    /// here): other reads on the connection cost no tracking-table memory.
    OptIn,
    /// Broadcast: the server remembers nothing per key and sends an invalidation for every change to a
    /// key under one of these prefixes (all keys when empty). Cheaper on the server for a small hot
    /// key space, more invalidation traffic for a large one.
    Broadcast {
        /// Key prefixes (`PREFIX` arguments); empty means every key.
        prefixes: Vec<Bytes>,
    },
}

/// Receives the server's invalidations. Called on a connection's reader task, in order with that
/// connection's replies: keep it short and never block.
pub trait InvalidationSink: Send + Sync + 'static {
    /// These keys changed (written, deleted, expired or evicted) on the server.
    fn invalidate(&self, keys: &[Bytes]);
}

/// Tracking of keys for a near cache; given once to
/// [`ClusterClient::enable_tracking`](crate::ClusterClient::enable_tracking).
#[derive(Clone)]
pub struct Tracking {
    mode: TrackingMode,
    sink: Arc<dyn InvalidationSink>,
    stall_timeout: Duration,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("mode", &self.mode)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

impl Tracking {
    /// Tracking in `mode`, invalidations to `sink`, a connection closed when its heartbeat goes
    /// unanswered for 500 ms.
    pub fn new(mode: TrackingMode, sink: Arc<dyn InvalidationSink>) -> Tracking {
        Tracking {
            mode,
            sink,
            stall_timeout: Duration::from_millis(500),
        }
    }

    /// How long a `PING` on a tracking connection may go unanswered before the connection is closed
    /// and everything it tracked stops being served. Clamped to 10 ms .. 60 s. Keep it well below
    /// the cluster's node timeout (`cluster-node-timeout`), so that a stopped primary's entries are
    /// dropped before its replica is promoted.
    pub fn stall_timeout(mut self, timeout: Duration) -> Tracking {
        self.stall_timeout = timeout.clamp(Duration::from_millis(10), Duration::from_secs(60));
        self
    }

    /// The mode.
    pub fn mode(&self) -> &TrackingMode {
        &self.mode
    }
}

/// Which tracking connection (and which of its tracking tables) a tracked read came from; compare with
/// [`ClusterClient::tracking_token`](crate::ClusterClient::tracking_token) before serving a kept value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackToken(u64);

/// The result of [`ClusterClient::get_tracked`](crate::ClusterClient::get_tracked).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackedGet {
    /// The value, `None` when the key does not exist.
    pub value: Option<Bytes>,
    /// The tracking connection that read it, when the server now tracks the key for it; `None` when
    /// the read took another path (a redirect, a node without a tracking connection, a key outside
    /// the broadcast prefixes, an opt-in the server refused): such a value must not be kept.
    pub token: Option<TrackToken>,
    /// The key's remaining time to live on the server, when it has one: a kept value must not
    /// outlive it (the server invalidates an expired key only once it deletes it).
    pub ttl: Option<Duration>,
}

/// What a tracked read brought back, before the client reads it as a [`TrackedGet`].
pub(crate) struct TrackedRead {
    pub(crate) value: BytesFrame,
    /// The key's remaining TTL, when it has one.
    pub(crate) ttl: Option<Duration>,
    pub(crate) token: Option<TrackToken>,
}

/// Tokens are never reused (0 means none).
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn new_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
}

/// A node's tracking connection, opened on first use, and the token of what it tracks.
pub(crate) struct TrackingSlot {
    conn: ArcSwapOption<TrackConn>,
    opening: tokio::sync::Mutex<()>,
    /// The token of the live connection's tracking table; 0 when none is live.
    current: Arc<AtomicU64>,
    closed: AtomicBool,
}

impl std::fmt::Debug for TrackingSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingSlot")
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TrackingSlot {
    pub(crate) fn new() -> TrackingSlot {
        TrackingSlot {
            conn: ArcSwapOption::empty(),
            opening: tokio::sync::Mutex::new(()),
            current: Arc::new(AtomicU64::new(0)),
            closed: AtomicBool::new(false),
        }
    }

    /// The token values read now may be kept under; `None` when no tracking connection is live.
    pub(crate) fn token(&self) -> Option<TrackToken> {
        match self.current.load(Ordering::Acquire) {
            0 => None,
            token => Some(TrackToken(token)),
        }
    }

    /// `GET key` and `PTTL key` on the tracking connection, opened first if need be: the raw replies
    /// and the token they are tracked under (`None` when the server did not agree to track the read:
    /// `CLIENT CACHING YES` refused in opt-in mode).
    pub(crate) async fn get(
        &self,
        settings: &Settings,
        tracking: &Tracking,
        key: &[u8],
        timeout: Duration,
    ) -> Result<TrackedRead, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.connection(settings, tracking))
            .await
            .map_err(|_| "connecting the tracking connection timed out".to_string())??;
        let mut request = BytesMut::new();
        let opt_in = tracking.mode == TrackingMode::OptIn;
        if opt_in {
            encode(
                &mut request,
                &[
                    BorrowedFrame::BulkString(b"CLIENT"),
                    BorrowedFrame::BulkString(b"CACHING"),
                    BorrowedFrame::BulkString(b"YES"),
                ],
            );
        }
        encode(
            &mut request,
            &[BorrowedFrame::BulkString(b"GET"), BorrowedFrame::BulkString(key)],
        );
        // The key's remaining TTL, in the same request: a key the server expires is invalidated only
        // when the server gets round to deleting it, so a kept value must not outlive its TTL. A
        // write between the two commands sends its invalidation before PTTL's reply, and the reader
        // hands it over before this request completes.
        encode(
            &mut request,
            &[BorrowedFrame::BulkString(b"PTTL"), BorrowedFrame::BulkString(key)],
        );
        let count = if opt_in { 3 } else { 2 };
        // The token is read before the request leaves: a flush after this point changes the
        // connection's token, and the value is then never served under the new one.
        let token = TrackToken(conn.token.load(Ordering::SeqCst));
        match tokio::time::timeout_at(deadline, conn.call(request.freeze(), count)).await {
            Ok(Ok(replies)) => {
                let mut replies = replies.into_iter();
                let agreed = !opt_in || replies.next().is_some_and(|r| error_text(&r).is_none());
                let value = replies.next().unwrap_or(BytesFrame::Null);
                let ttl = match replies.next() {
                    Some(BytesFrame::Number { data, .. }) if data >= 0 => {
                        Some(Duration::from_millis(data.unsigned_abs()))
                    }
                    _ => None,
                };
                Ok(TrackedRead {
                    value,
                    ttl,
                    token: agreed.then_some(token),
                })
            }
            Ok(Err(())) => {
                self.detach(&conn);
                Err("the tracking connection closed".into())
            }
            Err(_) => {
                // A node that is only slow keeps the connection; the heartbeat decides.
                Err("the tracked read timed out".into())
            }
        }
    }

    /// Ends the current connection, if any: what it tracked stops being served and the next read
    /// opens a new one with a new token (a node that was replaced in a failover, so that its token
    /// never covers anything again should it come back as a primary).
    pub(crate) fn reset(&self) {
        if let Some(conn) = self.conn.swap(None) {
            conn.shut();
        }
    }

    /// Closes the connection (everything it tracked stops being served); later reads fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.reset();
        self.current.store(0, Ordering::SeqCst);
    }

    fn detach(&self, conn: &Arc<TrackConn>) {
        conn.shut();
        let _ = self
            .conn
            .compare_and_swap(&Some(conn.clone()), None::<Arc<TrackConn>>);
    }

    async fn connection(&self, settings: &Settings, tracking: &Tracking) -> Result<Arc<TrackConn>, String> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let _opening = self.opening.lock().await;
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err("the node's connections are closed".into());
        }
        let stream = settings.connect().await.map_err(|e| e.details().to_string())?;
        let conn = TrackConn::start(stream, settings, tracking, self.current.clone()).await?;
        self.conn.store(Some(conn.clone()));
        // Closed while this connection was opening: it must not stay current.
        if self.closed.load(Ordering::SeqCst) {
            self.reset();
            return Err("the node's connections are closed".into());
        }
        Ok(conn)
    }

    fn live(&self) -> Option<Arc<TrackConn>> {
        self.conn
            .load_full()
            .filter(|conn| !conn.dead.load(Ordering::Acquire))
    }
}

/// One open tracking connection. Its tasks end when it is shut or dropped; then the slot's token is
/// cleared, so nothing it tracked is served any more.
struct TrackConn {
    requests: mpsc::UnboundedSender<Request<BytesFrame>>,
    dead: Arc<AtomicBool>,
    /// The token of this connection's tracking table (changes when the server flushes it).
    token: Arc<AtomicU64>,
    /// The slot's current token.
    current: Arc<AtomicU64>,
    tasks: [tokio::task::AbortHandle; 3],
}

impl Drop for TrackConn {
    fn drop(&mut self) {
        self.shut();
    }
}

impl TrackConn {
    /// Says `HELLO 3` (with `AUTH` when configured) and `CLIENT TRACKING ON`, then starts the writer,
    /// the reader and the heartbeat.
    async fn start<S>(
        stream: S,
        settings: &Settings,
        tracking: &Tracking,
        current: Arc<AtomicU64>,
    ) -> Result<Arc<TrackConn>, String>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut hello = BytesMut::new();
        let mut frames = vec![
            BorrowedFrame::BulkString(b"HELLO"),
            BorrowedFrame::BulkString(b"3"),
        ];
        let (user, password) = settings.credentials();
        let user = user.unwrap_or("default");
        if let Some(password) = password {
            frames.push(BorrowedFrame::BulkString(b"AUTH"));
            frames.push(BorrowedFrame::BulkString(user.as_bytes()));
            frames.push(BorrowedFrame::BulkString(password.expose().as_bytes()));
        }
        encode(&mut hello, &frames);
        let mut on: Vec<BorrowedFrame<'_>> = ["CLIENT", "TRACKING", "ON"]
            .iter()
            .map(|s| BorrowedFrame::BulkString(s.as_bytes()))
            .collect();
        match &tracking.mode {
            TrackingMode::Default => {}
            TrackingMode::OptIn => on.push(BorrowedFrame::BulkString(b"OPTIN")),
            TrackingMode::Broadcast { prefixes } => {
                on.push(BorrowedFrame::BulkString(b"BCAST"));
                for prefix in prefixes {
                    on.push(BorrowedFrame::BulkString(b"PREFIX"));
                    on.push(BorrowedFrame::BulkString(prefix));
                }
            }
        }
        encode(&mut hello, &on);
        let node = settings.addr();
        let io = |e: std::io::Error| format!("opening the tracking connection to {node}: {e}");
        write.write_all(&hello).await.map_err(io)?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        for command in ["HELLO 3", "CLIENT TRACKING ON"] {
            loop {
                match decode_bytes_mut(&mut buf) {
                    Ok(Some((frame, _, _))) => {
                        if let Some(message) = error_text(&frame) {
                            // The server's words (never the password, which is only ever sent).
                            return Err(format!(
                                "{node} refused {command} for the near cache's tracking connection: {message} \
                                 (tracking needs Redis 6 or later and, with ACLs, the `client` command)"
                            ));
                        }
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("{node} sent a malformed reply to {command}: {e}")),
                }
                if read.read_buf(&mut buf).await.map_err(io)? == 0 {
                    return Err(format!("{node} closed the tracking connection during {command}"));
                }
            }
        }
        let token = Arc::new(AtomicU64::new(new_token()));
        current.store(token.load(Ordering::Relaxed), Ordering::Release);
        let dead = Arc::new(AtomicBool::new(false));
        let (requests, requests_rx) = mpsc::unbounded_channel::<Request<BytesFrame>>();
        let (pending, pending_rx) = mpsc::unbounded_channel::<Pending<BytesFrame>>();
        let reader = tokio::spawn(read_loop(
            read,
            buf,
            pending_rx,
            tracking.sink.clone(),
            Tables {
                own: token.clone(),
                current: current.clone(),
                dead: dead.clone(),
            },
        ));
        let writer = tokio::spawn(write_loop(
            write,
            requests_rx,
            pending,
            dead.clone(),
            reader.abort_handle(),
        ));
        let conn = Arc::new_cyclic(|weak: &std::sync::Weak<TrackConn>| {
            let heartbeat = tokio::spawn(heartbeat(weak.clone(), tracking.stall_timeout));
            TrackConn {
                requests,
                dead,
                token,
                current,
                tasks: [
                    reader.abort_handle(),
                    writer.abort_handle(),
                    heartbeat.abort_handle(),
                ],
            }
        });
        // When the reader or the writer ends (closed by the server, `CLIENT KILL`, a reset), the
        // connection is dead and its token no longer served.
        let watched = Arc::downgrade(&conn);
        tokio::spawn(async move {
            let _ = tokio::select! {
                r = reader => r,
                r = writer => r,
            };
            if let Some(conn) = watched.upgrade() {
                conn.shut();
            }
        });
        Ok(conn)
    }

    /// Marks the connection dead, clears the slot's token if it is still this connection's, and ends
    /// its tasks. Idempotent.
    fn shut(&self) {
        self.dead.store(true, Ordering::SeqCst);
        clear(&self.token, &self.current);
        for task in &self.tasks {
            task.abort();
        }
    }

    /// The replies; `Err` when the connection ended first.
    async fn call(&self, bytes: Bytes, count: usize) -> Result<Vec<BytesFrame>, ()> {
        if self.dead.load(Ordering::Acquire) {
            return Err(());
        }
        let (reply, replies) = oneshot::channel();
        self.requests
            .send(Request { bytes, count, reply })
            .map_err(|_| ())?;
        replies.await.map_err(|_| ())
    }
}

/// Sends `PING` every [`HEARTBEAT`]; shuts the connection when one is not answered within `stall`.
async fn heartbeat(conn: std::sync::Weak<TrackConn>, stall: Duration) {
    let mut ping = BytesMut::new();
    encode(&mut ping, &[BorrowedFrame::BulkString(b"PING")]);
    let ping = ping.freeze();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(conn) = conn.upgrade() else { return };
        let answered = tokio::time::timeout(stall, conn.call(ping.clone(), 1)).await;
        if !matches!(answered, Ok(Ok(_))) {
            tracing::debug!("a tracking connection missed its heartbeat; what it tracked is dropped");
            conn.shut();
            return;
        }
    }
}

/// Clears the slot's token if it is still the connection's `own`.
fn clear(own: &AtomicU64, current: &AtomicU64) {
    let own = own.load(Ordering::SeqCst);
    let _ = current.compare_exchange(own, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// The connection's token and the slot's, for a flush; whether the connection is dead.
struct Tables {
    own: Arc<AtomicU64>,
    current: Arc<AtomicU64>,
    dead: Arc<AtomicBool>,
}

/// Ends a connection's reader: marks the connection dead and clears its token at once (also when the
/// reader is aborted), before any watcher gets round to it.
struct ReaderExit<'a>(&'a Tables);

impl Drop for ReaderExit<'_> {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::SeqCst);
        clear(&self.0.own, &self.0.current);
    }
}

/// Decodes frames in order: an invalidation push goes to the sink before the next frame is read; a
/// reply goes to the request waiting for it. A protocol error or the end of the stream ends it.
async fn read_loop<R: AsyncRead>(
    read: R,
    mut buf: BytesMut,
    pending: mpsc::UnboundedReceiver<Pending<BytesFrame>>,
    sink: Arc<dyn InvalidationSink>,
    tables: Tables,
) {
    let mut read = std::pin::pin!(read);
    let mut dispatch = Dispatch::new(pending);
    let _exit = ReaderExit(&tables);
    loop {
        loop {
            let frame = match decode_bytes_mut(&mut buf) {
                Ok(Some((frame, _, _))) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            if let BytesFrame::Push { data, .. } = frame {
                invalidation(data, &*sink, &tables);
            } else if !dispatch.deliver(frame) {
                return;
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Handles one push: `invalidate` with keys goes to the sink; `invalidate` with `null` (the server
/// flushed its tracking table: `FLUSHALL`, `FLUSHDB`, a table over `tracking-table-max-keys`) gives the
/// connection a new token, so nothing it read before is served. Other pushes are ignored.
fn invalidation(data: Vec<BytesFrame>, sink: &dyn InvalidationSink, tables: &Tables) {
    let mut items = data.into_iter();
    let is_invalidate = matches!(
        items.next(),
        Some(BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. })
            if data.eq_ignore_ascii_case(b"invalidate")
    );
    if !is_invalidate {
        return;
    }
    if let Some(BytesFrame::Array { data, .. }) = items.next() {
        let keys: Option<Vec<Bytes>> = data
            .into_iter()
            .map(|frame| match frame {
                BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        if let Some(keys) = keys {
            sink.invalidate(&keys);
            return;
        }
    }
    // `null` (the table was flushed), or a push this code cannot read: everything this connection
    // tracked is given up under a new token.
    let own = tables.own.load(Ordering::SeqCst);
    let fresh = new_token();
    tables.own.store(fresh, Ordering::SeqCst);
    if tables
        .current
        .compare_exchange(own, fresh, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        && tables.dead.load(Ordering::SeqCst)
    {
        // Shut meanwhile (it may have read `own` before the new token was current): the
        // connection is dead, so its new token must not stay current either.
        let _ = tables
            .current
            .compare_exchange(fresh, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// The text of an error reply.
pub(crate) fn error_text(frame: &BytesFrame) -> Option<String> {
    match frame {
        BytesFrame::SimpleError { data, .. } => Some(data.to_string()),
        BytesFrame::BlobError { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<Bytes>>);

    impl InvalidationSink for Seen {
        fn invalidate(&self, keys: &[Bytes]) {
            self.0.lock().unwrap().extend_from_slice(keys);
        }
    }

    fn blob(text: &str) -> BytesFrame {
        BytesFrame::BlobString {
            data: Bytes::copy_from_slice(text.as_bytes()),
            attributes: None,
        }
    }

    /// A connection's token `own`, the slot's `current`, and whether the connection is dead.
    fn tables(own: u64, current: u64, dead: bool) -> Tables {
        Tables {
            own: Arc::new(AtomicU64::new(own)),
            current: Arc::new(AtomicU64::new(current)),
            dead: Arc::new(AtomicBool::new(dead)),
        }
    }

    #[test]
    fn pushes_of_keys_reach_the_sink_and_a_null_push_changes_the_token() {
        let seen = Seen::default();
        let tables = tables(7, 7, false);
        let keys = BytesFrame::Array {
            data: vec![blob("a"), blob("b")],
            attributes: None,
        };
        invalidation(vec![blob("invalidate"), keys], &seen, &tables);
        assert_eq!(*seen.0.lock().unwrap(), vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(tables.current.load(Ordering::Relaxed), 7);
        // Another push type is not an invalidation.
        invalidation(vec![blob("message"), blob("x")], &seen, &tables);
        assert_eq!(seen.0.lock().unwrap().len(), 2);
        invalidation(vec![blob("invalidate"), BytesFrame::Null], &seen, &tables);
        let fresh = tables.current.load(Ordering::Relaxed);
        assert_ne!(fresh, 7, "a flushed table gets a new token");
        assert_eq!(tables.own.load(Ordering::Relaxed), fresh);
    }

    #[test]
    fn a_flush_of_a_connection_that_is_no_longer_current_leaves_the_slot_alone() {
        let seen = Seen::default();
        let tables = tables(3, 9, false);
        invalidation(vec![blob("invalidate"), BytesFrame::Null], &seen, &tables);
        assert_eq!(tables.current.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_flush_on_a_connection_shut_meanwhile_leaves_no_token_current() {
        // `shut` ran while the flush was under way: it read the old token, so its clearing missed the
        // new one; the flush sees the connection dead and clears it itself.
        let seen = Seen::default();
        let tables = tables(5, 5, true);
        invalidation(vec![blob("invalidate"), BytesFrame::Null], &seen, &tables);
        assert_eq!(tables.current.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_push_whose_keys_cannot_be_read_counts_as_a_flush() {
        let seen = Seen::default();
        let tables = tables(4, 4, false);
        let keys = BytesFrame::Array {
            data: vec![
                blob("a"),
                BytesFrame::Number {
                    data: 1,
                    attributes: None,
                },
            ],
            attributes: None,
        };
        invalidation(vec![blob("invalidate"), keys], &seen, &tables);
        assert!(seen.0.lock().unwrap().is_empty());
        let now = tables.current.load(Ordering::Relaxed);
        assert!(now != 4 && now != 0, "a new token: {now}");
    }

    #[test]
    fn a_reader_that_ends_clears_its_token() {
        let tables = tables(8, 8, false);
        drop(ReaderExit(&tables));
        assert_eq!(tables.current.load(Ordering::Relaxed), 0);
        assert!(tables.dead.load(Ordering::Relaxed));
    }

    #[test]
    fn stall_timeouts_are_clamped() {
        struct Nothing;
        impl InvalidationSink for Nothing {
            fn invalidate(&self, _: &[Bytes]) {}
        }
        let t = Tracking::new(TrackingMode::Default, Arc::new(Nothing));
        assert_eq!(
            t.clone().stall_timeout(Duration::ZERO).stall_timeout,
            Duration::from_millis(10)
        );
        assert_eq!(
            t.stall_timeout(Duration::MAX).stall_timeout,
            Duration::from_secs(60)
        );
    }
}
