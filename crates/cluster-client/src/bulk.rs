//! The connection routed calls and batches travel on: one per node, written and read by this crate.
//!
//! Through fred, every command costs a command struct, a frame, a router message and a reply channel,
//! and fred flushes its socket after every custom command (scripts). Profiled with `cargo xtask load`,
//! a batch cost about 3.4 µs of CPU per key (`get_many` of 100 keys read 0.36× the keys/s of
//! `redis-benchmark --cluster -P 16` on the same cluster), and a versioned write's script call a
//! `writev` of its own. Here a request (one command, or a node's share of a batch) is encoded into one
//! buffer with redis-protocol's encoder (borrowed frames: the keys and values are copied once, into the
//! buffer), a writer task writes the requests queued meanwhile in one write, and a reader task decodes
//! the replies in place from one read buffer with redis-protocol's zero-copy decoder (a value is a
//! slice of that buffer) and hands each request its own, in order.
//!
//! The writer yields once after it wakes, before it gathers: every task ready to run then queues its
//! request first, and they share one write. Measured with `cargo xtask load --workloads get,set,mixed
//! --clients ours,fred` (50 tasks, 2 cores): without the yield, the writer woke for nearly every
//! request and wrote it alone, and single-key calls ran at 0.7–0.8× fred's cluster client; with it,
//! at 1.2–1.6× and with about 40% less CPU per call than fred (docs/RESULTS.md).
//!
//! Each node has `pool_size` such connections (a [`BulkSlot`]), each opened on first use and filled in
//! order: a request takes the first with fewer than [`LANE_DEPTH`] requests in flight, so that 50 tasks
//! share one connection per node and more load overflows to the next. It speaks RESP2, sends `AUTH` when credentials are configured, and uses
//! TLS when the nodes do (the same rustls client configuration as fred's connections). fred's
//! connections of the node stay open beside it: their state says whether the node is up, and they carry
//! what this one does not (replica reads, whose connection sends `READONLY`; `ASKING` and its command;
//! `WAIT`; probes; custom commands such as `EVAL` with a script's source).
//!
//! A connection that fails ends every request waiting on it with a connection error (the batch module
//! retries those keys through the routed single-key path; the routing loop sends a write again only if
//! it never left, see [`NOT_SENT`]). A request that times out detaches the connection from its node:
//! the next request opens a new one, while the requests already on the old one keep waiting for their
//! replies within their own deadlines (a node that was only slow still answers them), and the old
//! connection closes when the last of them is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use fred::error::{Error as FredError, ErrorKind};
use fred::prelude::Value;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use cluster_config::{ClusterConfig, NodeAddr, Password};

use crate::node::LANE_DEPTH;

/// In the message of an error for a request that never left this process (its connection could not
/// be opened, or had ended before the request was queued): the routing loop may send such a write
/// again.
pub(crate) const NOT_SENT: &str = "not sent on the batch connection";

/// Writes are gathered up to this size before they go out.
const WRITE_GATHER_BYTES: usize = 256 * 1024;

/// The read buffer grows by this much when it runs low. Under 64 KiB on purpose: replies point into
/// the buffer, so a new one is allocated while they live, and glibc's `free` of a block of 64 KiB or
/// more consolidates the allocator's fast bins: 9.6% of one perf profile of the batch path
/// (`xtask load --workloads del-many --clients ours`), none with this size.
pub(crate) const READ_CHUNK: usize = 60 * 1024;

/// A node's connections, each opened on first use: `pool_size` of them, filled in order (a request
/// takes the first with fewer than [`LANE_DEPTH`] requests in flight, else the least busy).
pub(crate) struct BulkSlot {
    settings: Settings,
    members: Vec<Member>,
    closed: AtomicBool,
}

/// One connection of the pool.
struct Member {
    conn: ArcSwapOption<BulkConn>,
    /// Held while the connection is being opened, so that concurrent requests open one, not several.
    opening: tokio::sync::Mutex<()>,
    /// Requests in flight on this member.
    busy: AtomicUsize,
    /// Requests this member has carried.
    calls: AtomicU64,
}

/// A request's place on a member: leaves it when dropped (also when the caller gives up).
struct InFlight<'a>(&'a Member);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for BulkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkSlot")
            .field("node", &self.settings.addr)
            .finish_non_exhaustive()
    }
}

/// What opening a connection needs; the password never leaves `AUTH`.
pub(crate) struct Settings {
    addr: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<Password>,
    #[cfg(feature = "tls")]
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

impl BulkSlot {
    /// The slot of the node at `node`; nothing is opened yet.
    pub(crate) fn new(node: &NodeAddr, config: &ClusterConfig) -> Result<BulkSlot, crate::Error> {
        let settings = Settings {
            addr: node.to_string(),
            host: node.host().to_owned(),
            port: node.port(),
            username: config.username().map(str::to_owned),
            password: config.password().cloned(),
            #[cfg(feature = "tls")]
            tls: match config.tls_config() {
                Some(tls) => {
                    let client = crate::tls::client_config(tls)?;
                    let name = tls.server_name().unwrap_or(node.host()).to_owned();
                    let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                        crate::Error::Connection {
                            node: node.to_string(),
                            command: "connect".into(),
                            message: format!("TLS server name {name:?} is not valid: {e}"),
                        }
                    })?;
                    Some((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
                }
                None => None,
            },
        };
        let members = (0..config.pool_size().max(1))
            .map(|_| Member {
                conn: ArcSwapOption::empty(),
                opening: tokio::sync::Mutex::new(()),
                busy: AtomicUsize::new(0),
                calls: AtomicU64::new(0),
            })
            .collect();
        Ok(BulkSlot {
            settings,
            members,
            closed: AtomicBool::new(false),
        })
    }

    /// How to open a connection to the node (the tracking connection opens its own with these).
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Requests carried by each connection of the pool, in fill order.
    pub(crate) fn calls(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|m| m.calls.load(Ordering::Relaxed))
            .collect()
    }

    /// The member for the next request: the first with room, else the least busy.
    fn member(&self) -> &Member {
        let mut best = &self.members[0];
        for member in &self.members {
            let busy = member.busy.load(Ordering::Relaxed);
            if busy < LANE_DEPTH {
                return member;
            }
            if busy < best.busy.load(Ordering::Relaxed) {
                best = member;
            }
        }
        best
    }

    /// Sends `request` (`count` encoded commands) and returns their `count` replies, in order, within
    /// `timeout` (connecting included). A timeout or a lost connection fails every command of the
    /// request with the same error, and closes the connection.
    pub(crate) async fn call(
        &self,
        request: Bytes,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<BytesFrame>, FredError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let member = self.member();
        member.busy.fetch_add(1, Ordering::Relaxed);
        member.calls.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(member);
        let conn = match tokio::time::timeout_at(deadline, self.connection(member)).await {
            Ok(conn) => conn?,
            Err(_) => return Err(FredError::new(ErrorKind::Timeout, "connecting timed out")),
        };
        match tokio::time::timeout_at(deadline, conn.call(request, count)).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(sent)) => {
                conn.dead.store(true, Ordering::Release);
                member.detach(&conn);
                Err(FredError::new(
                    ErrorKind::IO,
                    if sent {
                        "the connection closed before the replies arrived".to_string()
                    } else {
                        format!("the connection had closed: {NOT_SENT}")
                    },
                ))
            }
            Err(_) => {
                // The connection may be stuck (a stopped node): the next request gets a fresh one.
                member.detach(&conn);
                Err(FredError::new(ErrorKind::Timeout, "request timed out"))
            }
        }
    }

    /// Closes the connections, if open; later calls fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for member in &self.members {
            member.conn.store(None);
        }
    }

    async fn connection(&self, member: &Member) -> Result<Arc<BulkConn>, FredError> {
        if let Some(conn) = member.live() {
            return Ok(conn);
        }
        let _opening = member.opening.lock().await;
        if let Some(conn) = member.live() {
            return Ok(conn);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(FredError::new(
                ErrorKind::IO,
                format!("the node's connections are closed: {NOT_SENT}"),
            ));
        }
        let conn = Arc::new(self.settings.open().await.map_err(|e| {
            let kind = e.kind().clone();
            FredError::new(kind, format!("{}: {NOT_SENT}", e.details()))
        })?);
        member.conn.store(Some(conn.clone()));
        Ok(conn)
    }
}

impl Member {
    /// New requests no longer take `conn`; those already on it keep it open until they are done.
    fn detach(&self, conn: &Arc<BulkConn>) {
        let current = self.conn.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            self.conn.store(None);
        }
    }

    fn live(&self) -> Option<Arc<BulkConn>> {
        self.conn
            .load_full()
            .filter(|conn| !conn.dead.load(Ordering::Acquire))
    }
}

/// A connection's byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Settings {
    async fn open(&self) -> Result<BulkConn, FredError> {
        let stream = self.connect().await?;
        self.start(stream).await
    }

    /// `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The configured user and password, for a connection that authenticates its own way (`HELLO`).
    pub(crate) fn credentials(&self) -> (Option<&str>, Option<&Password>) {
        (self.username.as_deref(), self.password.as_ref())
    }

    /// A TCP connection to the node (`TCP_NODELAY`), with TLS when the nodes use it.
    pub(crate) async fn connect(&self) -> Result<Box<dyn Io>, FredError> {
        let io =
            |e: std::io::Error| FredError::new(ErrorKind::IO, format!("connecting to {}: {e}", self.addr));
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        #[cfg(feature = "tls")]
        if let Some((connector, name)) = &self.tls {
            let stream = connector.connect(name.clone(), tcp).await.map_err(io)?;
            return Ok(Box::new(stream));
        }
        Ok(Box::new(tcp))
    }

    /// Authenticates, then starts the writer and reader tasks.
    async fn start<S>(&self, stream: S) -> Result<BulkConn, FredError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        if let Some(password) = &self.password {
            let mut auth = BytesMut::new();
            let mut frames = vec![BorrowedFrame::BulkString(b"AUTH")];
            if let Some(user) = &self.username {
                frames.push(BorrowedFrame::BulkString(user.as_bytes()));
            }
            frames.push(BorrowedFrame::BulkString(password.expose().as_bytes()));
            encode(&mut auth, &frames);
            let io = |e: std::io::Error| FredError::new(ErrorKind::IO, format!("AUTH on {}: {e}", self.addr));
            write.write_all(&auth).await.map_err(io)?;
            loop {
                if let Some((frame, _, _)) = decode_bytes_mut(&mut buf)
                    .map_err(|e| FredError::new(ErrorKind::Protocol, e.to_string()))?
                {
                    frame_value(frame)?;
                    break;
                }
                if read.read_buf(&mut buf).await.map_err(io)? == 0 {
                    return Err(FredError::new(
                        ErrorKind::IO,
                        format!("AUTH on {}: the connection closed", self.addr),
                    ));
                }
            }
        }
        let dead = Arc::new(AtomicBool::new(false));
        let (requests, requests_rx) = mpsc::unbounded_channel::<Request<BytesFrame>>();
        let (pending, pending_rx) = mpsc::unbounded_channel::<Pending<BytesFrame>>();
        let reader = tokio::spawn(read_loop(read, buf, pending_rx, dead.clone())).abort_handle();
        let writer = tokio::spawn(write_loop(
            write,
            requests_rx,
            pending,
            dead.clone(),
            reader.clone(),
        ))
        .abort_handle();
        Ok(BulkConn {
            requests,
            dead,
            tasks: [reader, writer],
        })
    }
}

/// One open connection: its writer and reader tasks end when it is dropped.
struct BulkConn {
    requests: mpsc::UnboundedSender<Request<BytesFrame>>,
    dead: Arc<AtomicBool>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for BulkConn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl BulkConn {
    /// The replies; `Err(sent)` when the connection ended first, where `sent` says whether the
    /// request had been queued for the writer (and may have been written).
    async fn call(&self, bytes: Bytes, count: usize) -> Result<Vec<BytesFrame>, bool> {
        let (reply, replies) = oneshot::channel();
        if self.dead.load(Ordering::Acquire) {
            return Err(false);
        }
        self.requests
            .send(Request { bytes, count, reply })
            .map_err(|_| false)?;
        replies.await.map_err(|_| true)
    }
}

/// A request for a connection's writer: encoded commands, how many, and who waits for the replies.
pub(crate) struct Request<F> {
    pub(crate) bytes: Bytes,
    pub(crate) count: usize,
    pub(crate) reply: oneshot::Sender<Vec<F>>,
}

impl<F> Request<F> {
    /// The bytes to write, and what waits for their replies.
    fn split(self) -> (Bytes, Pending<F>) {
        let waiting = Pending {
            count: self.count,
            reply: self.reply,
        };
        (self.bytes, waiting)
    }
}

/// A request written (or about to be), waiting for its replies.
pub(crate) struct Pending<F> {
    count: usize,
    reply: oneshot::Sender<Vec<F>>,
}

/// Hands each written request its replies, in order (a connection's reader owns one).
pub(crate) struct Dispatch<F> {
    pending: mpsc::UnboundedReceiver<Pending<F>>,
    current: Option<(Vec<F>, Pending<F>)>,
}

impl<F> Dispatch<F> {
    pub(crate) fn new(pending: mpsc::UnboundedReceiver<Pending<F>>) -> Dispatch<F> {
        Dispatch {
            pending,
            current: None,
        }
    }

    /// Gives `frame` to the request waiting for it; `false` for a reply nobody asked for (the
    /// connection is then out of step and must end).
    pub(crate) fn deliver(&mut self, frame: F) -> bool {
        let (replies, waiting) = match &mut self.current {
            Some(entry) => entry,
            None => match self.pending.try_recv() {
                Ok(next) => self.current.insert((Vec::with_capacity(next.count), next)),
                Err(_) => return false,
            },
        };
        replies.push(frame);
        if replies.len() == waiting.count
            && let Some((replies, waiting)) = self.current.take()
        {
            // A caller that gave up (timed out) no longer listens: nothing to do.
            let _ = waiting.reply.send(replies);
        }
        true
    }
}

/// Writes requests in order, gathering those queued meanwhile into one write. Each request is handed
/// to the reader before its bytes go out, so its replies always find it.
pub(crate) async fn write_loop<W: AsyncWrite, F>(
    write: W,
    mut requests: mpsc::UnboundedReceiver<Request<F>>,
    pending: mpsc::UnboundedSender<Pending<F>>,
    dead: Arc<AtomicBool>,
    reader: tokio::task::AbortHandle,
) {
    let mut write = std::pin::pin!(write);
    let mut gathered = BytesMut::new();
    while let Some(first) = requests.recv().await {
        // Yield once, so that every task ready to run can queue its request too: they then share
        // this write (see the module docs).
        tokio::task::yield_now().await;
        let (mut out, waiting) = first.split();
        if pending.send(waiting).is_err() {
            break;
        }
        while gathered.len().max(out.len()) < WRITE_GATHER_BYTES {
            let Ok(next) = requests.try_recv() else { break };
            let (bytes, waiting) = next.split();
            if pending.send(waiting).is_err() {
                break;
            }
            if gathered.is_empty() {
                gathered.extend_from_slice(&out);
            }
            gathered.extend_from_slice(&bytes);
        }
        if !gathered.is_empty() {
            out = gathered.split().freeze();
        }
        if write.write_all(&out).await.is_err() {
            break;
        }
    }
    dead.store(true, Ordering::Release);
    // Replies to what was written may never come: end the reader, which fails its waiting requests.
    reader.abort();
}

/// Decodes replies and hands each request its own, in order. A reply nobody asked for, a protocol
/// error or the end of the stream ends the connection.
async fn read_loop<R: AsyncRead>(
    read: R,
    mut buf: BytesMut,
    pending: mpsc::UnboundedReceiver<Pending<BytesFrame>>,
    dead: Arc<AtomicBool>,
) {
    let mut read = std::pin::pin!(read);
    let mut dispatch = Dispatch::new(pending);
    'connection: loop {
        loop {
            let frame = match decode_bytes_mut(&mut buf) {
                Ok(Some((frame, _, _))) => frame,
                Ok(None) => break,
                Err(_) => break 'connection,
            };
            if !dispatch.deliver(frame) {
                break 'connection;
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    dead.store(true, Ordering::Release);
}

/// Appends one command (an array of bulk strings) to `buf`.
pub(crate) fn encode(buf: &mut BytesMut, args: &[BorrowedFrame<'_>]) {
    // Encoding an array of bulk strings into a growable buffer cannot fail.
    let _ = extend_encode_borrowed(buf, &BorrowedFrame::Array(args), false);
}

/// A reply as fred's value, or the server's error as fred would have reported it.
pub(crate) fn frame_value(frame: BytesFrame) -> Result<Value, FredError> {
    Ok(match frame {
        BytesFrame::BulkString(bytes) => Value::Bytes(bytes),
        BytesFrame::SimpleString(bytes) => match fred::bytes_utils::Str::from_inner(bytes.clone()) {
            Ok(text) => Value::String(text),
            Err(_) => Value::Bytes(bytes),
        },
        BytesFrame::Integer(i) => Value::Integer(i),
        BytesFrame::Null => Value::Null,
        BytesFrame::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| frame_value(item).unwrap_or_else(|e| Value::String(e.details().into())))
                .collect(),
        ),
        BytesFrame::Error(message) => return Err(server_error(&message)),
    })
}

/// A reply frame as this crate's [`Value`](crate::Value), without going through fred's: an error
/// frame is the error fred would give; an error nested in an array becomes its text.
pub(crate) fn frame_to_value(frame: BytesFrame) -> Result<crate::Value, FredError> {
    Ok(match frame {
        BytesFrame::BulkString(bytes) | BytesFrame::SimpleString(bytes) => crate::Value::Bytes(bytes),
        BytesFrame::Integer(i) => crate::Value::Integer(i),
        BytesFrame::Null => crate::Value::Null,
        BytesFrame::Array(items) => crate::Value::Array(
            items
                .into_iter()
                .map(|item| {
                    frame_to_value(item)
                        .unwrap_or_else(|e| crate::Value::Bytes(Bytes::from(e.details().to_owned())))
                })
                .collect(),
        ),
        BytesFrame::Error(message) => return Err(server_error(&message)),
    })
}

/// The kind fred gives a server error (its `pretty_error`), so that the failure classification
/// treats both paths alike.
fn server_error(message: &str) -> FredError {
    let kind = match message.split_whitespace().next().unwrap_or("") {
        "MOVED" | "ASK" | "CLUSTERDOWN" => ErrorKind::Cluster,
        "NOAUTH" | "WRONGPASS" => ErrorKind::Auth,
        "WRONGTYPE" => ErrorKind::InvalidArgument,
        _ => ErrorKind::Unknown,
    };
    FredError::new(kind, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut buf = BytesMut::new();
        encode(
            &mut buf,
            &[
                BorrowedFrame::BulkString(b"GET"),
                BorrowedFrame::BulkString(b"k\r\n"),
            ],
        );
        assert_eq!(&buf[..], b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    #[test]
    fn server_errors_keep_fred_kinds() {
        let moved = frame_value(BytesFrame::Error("MOVED 3999 127.0.0.1:7001".into())).unwrap_err();
        assert!(moved.is_moved(), "{moved:?}");
        let ask = frame_value(BytesFrame::Error("ASK 3999 127.0.0.1:7001".into())).unwrap_err();
        assert!(ask.is_ask(), "{ask:?}");
        let other = frame_value(BytesFrame::Error("NOSCRIPT No matching script".into())).unwrap_err();
        assert_eq!(other.details(), "NOSCRIPT No matching script");
        assert!(matches!(
            frame_value(BytesFrame::SimpleString(Bytes::from_static(b"OK"))),
            Ok(Value::String(s)) if &*s == "OK"
        ));
    }
}
