//! Versioned reads and writes: last-write-wins decided on the server by one Lua script.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, Script};

use crate::envelope::{Envelope, HEADER_LEN};
use crate::error::{Error, printable_key};
use crate::history::SyncHistory;
use crate::journal::{Journal, JournalConfig, JournalEntry, ReplicationMark, min_set_len};
use crate::report::{CopyRole, KeyReport, NodeCopy};
use crate::script::{
    LWW_MANY_SCRIPT, LWW_SCRIPT, ScriptOutcome, WriteMode, parse_existed, parse_many, parse_mark,
    parse_reply, reply_code,
};
use crate::state::{self, KeyState, Observed, ReplicaCopy};
use crate::version::{Clock, Version, WriterId};

/// Settings of a [`Versioned`] handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsistencyConfig {
    /// How long a delete's tombstone stays, refusing older sets. A set older than the delete that
    /// arrives after this is accepted (the key comes back), so it should exceed the slowest loader.
    pub tombstone_ttl: Duration,
    /// The write journal for failover repair; `None` keeps no journal (and repairs nothing).
    pub journal: Option<JournalConfig>,
    /// Repairs kept in the sync history.
    pub history_capacity: usize,
    /// This writer's id; `None` picks a random one.
    pub writer: Option<WriterId>,
    /// How long a check waits for a replica to catch up with its primary before calling an older copy
    /// lag rather than divergence.
    pub replica_catch_up: Duration,
    /// How far ahead of this host's wall clock a version may lie. The process clock adopts a newer
    /// version it meets (so that this writer's next write wins over it) only within this bound; a
    /// write that meets a version further ahead, or that carries one, fails with
    /// [`Error::ClockSkew`] instead of dragging the clock along. Default 1 minute: well above the
    /// skew of clocks kept by NTP, far below what a broken clock produces.
    pub max_clock_drift: Duration,
}

/// The longest `tombstone_ttl` accepted (a year): beyond it the server's expiry arithmetic gets
/// close to overflowing, and a tombstone that outlives a year is a delete that never expires.
pub const MAX_TOMBSTONE_TTL: Duration = Duration::from_secs(365 * 24 * 3_600);
/// The longest `replica_catch_up` accepted: a check blocks this long per replica at most.
pub const MAX_REPLICA_CATCH_UP: Duration = Duration::from_secs(60);
/// The largest `max_clock_drift` accepted.
pub const MAX_CLOCK_DRIFT: Duration = Duration::from_secs(24 * 3_600);
/// The longest `WAIT` timeout a write accepts. `WAIT` blocks a connection; longer waits belong in a
/// loop of shorter ones.
pub const MAX_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks that `value` lies in `min..=max`.
pub(crate) fn check_duration(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
    hint: &'static str,
) -> Result<(), Error> {
    if value < min || value > max {
        return Err(Error::DurationOutOfRange {
            setting,
            value,
            min,
            max,
            hint,
        });
    }
    Ok(())
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        ConsistencyConfig {
            tombstone_ttl: Duration::from_secs(60),
            journal: Some(JournalConfig::default()),
            history_capacity: 1_000,
            writer: None,
            replica_catch_up: Duration::from_secs(1),
            max_clock_drift: Duration::from_secs(60),
        }
    }
}

impl ConsistencyConfig {
    /// Sets the tombstone TTL.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// Sets (or with `None`, turns off) the write journal.
    pub fn journal(mut self, journal: Option<JournalConfig>) -> Self {
        self.journal = journal;
        self
    }

    /// Sets how many repairs the sync history keeps.
    pub fn history_capacity(mut self, events: usize) -> Self {
        self.history_capacity = events;
        self
    }

    /// Sets this writer's id.
    pub fn writer(mut self, writer: WriterId) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Sets how long checks wait for replicas to catch up.
    pub fn replica_catch_up(mut self, wait: Duration) -> Self {
        self.replica_catch_up = wait;
        self
    }

    /// Sets how far ahead of the wall clock a version may lie.
    pub fn max_clock_drift(mut self, drift: Duration) -> Self {
        self.max_clock_drift = drift;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_duration(
            "tombstone_ttl",
            self.tombstone_ttl,
            Duration::from_millis(1),
            MAX_TOMBSTONE_TTL,
            "set it longer than your slowest loader takes and than the journal's max_age (default 60 s)",
        )?;
        check_duration(
            "replica_catch_up",
            self.replica_catch_up,
            Duration::ZERO,
            MAX_REPLICA_CATCH_UP,
            "a second is plenty for a healthy replica (default 1 s)",
        )?;
        check_duration(
            "max_clock_drift",
            self.max_clock_drift,
            Duration::from_millis(1),
            MAX_CLOCK_DRIFT,
            "set it above the clock skew between your hosts (default 1 min)",
        )?;
        if self.history_capacity == 0 {
            return Err(Error::Config(
                "history_capacity is 0; keep at least 1 event".into(),
            ));
        }
        if let Some(journal) = &self.journal {
            journal.validate()?;
            // A repair rewrites what the journal remembers; a delete must still stand as a tombstone
            // for as long, or a repair could not tell a deleted key from a lost one.
            if self.tombstone_ttl < journal.max_age {
                return Err(Error::TombstoneShorterThanJournal {
                    tombstone_ttl: self.tombstone_ttl,
                    journal_max_age: journal.max_age,
                });
            }
        }
        Ok(())
    }
}

/// Options of one versioned write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// After a successful write, `WAIT replicas timeout`: block until that many replicas acknowledged
    /// it, or the timeout passed. The outcome says how many did. The timeout must lie in
    /// 1 ms..=[`MAX_WAIT_TIMEOUT`] (checked before anything is sent): Redis reads `WAIT n 0` as
    /// "block forever", which a cache write must never do.
    pub wait: Option<(u32, Duration)>,
}

impl WriteOptions {
    /// Waits for `replicas` acknowledgements, at most `timeout`.
    pub fn wait(replicas: u32, timeout: Duration) -> WriteOptions {
        WriteOptions {
            wait: Some((replicas, timeout)),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        match self.wait {
            Some((_, timeout)) => check_duration(
                "WriteOptions::wait timeout",
                timeout,
                Duration::from_millis(1),
                MAX_WAIT_TIMEOUT,
                "WAIT with 0 blocks forever in Redis; wait at most a few seconds (e.g. 1 s)",
            ),
            None => Ok(()),
        }
    }
}

/// What a versioned delete did, and whether the key held a live value (anything but a tombstone)
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// What the delete did.
    pub outcome: WriteOutcome,
    /// Whether a live value was stored before (for a refused delete: whether the newer stored
    /// version is a value rather than a delete).
    pub existed: bool,
}

/// Keys one [`LWW_MANY_SCRIPT`] execution decides at most: enough to spread a call's cost over many
/// keys, few enough that the node, which runs nothing else meanwhile, stays responsive (the
/// execution takes well under a millisecond on loopback; see docs/RESULTS.md).
pub(crate) const GROUP_KEYS: usize = 64;

/// A group call's error as one of its keys gets it: a copy when the call may have run (it timed out,
/// or a replaced primary acknowledged it), as a single write would say; `None` when the single-key
/// path should send the key again (the call never ran, or ran nowhere it may).
fn key_error(error: &cluster_client::Error) -> Option<cluster_client::Error> {
    use cluster_client::Error as E;
    match error {
        E::Timeout { command, node, after } => Some(E::Timeout {
            command: command.clone(),
            node: node.clone(),
            after: *after,
        }),
        E::WriteUncertain { command, node } => Some(E::WriteUncertain {
            command: command.clone(),
            node: node.clone(),
        }),
        _ => None,
    }
}

/// A write ready for the script: the envelope to store, its TTL, and its journal entry.
struct Prepared {
    stored: Bytes,
    ttl: Option<Duration>,
    entry: JournalEntry,
}

/// What a versioned write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write is stored.
    Written {
        /// Its version.
        version: Version,
        /// Replicas that acknowledged it, if the write asked to wait.
        replicas_acked: Option<u32>,
    },
    /// A newer or equal version was already stored; nothing changed.
    Stale {
        /// The stored version.
        current: Version,
        /// Whether the stored version is a delete.
        deleted: bool,
    },
}

impl WriteOutcome {
    /// Whether the write is stored.
    pub fn is_written(&self) -> bool {
        matches!(self, WriteOutcome::Written { .. })
    }
}

/// A value read through [`Versioned::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionedValue {
    /// A value with its version.
    Versioned {
        /// Its version.
        version: Version,
        /// The caller's bytes.
        value: Bytes,
    },
    /// A value written by a plain client, without a version.
    Unversioned {
        /// The stored bytes.
        value: Bytes,
    },
}

impl VersionedValue {
    /// The value's bytes.
    pub fn value(&self) -> &Bytes {
        match self {
            VersionedValue::Versioned { value, .. } | VersionedValue::Unversioned { value } => value,
        }
    }

    /// The version, unless the value is unversioned.
    pub fn version(&self) -> Option<Version> {
        match self {
            VersionedValue::Versioned { version, .. } => Some(*version),
            VersionedValue::Unversioned { .. } => None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) client: ClusterClient,
    pub(crate) script: Script,
    /// [`LWW_MANY_SCRIPT`].
    pub(crate) many_script: Script,
    pub(crate) clock: &'static Clock,
    pub(crate) writer: WriterId,
    pub(crate) journal: Option<Journal>,
    pub(crate) history: SyncHistory,
    pub(crate) config: ConsistencyConfig,
    /// Single writes waiting for the next group execution (see [`Versioned::write`]).
    pub(crate) queued: std::sync::Mutex<Queued>,
    /// Single writes in flight, queued or not.
    pub(crate) single_writes: std::sync::atomic::AtomicUsize,
}

/// A single write waiting to be decided, and where its result goes.
type QueuedWrite = (
    Prepared,
    tokio::sync::oneshot::Sender<Result<(WriteOutcome, bool), Error>>,
);

impl Inner {
    /// The queued single writes (a panic elsewhere cannot leave them unusable: nothing here breaks an
    /// invariant midway).
    fn lock_queued(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The single writes waiting, and whether a task is sending them.
#[derive(Default)]
pub(crate) struct Queued {
    writes: Vec<QueuedWrite>,
    sending: bool,
}

/// Versioned last-write-wins reads and writes over a [`ClusterClient`], with the write journal, the
/// sync history, checks, audits and failover repair. Cheap to clone.
#[derive(Clone)]
pub struct Versioned {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Versioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versioned")
            .field("writer", &self.inner.writer)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Versioned {
    /// A handle writing through `client`; fails if `config` is out of range.
    pub fn new(client: ClusterClient, config: ConsistencyConfig) -> Result<Versioned, Error> {
        config.validate()?;
        let journal = config.journal.clone().map(Journal::new).transpose()?;
        Ok(Versioned {
            inner: Arc::new(Inner {
                client,
                script: Script::new(LWW_SCRIPT),
                many_script: Script::new(LWW_MANY_SCRIPT),
                clock: Clock::global(),
                writer: config.writer.unwrap_or_else(process_writer),
                journal,
                history: SyncHistory::new(config.history_capacity),
                config,
                queued: std::sync::Mutex::new(Queued::default()),
                single_writes: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// The client underneath.
    pub fn client(&self) -> &ClusterClient {
        &self.inner.client
    }

    /// This handle's writer id.
    pub fn writer(&self) -> WriterId {
        self.inner.writer
    }

    /// The settings.
    pub fn config(&self) -> &ConsistencyConfig {
        &self.inner.config
    }

    /// The write journal, if kept.
    pub fn journal(&self) -> Option<&Journal> {
        self.inner.journal.as_ref()
    }

    /// Every repair made through this handle (failover repairs, audit repairs): the spec's
    /// `getSyncHistory` is `history().recent(n)`.
    pub fn history(&self) -> &SyncHistory {
        &self.inner.history
    }

    /// A new version from the process clock and this writer's id.
    pub fn next_version(&self) -> Version {
        Version::new(self.inner.clock.now(), self.inner.writer)
    }

    /// Stores `value` under a new version, unless a newer version is stored; `ttl` is applied in the
    /// same atomic step.
    pub async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        options: WriteOptions,
    ) -> Result<WriteOutcome, Error> {
        let outcome = self
            .set_with_version(key, value, self.next_version(), ttl, options)
            .await?;
        self.observe(key, outcome)?;
        Ok(outcome)
    }

    /// Stores `value` under a version the caller chose (for example a loader's source timestamp),
    /// unless a newer or equal version is stored. A version further ahead of the wall clock than
    /// [`ConsistencyConfig::max_clock_drift`] is refused with [`Error::ClockSkew`] before anything
    /// is sent: stored, it would refuse every later write of the key.
    pub async fn set_with_version(
        &self,
        key: &[u8],
        value: &[u8],
        version: Version,
        ttl: Option<Duration>,
        options: WriteOptions,
    ) -> Result<WriteOutcome, Error> {
        let prepared = self.prepare_set(key, value, version, ttl, &options)?;
        Ok(self.write(prepared, options).await?.0)
    }

    /// Deletes `key` by storing a tombstone under a new version for the configured tombstone TTL, unless
    /// a newer version is stored. Until the tombstone expires, older sets are refused.
    pub async fn delete(&self, key: &[u8], options: WriteOptions) -> Result<WriteOutcome, Error> {
        let outcome = self
            .delete_with_version(key, self.next_version(), options)
            .await?;
        self.observe(key, outcome)?;
        Ok(outcome)
    }

    /// [`Versioned::delete`] under a version the caller chose.
    pub async fn delete_with_version(
        &self,
        key: &[u8],
        version: Version,
        options: WriteOptions,
    ) -> Result<WriteOutcome, Error> {
        let prepared = self.prepare_delete(key, version, &options)?;
        Ok(self.write(prepared, options).await?.0)
    }

    /// [`Versioned::set`] of many `(key, value, ttl)` entries, each under a new version: one
    /// pipelined script call per key, grouped by node, nodes concurrently (see
    /// `ClusterClient::eval_many`), instead of a round trip per key. Per-entry results in input order;
    /// each entry is decided, journaled and reported as [`Versioned::set`] would. With
    /// [`WriteOptions::wait`] each entry also waits for its replicas, as [`Versioned::set`] does.
    pub async fn set_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V, Option<Duration>)],
        options: WriteOptions,
    ) -> Vec<Result<WriteOutcome, Error>> {
        let prepared = entries
            .iter()
            .map(|(key, value, ttl)| {
                self.prepare_set(key.as_ref(), value.as_ref(), self.next_version(), *ttl, &options)
            })
            .collect();
        self.write_many(prepared, options)
            .await
            .into_iter()
            .zip(entries)
            .map(|(result, (key, _, _))| {
                let (outcome, _) = result?;
                self.observe(key.as_ref(), outcome)?;
                Ok(outcome)
            })
            .collect()
    }

    /// [`Versioned::set_with_version`] of many `(key, value, version, ttl)` entries, pipelined as
    /// [`Versioned::set_many`] is (a warm-up's batch, whose versions were taken before it read
    /// anything). Per-entry results in input order.
    pub async fn set_many_with_versions<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V, Version, Option<Duration>)],
        options: WriteOptions,
    ) -> Vec<Result<WriteOutcome, Error>> {
        let prepared = entries
            .iter()
            .map(|(key, value, version, ttl)| {
                self.prepare_set(key.as_ref(), value.as_ref(), *version, *ttl, &options)
            })
            .collect();
        self.write_many(prepared, options)
            .await
            .into_iter()
            .map(|result| result.map(|(outcome, _)| outcome))
            .collect()
    }

    /// [`Versioned::delete`] of many keys, pipelined as [`Versioned::set_many`] is; each result also
    /// says whether the key held a live value (anything but a tombstone) before, as the script saw it:
    /// no separate read.
    pub async fn delete_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        options: WriteOptions,
    ) -> Vec<Result<DeleteOutcome, Error>> {
        let prepared = keys
            .iter()
            .map(|key| self.prepare_delete(key.as_ref(), self.next_version(), &options))
            .collect();
        self.write_many(prepared, options)
            .await
            .into_iter()
            .zip(keys)
            .map(|(result, key)| {
                let (outcome, existed) = result?;
                self.observe(key.as_ref(), outcome)?;
                let existed = match outcome {
                    WriteOutcome::Stale { deleted, .. } => !deleted,
                    WriteOutcome::Written { .. } => existed,
                };
                Ok(DeleteOutcome { outcome, existed })
            })
            .collect()
    }

    fn prepare_set(
        &self,
        key: &[u8],
        value: &[u8],
        version: Version,
        ttl: Option<Duration>,
        options: &WriteOptions,
    ) -> Result<Prepared, Error> {
        self.check_write(key, version, options)?;
        let stored = Bytes::from(
            Envelope::Value {
                version,
                payload: value,
            }
            .encode(),
        );
        let max = self.inner.client.config().limits().value_max_bytes;
        if stored.len() > max {
            return Err(cluster_client::Error::ValueTooLarge {
                len: stored.len(),
                max,
            }
            .into());
        }
        let entry = JournalEntry {
            key: Bytes::copy_from_slice(key),
            version,
            deleted: false,
            // The journal's copy of the value is the envelope's payload: the same buffer, no copy.
            value: Some(stored.slice(HEADER_LEN..)),
            ttl,
            written_at: Instant::now(),
            mark: None,
        };
        Ok(Prepared { stored, ttl, entry })
    }

    fn prepare_delete(
        &self,
        key: &[u8],
        version: Version,
        options: &WriteOptions,
    ) -> Result<Prepared, Error> {
        self.check_write(key, version, options)?;
        let stored = Bytes::from(Envelope::Tombstone { version }.encode());
        let ttl = Some(self.inner.config.tombstone_ttl);
        let entry = JournalEntry {
            key: Bytes::copy_from_slice(key),
            version,
            deleted: true,
            value: None,
            ttl,
            written_at: Instant::now(),
            mark: None,
        };
        Ok(Prepared { stored, ttl, entry })
    }

    /// Refuses, before anything is sent, a write whose options are out of range or whose version
    /// lies beyond the clock drift bound.
    fn check_write(&self, key: &[u8], version: Version, options: &WriteOptions) -> Result<(), Error> {
        options.validate()?;
        let max_drift = self.inner.config.max_clock_drift;
        match self.inner.clock.beyond_drift(version.hlc, max_drift) {
            Some(ahead_by) => Err(Error::ClockSkew {
                key: printable_key(key),
                version,
                ahead_by,
                max_drift,
            }),
            None => Ok(()),
        }
    }

    /// Moves the clock past a version that refused one of our writes, so this writer's next write
    /// wins over it. Only for versions from the clock: a caller's own versions say nothing about it.
    /// A stored version beyond the drift bound is not adopted: the write fails with
    /// [`Error::ClockSkew`] naming the key, and every other key keeps working.
    fn observe(&self, key: &[u8], outcome: WriteOutcome) -> Result<(), Error> {
        if let WriteOutcome::Stale { current, .. } = outcome {
            let max_drift = self.inner.config.max_clock_drift;
            if let Err(ahead_by) = self.inner.clock.observe(current.hlc, max_drift) {
                return Err(Error::ClockSkew {
                    key: printable_key(key),
                    version: current,
                    ahead_by,
                    max_drift,
                });
            }
        }
        Ok(())
    }

    /// Whether writes ask the script where they landed: a journaled write needs to know where it
    /// landed in the replication stream, and a waited one on which stream (the executing primary's
    /// replication id), so that the wait's acknowledgements are counted only when they come from
    /// that same stream.
    fn marks(&self, options: &WriteOptions) -> bool {
        self.inner.journal.is_some() || options.wait.is_some()
    }

    /// One write, and whether a live value was there. A write made while no other single write of
    /// this handle is in flight, or with a wait, goes alone ([`Versioned::write_single`]). Otherwise
    /// it joins the single writes other tasks make in the same turn of the scheduler: a sender task
    /// yields once, then sends what was queued as one group execution per node (see
    /// [`Versioned::write_many`]), each round in its own task, never behind another round. Under
    /// concurrent writes the server thus runs one script (and reads the replication offset once)
    /// for several of them. A caller that gives up waiting (a cancelled future) stops no one else's
    /// write.
    async fn write(&self, prepared: Prepared, options: WriteOptions) -> Result<(WriteOutcome, bool), Error> {
        /// Counts this write as in flight until the caller's future ends (completed or dropped).
        struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let in_flight = &self.inner.single_writes;
        let alone = in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
        let _counted = InFlight(in_flight);
        if alone || options.wait.is_some() {
            return self.write_single(prepared, options).await;
        }
        let (reply, replied) = tokio::sync::oneshot::channel();
        let start = {
            let mut queued = self.inner.lock_queued();
            queued.writes.push((prepared, reply));
            !std::mem::replace(&mut queued.sending, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.send_queued().await });
        }
        replied
            .await
            .unwrap_or_else(|_| Err(cluster_client::Error::Closed.into()))
    }

    /// Sends the queued single writes, each round in its own task, until none is left after a yield.
    async fn send_queued(&self) {
        /// If the sending stops early (a panic, the runtime shutting down), the writes still queued
        /// fail (their senders drop) and the next write starts a new sender, so none waits for ever.
        struct Stop<'a> {
            inner: &'a Inner,
            done: bool,
        }
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                if self.done {
                    return;
                }
                let mut queued = self.inner.lock_queued();
                queued.sending = false;
                queued.writes.clear();
            }
        }
        let mut stop = Stop {
            inner: &self.inner,
            done: false,
        };
        loop {
            // One yield lets every task that is ready to run queue its write first; the round then
            // goes at once, in its own task, so no write ever waits for another round's reply
            // (which a paused node would hold for a whole timeout).
            tokio::task::yield_now().await;
            let writes = {
                let mut queued = self.inner.lock_queued();
                if queued.writes.is_empty() {
                    queued.sending = false;
                    stop.done = true;
                    return;
                }
                std::mem::take(&mut queued.writes)
            };
            let this = self.clone();
            tokio::spawn(async move {
                let (prepared, replies): (Vec<_>, Vec<_>) =
                    writes.into_iter().map(|(p, r)| (Ok(p), r)).unzip();
                let results = this.write_many(prepared, WriteOptions::default()).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            });
        }
    }

    /// One write on its own: the script, then the journal and the wait. Also whether a live value
    /// was there.
    async fn write_single(
        &self,
        prepared: Prepared,
        options: WriteOptions,
    ) -> Result<(WriteOutcome, bool), Error> {
        self.write_single_via(&self.inner.client, prepared, options).await
    }

    /// [`Versioned::write_single`] through `client` (a handle with a shorter deadline).
    async fn write_single_via(
        &self,
        client: &ClusterClient,
        prepared: Prepared,
        options: WriteOptions,
    ) -> Result<(WriteOutcome, bool), Error> {
        let key = prepared.entry.key.clone();
        let (outcome, landed, existed) = run_script_marked(
            client,
            &self.inner.script,
            &key,
            &prepared.stored,
            TtlArg::from(prepared.ttl),
            WriteMode::Newer,
            self.marks(&options),
        )
        .await?;
        let written_on = landed
            .as_ref()
            .map(|(replid, _)| String::from_utf8_lossy(replid).into_owned());
        let mark = landed.and_then(|(replid, offset)| {
            ReplicationMark::new(&replid, offset, key.len(), prepared.stored.len())
        });
        let outcome = self.settle(prepared, outcome, mark)?;
        let (WriteOutcome::Written { version, .. }, Some((replicas, timeout))) = (outcome, options.wait)
        else {
            return Ok((outcome, existed));
        };
        let waited = client.wait_outcome(&key, replicas, timeout).await?;
        let replicas_acked = if waited.covers(written_on.as_deref()) {
            waited.acked
        } else {
            // The primary that executed the write is not the one whose replicas answered (a
            // failover came between them): nothing says the write was replicated, and it may be lost.
            tracing::warn!(
                key = %printable_key(&key),
                "the wait ran on another replication stream than the write (a failover came between them); counting 0 acknowledgements"
            );
            0
        };
        Ok((
            WriteOutcome::Written {
                version,
                replicas_acked: Some(replicas_acked),
            },
            existed,
        ))
    }

    /// Many writes. Without a wait: one [`LWW_MANY_SCRIPT`] execution per group of keys one primary
    /// serves (at most [`GROUP_KEYS`] keys each; `ClusterClient::eval_grouped`), each key decided as
    /// [`LWW_SCRIPT`] decides it and settled as [`Versioned::write`] settles it; a key the group's
    /// node did not serve, or whose group call failed before it could have run, goes again on its
    /// own ([`Versioned::write_single`], which follows redirects and waits out failovers) within
    /// what is left of the call's deadline. With a wait, or while a hash ring reshards, key by key.
    async fn write_many(
        &self,
        prepared: Vec<Result<Prepared, Error>>,
        options: WriteOptions,
    ) -> Vec<Result<(WriteOutcome, bool), Error>> {
        if options.wait.is_some() {
            let writes = prepared
                .into_iter()
                .map(|p| async move { self.write_single(p?, options).await });
            return futures::future::join_all(writes).await;
        }
        let started = Instant::now();
        let mut results: Vec<Option<Result<(WriteOutcome, bool), Error>>> =
            Vec::with_capacity(prepared.len());
        let mut pending: Vec<Option<Prepared>> = Vec::with_capacity(prepared.len());
        for p in prepared {
            match p {
                Ok(p) => {
                    results.push(None);
                    pending.push(Some(p));
                }
                Err(error) => {
                    results.push(Some(Err(error)));
                    pending.push(None);
                }
            }
        }
        let ready: Vec<usize> = (0..pending.len()).filter(|&i| pending[i].is_some()).collect();
        let keys: Vec<&[u8]> = ready
            .iter()
            .filter_map(|&i| pending[i].as_ref().map(|p| &p.entry.key[..]))
            .collect();
        let mark: &[u8] = if self.marks(&options) { b"mark" } else { b"" };
        let ttls: Vec<Option<String>> = ready
            .iter()
            .map(|&i| {
                pending[i]
                    .as_ref()
                    .and_then(|p| p.ttl)
                    .map(|ttl| TtlArg::After(ttl).to_arg())
            })
            .collect();
        let groups = {
            let pending = &pending;
            let ready = &ready;
            let ttls = &ttls;
            self.inner
                .client
                .eval_grouped(&self.inner.many_script, &keys, GROUP_KEYS, |indexes| {
                    let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 3 * indexes.len());
                    args.push(WriteMode::Newer.as_arg().as_bytes());
                    args.push(mark);
                    for &g in indexes {
                        if let Some(p) = pending[ready[g]].as_ref() {
                            args.push(&p.entry.key);
                            args.push(&p.stored);
                            args.push(ttls[g].as_deref().map_or(b"0", str::as_bytes));
                        }
                    }
                    args
                })
                .await
        };
        let mut again = Vec::new();
        match groups {
            None => again.extend(ready.iter().copied()),
            Some(groups) => {
                for group in groups {
                    let members: Vec<usize> = group.indexes.iter().map(|&g| ready[g]).collect();
                    match group.result {
                        Ok(reply) => {
                            self.settle_group(&members, &reply, &mut pending, &mut results, &mut again)
                        }
                        // The call may have run: each key says so, as a single write would.
                        // Otherwise it did not run, or ran nowhere it may: the single-key path decides.
                        Err(error) => match key_error(&error) {
                            Some(_) => {
                                for &i in &members {
                                    results[i] = key_error(&error).map(|e| Err(e.into()));
                                }
                            }
                            None => again.extend(members),
                        },
                    }
                }
            }
        }
        // A key sent again gets what is left of the call's deadline, not a new one.
        let retry_client = match self.inner.client.call_deadline() {
            Ok(deadline) if !again.is_empty() => {
                let left = deadline
                    .saturating_sub(started.elapsed())
                    .max(cluster_client::MIN_TIMEOUT);
                let mut options = self.inner.client.options().clone();
                options.timeout = Some(left);
                self.inner.client.with_options(options)
            }
            _ => self.inner.client.clone(),
        };
        let retry_client = &retry_client;
        let retries = again.into_iter().filter_map(|i| {
            let prepared = pending[i].take()?;
            Some(async move { (i, self.write_single_via(retry_client, prepared, options).await) })
        });
        for (i, result) in futures::future::join_all(retries).await {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(cluster_client::Error::Closed.into())))
            .collect()
    }

    /// Settles the keys `members` (input indexes) of one [`LWW_MANY_SCRIPT`] reply. Their journal
    /// marks share the call's offset, with the bytes of every `SET` the call made as the write's
    /// least length (the block is applied whole or not at all). A key the call left alone joins
    /// `again`.
    fn settle_group(
        &self,
        members: &[usize],
        reply: &cluster_client::Value,
        pending: &mut [Option<Prepared>],
        results: &mut [Option<Result<(WriteOutcome, bool), Error>>],
        again: &mut Vec<usize>,
    ) {
        let (landed, replies) = match parse_many(reply, members.len()) {
            Ok(parsed) => parsed,
            Err(detail) => {
                for &i in members {
                    if let Some(p) = pending[i].take() {
                        results[i] = Some(Err(Error::ScriptReply {
                            key: printable_key(&p.entry.key),
                            detail: detail.clone(),
                        }));
                    }
                }
                return;
            }
        };
        let block_len: u64 = members
            .iter()
            .zip(replies)
            .filter(|(_, r)| reply_code(r) == Some(1))
            .filter_map(|(&i, _)| pending[i].as_ref())
            .map(|p| min_set_len(p.entry.key.len(), p.stored.len()))
            .sum();
        let mark = landed
            .as_ref()
            .and_then(|(replid, offset)| ReplicationMark::for_block(replid, *offset, block_len));
        let mut journaled = Vec::new();
        for (&i, key_reply) in members.iter().zip(replies) {
            if reply_code(key_reply) == Some(3) {
                again.push(i);
                continue;
            }
            let Some(prepared) = pending[i].take() else {
                continue;
            };
            results[i] = Some(script_reply(&prepared.entry.key, key_reply).and_then(
                |(outcome, _, existed)| {
                    let (outcome, entry) = self.outcome_of(prepared, outcome, mark)?;
                    journaled.extend(entry);
                    Ok((outcome, existed))
                },
            ));
        }
        if let Some(journal) = &self.inner.journal {
            journal.track_writes(journaled);
        }
    }

    /// The outcome of a script call; a written one's journal entry is recorded.
    fn settle(
        &self,
        prepared: Prepared,
        outcome: ScriptOutcome,
        mark: Option<ReplicationMark>,
    ) -> Result<WriteOutcome, Error> {
        let (outcome, entry) = self.outcome_of(prepared, outcome, mark)?;
        if let (Some(journal), Some(entry)) = (&self.inner.journal, entry) {
            journal.track_write(entry);
        }
        Ok(outcome)
    }

    /// The outcome of a script call, and for a written one, its journal entry (when a journal is
    /// kept) to record.
    fn outcome_of(
        &self,
        prepared: Prepared,
        outcome: ScriptOutcome,
        mark: Option<ReplicationMark>,
    ) -> Result<(WriteOutcome, Option<JournalEntry>), Error> {
        let Prepared { mut entry, .. } = prepared;
        match outcome {
            ScriptOutcome::Written => {
                let version = entry.version;
                let written = WriteOutcome::Written {
                    version,
                    replicas_acked: None,
                };
                if self.inner.journal.is_none() {
                    return Ok((written, None));
                }
                entry.mark = mark;
                Ok((written, Some(entry)))
            }
            ScriptOutcome::Kept(header) => Ok((
                WriteOutcome::Stale {
                    current: header.version,
                    deleted: header.tombstone,
                },
                None,
            )),
            ScriptOutcome::StoredInvalid(problem) => Err(Error::Envelope {
                key: printable_key(&entry.key),
                problem,
            }),
        }
    }

    /// The value stored under `key`: `None` if absent or deleted (a tombstone), an unversioned value as
    /// it is. Reads follow the client's replica-read setting.
    pub async fn get(&self, key: &[u8]) -> Result<Option<VersionedValue>, Error> {
        let Some(stored) = self.inner.client.get(key).await? else {
            return Ok(None);
        };
        decode_value(key, stored)
    }

    /// How the copies of `key` on its primary and every replica compare.
    ///
    /// Each replica is given up to the configured catch-up time to apply what its primary had when it
    /// was read, so that an older copy on a replica that caught up counts as divergence, not lag.
    pub async fn verify_consistency(&self, key: &[u8]) -> Result<KeyReport, Error> {
        let client = &self.inner.client;
        let topology = client.topology();
        let Some(shard) = topology.shard_for_key(key) else {
            return Err(cluster_client::Error::SlotUncovered {
                slot: sharding::key_slot(key),
            }
            .into());
        };
        let keys = [Bytes::copy_from_slice(key)];
        let catch_up = self.inner.config.replica_catch_up;
        let no_reply = || {
            Error::from(cluster_client::Error::Reply {
                node: shard.primary.clone(),
                command: "GETRANGE".into(),
                detail: "no reply for the key".into(),
            })
        };
        let first = crate::audit::read_shard(client, shard, &keys, catch_up).await;
        let report = first.into_iter().next().ok_or_else(no_reply)??;
        if !matches!(report.state, KeyState::Missing | KeyState::Diverged) {
            return Ok(report);
        }
        // Disagreement may be a write racing the reads: look again, replicas first.
        let again = crate::audit::recheck_shard(client, shard, &keys, catch_up).await;
        again.into_iter().next().ok_or_else(no_reply)?
    }
}

/// The writer id of this process, shared by every handle without an explicit one.
fn process_writer() -> WriterId {
    static WRITER: std::sync::OnceLock<WriterId> = std::sync::OnceLock::new();
    *WRITER.get_or_init(WriterId::random)
}

/// Decodes a stored value for [`Versioned::get`].
pub(crate) fn decode_value(key: &[u8], stored: Bytes) -> Result<Option<VersionedValue>, Error> {
    match Envelope::decode(&stored) {
        Ok(Envelope::Value { version, .. }) => Ok(Some(VersionedValue::Versioned {
            version,
            value: stored.slice(HEADER_LEN..),
        })),
        Ok(Envelope::Tombstone { .. }) => Ok(None),
        Ok(Envelope::Unversioned(_)) => Ok(Some(VersionedValue::Unversioned { value: stored })),
        Err(problem) => Err(Error::Envelope {
            key: printable_key(key),
            problem,
        }),
    }
}

/// The script's TTL argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtlArg {
    /// No TTL.
    Persist,
    /// Keep the key's current TTL.
    Keep,
    /// Expire after this long (at least 1 ms).
    After(Duration),
}

impl From<Option<Duration>> for TtlArg {
    fn from(ttl: Option<Duration>) -> Self {
        ttl.map_or(TtlArg::Persist, TtlArg::After)
    }
}

impl TtlArg {
    fn to_arg(self) -> String {
        match self {
            TtlArg::Persist => "0".into(),
            TtlArg::Keep => "keep".into(),
            TtlArg::After(ttl) => ttl.as_millis().clamp(1, u128::from(u64::MAX)).to_string(),
        }
    }
}

/// Runs the last-write-wins script for `key` on the primary that owns it.
pub(crate) async fn run_script(
    client: &ClusterClient,
    script: &Script,
    key: &[u8],
    stored: &[u8],
    ttl: TtlArg,
    mode: WriteMode,
) -> Result<ScriptOutcome, Error> {
    let (outcome, _, _) = run_script_marked(client, script, key, stored, ttl, mode, false).await?;
    Ok(outcome)
}

/// [`run_script`], and with `mark`, also where the write landed in the primary's replication
/// stream (its replication id and the offset just before the write), if the node would say; and
/// whether a live value was stored before a write.
pub(crate) async fn run_script_marked(
    client: &ClusterClient,
    script: &Script,
    key: &[u8],
    stored: &[u8],
    ttl: TtlArg,
    mode: WriteMode,
    mark: bool,
) -> Result<ScriptReply, Error> {
    let ttl = ttl.to_arg();
    let mut args: Vec<&[u8]> = vec![stored, ttl.as_bytes(), mode.as_arg().as_bytes()];
    if mark {
        args.push(b"mark");
    }
    let reply = client.eval(script, &[key], &args).await?;
    script_reply(key, &reply)
}

/// The script's reply: its outcome, the replication mark (replication id and offset), and whether a
/// live value was there.
pub(crate) type ScriptReply = (ScriptOutcome, Option<(Vec<u8>, u64)>, bool);

/// Reads the script's reply (see [`ScriptReply`]).
fn script_reply(key: &[u8], reply: &cluster_client::Value) -> Result<ScriptReply, Error> {
    let outcome = parse_reply(reply).map_err(|detail| Error::ScriptReply {
        key: printable_key(key),
        detail,
    })?;
    Ok((outcome, parse_mark(reply), parse_existed(reply)))
}

/// Builds a key report from the copies read.
pub(crate) fn key_report(
    key: &Bytes,
    primary: (&str, Observed),
    replicas: &[(String, ReplicaCopy)],
) -> KeyReport {
    let copies: Vec<ReplicaCopy> = replicas.iter().map(|(_, c)| *c).collect();
    let state = state::classify(primary.1, &copies);
    let mut nodes = Vec::with_capacity(1 + replicas.len());
    nodes.push(NodeCopy {
        node: primary.0.to_string(),
        role: CopyRole::Primary,
        observed: primary.1,
    });
    nodes.extend(replicas.iter().map(|(node, copy)| NodeCopy {
        node: node.clone(),
        role: CopyRole::Replica,
        observed: copy.observed,
    }));
    KeyReport {
        key: key.clone(),
        state,
        copies: nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EnvelopeProblem;
    use crate::version::test_version;

    fn check(stored: &[u8], want: Result<Option<VersionedValue>, EnvelopeProblem>) {
        let got = decode_value(b"k", Bytes::copy_from_slice(stored)).map_err(|e| match e {
            Error::Envelope { problem, .. } => problem,
            other => panic!("unexpected error {other}"),
        });
        assert_eq!(got, want, "{stored:02x?}");
    }

    #[test]
    fn stored_values_read_as_versioned_unversioned_or_absent() {
        let v = test_version(5, 0, 1);
        check(
            &Envelope::Value {
                version: v,
                payload: b"hi",
            }
            .encode(),
            Ok(Some(VersionedValue::Versioned {
                version: v,
                value: Bytes::from_static(b"hi"),
            })),
        );
        check(&Envelope::Tombstone { version: v }.encode(), Ok(None));
        check(
            b"plain",
            Ok(Some(VersionedValue::Unversioned {
                value: Bytes::from_static(b"plain"),
            })),
        );
        check(b"\xFFLWW\x01", Err(EnvelopeProblem::Truncated { len: 5 }));
    }

    #[test]
    fn ttl_arguments() {
        let cases = [
            (TtlArg::Persist, "0"),
            (TtlArg::Keep, "keep"),
            (TtlArg::After(Duration::from_micros(10)), "1"),
            (TtlArg::After(Duration::from_secs(2)), "2000"),
        ];
        for (ttl, want) in cases {
            assert_eq!(ttl.to_arg(), want, "{ttl:?}");
        }
    }

    #[test]
    fn wait_timeouts_are_validated() {
        let cases = [
            (WriteOptions::default(), true),
            (WriteOptions::wait(1, Duration::from_millis(1)), true),
            (WriteOptions::wait(1, MAX_WAIT_TIMEOUT), true),
            // WAIT 0 blocks forever in Redis.
            (WriteOptions::wait(1, Duration::ZERO), false),
            (WriteOptions::wait(1, Duration::from_micros(999)), false),
            (
                WriteOptions::wait(1, MAX_WAIT_TIMEOUT + Duration::from_millis(1)),
                false,
            ),
            (WriteOptions::wait(1, Duration::MAX), false),
        ];
        for (options, ok) in cases {
            let result = options.validate();
            assert_eq!(result.is_ok(), ok, "{options:?}: {result:?}");
            if let Err(error) = result {
                let text = error.to_string();
                assert!(text.contains("WriteOptions::wait timeout"), "{text}");
            }
        }
    }

    #[test]
    fn configs_are_validated() {
        let cases = [
            (ConsistencyConfig::default(), None),
            (
                ConsistencyConfig::default().tombstone_ttl(Duration::ZERO),
                Some("tombstone_ttl"),
            ),
            (
                ConsistencyConfig::default().history_capacity(0),
                Some("history_capacity"),
            ),
            (
                ConsistencyConfig::default().journal(Some(JournalConfig {
                    max_entries: 0,
                    ..JournalConfig::default()
                })),
                Some("max_entries"),
            ),
            (
                ConsistencyConfig::default().tombstone_ttl(Duration::MAX),
                Some("tombstone_ttl"),
            ),
            (
                ConsistencyConfig::default().replica_catch_up(Duration::MAX),
                Some("replica_catch_up"),
            ),
            (
                ConsistencyConfig::default().replica_catch_up(Duration::ZERO),
                None,
            ),
            (
                ConsistencyConfig::default().max_clock_drift(Duration::ZERO),
                Some("max_clock_drift"),
            ),
            (
                ConsistencyConfig::default().max_clock_drift(Duration::MAX),
                Some("max_clock_drift"),
            ),
            (
                ConsistencyConfig::default().journal(Some(JournalConfig {
                    max_age: Duration::MAX,
                    ..JournalConfig::default()
                })),
                Some("journal max_age"),
            ),
            // Tombstones must outlive the journal's memory of writes; without a journal, no bound.
            (
                ConsistencyConfig::default().tombstone_ttl(Duration::from_secs(10)),
                Some("tombstone_ttl (10s) is shorter than journal max_age (60s)"),
            ),
            (
                ConsistencyConfig::default()
                    .tombstone_ttl(Duration::from_secs(10))
                    .journal(None),
                None,
            ),
        ];
        for (config, want) in cases {
            match (config.validate(), want) {
                (Ok(()), None) => {}
                (Err(error), Some(text)) => assert!(error.to_string().contains(text), "{error}"),
                (got, want) => panic!("{config:?}: got {got:?}, want an error mentioning {want:?}"),
            }
        }
    }
}
