use std::time::Duration;

/// Why a cluster-client call failed.
///
/// Expected outcomes are not errors: a missing key is `Ok(None)`, a `SET NX` that found the key is
/// `Ok(false)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be used (for example no seed node answered in the mode asked for).
    #[error(transparent)]
    Config(#[from] cluster_config::Error),
    /// No seed node answered while connecting.
    #[error("no seed node answered ({tried}); check REDIS_CLUSTER_NODES and that the servers run: {last}")]
    NoSeedReachable {
        /// The seeds tried, comma-separated.
        tried: String,
        /// The last error seen.
        last: String,
    },
    /// A server's TLS certificate was not trusted: signed by a CA the client does not trust, or not
    /// carrying the name it was checked against.
    #[error(
        "the TLS certificate of {node} was not trusted ({detail}); set REDIS_TLS_CA_FILE to the CA that \
         signed it, and REDIS_TLS_SERVER_NAME if it does not carry the node's host"
    )]
    TlsUntrusted {
        /// The node whose certificate was refused.
        node: String,
        /// What the TLS library said.
        detail: String,
    },
    /// A TLS file named by the configuration could not be used (no PEM certificate in it, no usable
    /// key, a key that does not suit the certificate). The message never holds the file's contents.
    #[error("{setting} `{path}`: {problem}")]
    TlsFile {
        /// The environment variable naming the file, such as `REDIS_TLS_CA_FILE`.
        setting: &'static str,
        /// The file's path.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The configuration asks for TLS but this build of cluster-client has no TLS support.
    #[error(
        "the configuration asks for TLS (REDIS_TLS or rediss:// nodes) but cluster-client was built without \
         its `tls` feature; enable the `tls` feature of cluster-client or cache-facade (on by default)"
    )]
    TlsDisabled,
    /// The shard that owns the key has no reachable primary (it is failing over, or down).
    #[error(
        "shard of slot {slot} (slots {ranges}) has no reachable primary: {node} is down; \
         the call failed fast (use CallOptions::wait_for_failover to wait for a promotion)"
    )]
    ShardUnavailable {
        /// The key's slot (0 for standalone and client-sharded modes).
        slot: u16,
        /// The shard's slot ranges, e.g. `0-5460`.
        ranges: String,
        /// The primary that did not answer.
        node: String,
    },
    /// No node serves the key's slot (the cluster has uncovered slots).
    #[error("no node serves slot {slot}; the cluster has uncovered slots (check `CLUSTER INFO`)")]
    SlotUncovered {
        /// The uncovered slot.
        slot: u16,
    },
    /// The call ran out of time.
    #[error(
        "{command} on {node} timed out after {after:?}; raise the command timeout (REDIS_COMMAND_TIMEOUT_MS) or check the node"
    )]
    Timeout {
        /// The command's name.
        command: String,
        /// The node it was sent to last.
        node: String,
        /// How long the call ran.
        after: Duration,
    },
    /// Redirects kept coming past the limit (a slot bouncing between nodes).
    #[error(
        "{command} was redirected {redirects} times for slot {slot}; the cluster is resharding or inconsistent"
    )]
    TooManyRedirects {
        /// The command's name.
        command: String,
        /// The slot.
        slot: u16,
        /// How many redirects were followed.
        redirects: u32,
    },
    /// The key is longer than the configured limit; nothing was sent.
    #[error("key of {len} bytes is over the limit of {max} bytes (REDIS_KEY_MAX_BYTES); nothing was sent")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than the configured limit; nothing was sent.
    #[error(
        "value of {len} bytes is over the limit of {max} bytes (REDIS_VALUE_MAX_BYTES); nothing was sent"
    )]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A node named in a call is not part of the topology.
    #[error("{node} is not a known node; known nodes: {known}")]
    UnknownNode {
        /// The node asked for.
        node: String,
        /// The nodes this client knows.
        known: String,
    },
    /// The server answered with an error (wrong type, script error, ACL denial, ...).
    #[error("{node} answered {command} with an error: {message}")]
    Server {
        /// The node.
        node: String,
        /// The command's name.
        command: String,
        /// The server's error text.
        message: String,
    },
    /// The connection to a node failed in a way that is not a timeout.
    #[error("{command} on {node} failed: {message}")]
    Connection {
        /// The node.
        node: String,
        /// The command's name.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// A reply had an unexpected shape.
    #[error("unexpected reply from {node} to {command}: {detail}")]
    Reply {
        /// The node.
        node: String,
        /// The command's name.
        command: String,
        /// What was unexpected.
        detail: String,
    },
    /// A duration given to a call is out of the range this client accepts; nothing was sent.
    #[error("{what} of {value:?} is out of range: {allowed}; nothing was sent")]
    InvalidDuration {
        /// Which duration, e.g. `CallOptions::timeout`.
        what: &'static str,
        /// The duration given.
        value: Duration,
        /// The accepted range, and what to do instead.
        allowed: String,
    },
    /// A write was acknowledged by a primary that a failover had already replaced (it was paused or
    /// cut off, and executed the write when it came back, before it learned of the promotion). It
    /// rejoins as a replica of the new primary and discards the write, so the write may be lost: write
    /// again (or wait for replicas with `WAIT`).
    #[error(
        "{command} was acknowledged by {node} after a failover had replaced it as primary; the write may be \
         lost when it rejoins as a replica: write again"
    )]
    WriteUncertain {
        /// The command's name.
        command: String,
        /// The replaced primary that acknowledged it.
        node: String,
    },
    /// A transient error (TRYAGAIN, CLUSTERDOWN, LOADING, a connection reset) persisted through every
    /// retry the configuration allows. Nothing is wrong with the call itself: retry later, or allow
    /// more retries.
    #[error(
        "{command} on {node} still failed after {retries} retries: {message}; allow more with \
         {setting} (0 means no retry) or wait and call again"
    )]
    RetriesExhausted {
        /// The command's name.
        command: String,
        /// The node that answered last.
        node: String,
        /// Retries made (the configured limit).
        retries: u32,
        /// The last error's text.
        message: String,
        /// The setting that bounds these retries: `REDIS_MAX_RETRIES`, or `REDIS_MAX_RETRIES_READ_KEY`
        /// for a read of one key.
        setting: &'static str,
    },
    /// A reshard was asked of a deployment whose keys the client does not place (a Redis Cluster or one
    /// standalone server).
    #[error(
        "a reshard needs a client-sharded deployment (ketama or key-range over standalone nodes), but this \
         client is connected to {deployment}; use the rebalance crate's cluster functions instead"
    )]
    NotSharded {
        /// What the client is connected to.
        deployment: String,
    },
    /// A reshard was begun while another one is in progress.
    #[error(
        "a reshard to {target} is already in progress; finish or abort it first \
         (ClusterClient::reshard_in_progress gives its handle)"
    )]
    ReshardInProgress {
        /// The nodes of the reshard in progress, comma-separated.
        target: String,
    },
    /// The reshard this handle stood for was already finished or aborted (through another handle).
    #[error("the reshard was already finished or aborted; begin a new one if the ring should change again")]
    ReshardOver,
    /// The new node list cannot form a ring (empty, a node twice, a weight of 0 or too small).
    #[error("the new node list cannot be used: {detail}")]
    InvalidRing {
        /// What is wrong, from the sharding crate.
        detail: String,
    },
    /// A node new to the ring did not connect in time, so the ring was not switched.
    #[error(
        "node {node} did not connect within {after:?}, so the ring was not switched; start it or fix its \
         address, then try again"
    )]
    NodeUnreachable {
        /// The node.
        node: String,
        /// How long the client waited (the connect timeout).
        after: Duration,
    },
    /// The client was closed.
    #[error("the client was closed")]
    Closed,
    /// Key tracking was enabled twice on one client (clones share it).
    #[error(
        "key tracking is already enabled on this client (one near cache per client); build another \
         ClusterClient for a second near cache, or share the first"
    )]
    TrackingAlreadyEnabled,
    /// Sentinel mode: no sentinel answered which node is the primary.
    #[error(
        "no sentinel named the primary of `{master}` ({tried}); check REDIS_SENTINEL_NODES, the sentinels' \
         credentials (REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD) and that the sentinels run: {last}"
    )]
    NoSentinelReachable {
        /// The master name asked for.
        master: String,
        /// The sentinels tried, comma-separated.
        tried: String,
        /// The last error seen.
        last: String,
    },
    /// Sentinel mode: the sentinels that answered monitor no master of this name.
    #[error(
        "the sentinels ({answered}) monitor no master named `{master}`; set REDIS_SENTINEL_MASTER to the name \
         in their `sentinel monitor <name> ...` line (`SENTINEL MASTERS` lists them)"
    )]
    UnknownSentinelMaster {
        /// The master name asked for (REDIS_SENTINEL_MASTER).
        master: String,
        /// The sentinels that answered, comma-separated.
        answered: String,
    },
    /// Sentinel mode: the node the sentinels name as the primary does not say it is one (`ROLE`), as
    /// during a failover the sentinels have not finished; writes are not routed there.
    #[error(
        "the sentinels name {node} as the primary of `{master}`, but it answers ROLE with `{role}`; a failover is \
         probably under way, retry shortly"
    )]
    SentinelPrimaryUnconfirmed {
        /// The master name.
        master: String,
        /// The node the sentinels named.
        node: String,
        /// The role the node reported.
        role: String,
    },
    /// A [`Value`](crate::Value) could not be converted to the type asked for (see
    /// [`FromValue`](crate::FromValue)); ask for a type that fits the command's reply, or for `Value`.
    #[error("a reply of {found} cannot be read as {expected}")]
    Conversion {
        /// What the type asked for accepts.
        expected: &'static str,
        /// What the reply was (its kind, never its content).
        found: &'static str,
    },
}

/// A key as text for messages and reports: printable ASCII kept, other bytes escaped, long keys cut, so
/// that a binary or huge key never floods a log line.
pub fn printable_key(key: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = &key[..key.len().min(MAX)];
    let mut text = shown.escape_ascii().to_string();
    if key.len() > MAX {
        text.push_str(&format!("… ({} bytes)", key.len()));
    }
    text
}

impl Error {
    /// Whether the call may succeed if retried later (node down, timeout, failover in progress, a write
    /// acknowledged by a replaced primary).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ShardUnavailable { .. }
                | Error::Timeout { .. }
                | Error::Connection { .. }
                | Error::SlotUncovered { .. }
                | Error::TooManyRedirects { .. }
                | Error::WriteUncertain { .. }
                | Error::RetriesExhausted { .. }
                | Error::NoSentinelReachable { .. }
                | Error::SentinelPrimaryUnconfirmed { .. }
        )
    }
}
