//! Writing one batch: plain string values with one command per slot group sent to the shard's primary
//! (`MSET`, or a `SET … PX` script when TTLs are set), falling back to `set_many`; versioned values
//! through `consistency`; `DUMP` payloads through a `RESTORE` script routed by `ClusterClient::eval`.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster_client::{ClusterClient, Value};
use consistency::{Version, Versioned, WriteOptions, WriteOutcome};

use crate::digest::Digest;
use crate::entry::{Entry, Payload};
use crate::plan::{Slotted, slot_runs};
use crate::script::{MAX_KEYS, Scripts};

/// How string values are written.
#[derive(Debug, Clone)]
pub(crate) enum Writer {
    /// Plain `SET`.
    Plain,
    /// `consistency`'s last-write-wins versioned set.
    Versioned(Versioned),
}

/// What a written key should read back as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// These bytes.
    Bytes(Bytes),
    /// A versioned envelope of this version (or newer) holding `value`.
    Versioned { version: Version, value: Bytes },
    /// A value that dumps as this payload (or as the primary's copy does).
    Dump(Bytes),
}

impl Expect {
    /// What `entry` should read back as, once written as `stored` says.
    pub(crate) fn of(entry: &Entry, stored: &Stored) -> Expect {
        match (&entry.payload, stored) {
            (Payload::Dump(payload), _) => Expect::Dump(payload.clone()),
            (Payload::Bytes(value), Stored::Versioned(version)) => Expect::Versioned {
                version: *version,
                value: value.clone(),
            },
            (Payload::Bytes(value), _) => Expect::Bytes(value.clone()),
        }
    }
}

/// How a written entry was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The value's bytes, with `SET`.
    Plain,
    /// A versioned envelope of this version around the value.
    Versioned(Version),
    /// A `DUMP` payload, with `RESTORE`; with the digest of the key's `DUMP` right after, when asked
    /// for (rollback compares it with what the key holds then).
    Dump(Option<Digest>),
}

/// How the server reads a key to compare it with what the warm-up wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAs {
    /// `GET`: string values, plain or versioned.
    Get,
    /// `DUMP`: values of any type restored from a payload.
    Dump,
}

impl ReadAs {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReadAs::Get => "get",
            ReadAs::Dump => "dump",
        }
    }
}

/// What the warm-up left under a key, as a fixed-size fingerprint: the rollback changes the key only
/// if it still holds exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wrote {
    pub(crate) read_as: ReadAs,
    pub(crate) digest: Digest,
    /// The version of a versioned write: once the rollback undid it, the write journal forgets it, so
    /// failover repair never writes the rolled-back value again.
    pub(crate) version: Option<Version>,
}

impl Wrote {
    /// The fingerprint of `entry` written as `stored`; `None` when it is not known (a `DUMP` payload
    /// whose digest the server did not answer), so the key is never rolled back.
    pub(crate) fn of(entry: &Entry, stored: &Stored) -> Option<Wrote> {
        let value = value_of(entry);
        let version = match stored {
            Stored::Versioned(version) => Some(*version),
            _ => None,
        };
        let (read_as, digest) = match stored {
            Stored::Plain => (ReadAs::Get, Digest::of(value)),
            // The envelope is stored as header then payload: hashed in two parts, never copied.
            Stored::Versioned(version) => {
                let header = consistency::Header {
                    version: *version,
                    tombstone: false,
                }
                .to_bytes();
                (ReadAs::Get, Digest::of_parts(&[&header, value]))
            }
            Stored::Dump(digest) => (ReadAs::Dump, (*digest)?),
        };
        Some(Wrote {
            read_as,
            digest,
            version,
        })
    }
}

/// One entry's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written, stored as said.
    Written(Stored),
    /// Not written on purpose (a newer version is stored).
    Skipped,
    /// Failed in a way a later attempt may not (node down, timeout, redirects while slots move).
    Transient(String),
    /// Failed for good (the server refused it).
    Failed(String),
}

/// The shared means of one run's writes.
#[derive(Debug)]
pub(crate) struct Io {
    pub(crate) client: ClusterClient,
    pub(crate) scripts: Scripts,
    /// Cleared once the server refuses the batched commands (for example an ACL without `MSET` or
    /// `EVALSHA`): later batches go straight to `set_many`.
    pub(crate) fast_path: AtomicBool,
    /// Whether keys of one slot always share a node (cluster, standalone and key-range modes).
    pub(crate) by_slot: bool,
    /// Whether `RESTORE` writes answer the digest of what they stored (rollback needs it).
    pub(crate) dump_digests: bool,
}

impl Io {
    pub(crate) fn new(client: ClusterClient, dump_digests: bool) -> Io {
        let by_slot = !matches!(client.deployment(), cluster_client::Deployment::ShardedKetama);
        Io {
            client,
            scripts: Scripts::new(),
            fast_path: AtomicBool::new(true),
            by_slot,
            dump_digests,
        }
    }

    /// Ranges of keys (given by their slots, in slot order) that one script call may carry: the same
    /// slot in cluster mode, the same node always (callers pass one shard's keys), at most
    /// [`MAX_KEYS`].
    pub(crate) fn runs(&self, slots: &[u16]) -> Vec<Range<usize>> {
        let cluster = self.client.deployment() == cluster_client::Deployment::Cluster;
        if self.by_slot {
            slot_runs(slots, cluster, MAX_KEYS)
        } else {
            // Ketama: a script's keys must all map to one node; one key per call is always right.
            (0..slots.len()).map(|i| i..i + 1).collect()
        }
    }
}

/// Whether an error may go away on a later attempt.
pub(crate) fn retryable(error: &cluster_client::Error) -> bool {
    match error {
        cluster_client::Error::Server { message, .. } => [
            "TRYAGAIN",
            "CLUSTERDOWN",
            "LOADING",
            "MOVED",
            "ASK",
            "redirected",
            "MASTERDOWN",
        ]
        .iter()
        .any(|p| message.starts_with(p)),
        other => other.is_transient(),
    }
}

pub(crate) fn is_noscript(error: &cluster_client::Error) -> bool {
    matches!(error, cluster_client::Error::Server { message, .. } if message.starts_with("NOSCRIPT"))
}

/// Whether the server refuses the batched commands themselves (an ACL without `MSET` or `EVALSHA`, a
/// proxy without scripting), as opposed to refusing this call (a redirect, a failover, a full node).
fn refuses_batching(error: &cluster_client::Error) -> bool {
    matches!(error, cluster_client::Error::Server { message, .. }
        if message.starts_with("NOPERM") || message.contains("unknown command"))
}

pub(crate) fn outcome_of_error(error: &cluster_client::Error) -> Outcome {
    if retryable(error) {
        Outcome::Transient(error.to_string())
    } else {
        Outcome::Failed(error.to_string())
    }
}

fn ttl_arg(ttl: Option<Duration>) -> Bytes {
    match ttl {
        Some(ttl) => Bytes::from(ttl.as_millis().max(1).to_string()),
        None => Bytes::from_static(b"0"),
    }
}

/// Writes one batch (entries of the shard whose primary is `primary`, in slot order); outcomes in
/// input order.
///
/// A versioned batch writes under `versions` (one per entry, taken by [`batch_versions`] before the
/// batch's previous values were captured), so that a write another client makes between the capture
/// and this write has a newer version and wins: the warm-up's write is then refused (stale), never
/// rolled back, and the rollback can never put back a capture older than that write.
pub(crate) async fn write_batch(
    io: &Io,
    writer: &Writer,
    primary: &str,
    entries: &[Slotted<'_>],
    versions: Option<&[Version]>,
) -> Vec<Outcome> {
    let mut strings = Vec::new();
    let mut dumps = Vec::new();
    for (index, slotted) in entries.iter().enumerate() {
        match slotted.entry.payload {
            Payload::Bytes(_) => strings.push(index),
            Payload::Dump(_) => dumps.push(index),
        }
    }
    let strings = async {
        match writer {
            Writer::Plain => write_plain(io, primary, entries, &strings).await,
            Writer::Versioned(store) => write_versioned(store, entries, &strings, versions).await,
        }
    };
    let (strings_done, dumps_done) =
        futures::future::join(strings, restore_entries(io, entries, &dumps)).await;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; entries.len()];
    for (index, outcome) in strings_done.into_iter().chain(dumps_done) {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("internal: no outcome".into())))
        .collect()
}

pub(crate) fn value_of(entry: &Entry) -> &Bytes {
    match &entry.payload {
        Payload::Bytes(b) | Payload::Dump(b) => b,
    }
}

/// Writes plain string values of one shard. Fast path: one command per slot group straight to the
/// shard's primary (`MSET` when no entry of the group has a TTL, else one `SET … PX` script call).
/// Any group whose fast call fails (a redirect while its slot moves, a failover, `NOSCRIPT`) is
/// written again through `set_many`, which routes each key and follows MOVED/ASK; both write the
/// same values, so a group that was in fact written is only written twice.
async fn write_plain(
    io: &Io,
    primary: &str,
    entries: &[Slotted<'_>],
    indices: &[usize],
) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(indices.len());
    let mut fallback: Vec<usize> = Vec::new();
    if io.fast_path.load(Ordering::Relaxed) {
        let slots: Vec<u16> = indices.iter().map(|&i| entries[i].slot).collect();
        let calls = io.runs(&slots).into_iter().map(|run| {
            let members: Vec<usize> = indices[run].to_vec();
            let command = fast_command(io.scripts.set.sha(), entries, &members);
            async move { (members, io.client.node_command::<Value>(primary, command).await) }
        });
        for (members, result) in futures::future::join_all(calls).await {
            match result {
                Ok(_) => out.extend(members.into_iter().map(|i| (i, Outcome::Written(Stored::Plain)))),
                Err(error) => {
                    if is_noscript(&error) {
                        // Loaded once per node; this group goes the slow way meanwhile.
                        let load = vec!["SCRIPT".into(), "LOAD".into(), io.scripts.set.source().into()];
                        if let Err(error) = io.client.node_command::<Value>(primary, load).await {
                            tracing::debug!(%primary, %error, "loading the SET script failed");
                        }
                    } else if refuses_batching(&error) && io.fast_path.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%error, "a batched write failed; writing key by key from now on");
                    }
                    fallback.extend(members);
                }
            }
        }
    } else {
        fallback.extend_from_slice(indices);
    }
    if !fallback.is_empty() {
        let batch: Vec<(&[u8], &[u8], Option<Duration>)> = fallback
            .iter()
            .map(|&i| {
                let entry = &entries[i].entry;
                (&entry.key[..], &value_of(entry)[..], entry.ttl)
            })
            .collect();
        let results = io.client.set_many(&batch).await;
        for (i, result) in fallback.into_iter().zip(results) {
            out.push((
                i,
                match result {
                    Ok(()) => Outcome::Written(Stored::Plain),
                    Err(error) => outcome_of_error(&error),
                },
            ));
        }
    }
    out
}

/// The one command that writes a slot group: `MSET k v …`, or `EVALSHA <SET script> n k … v ttl …`
/// when an entry has a TTL (`MSET` cannot set one).
///
/// Keys and values are copied into one buffer per command and handed out as slices of it. Cloning
/// each entry's own `Bytes` instead costs an allocation and two atomic operations on a cold cache line
/// per key and per value, which profiling showed to be the largest single cost of the client.
fn fast_command(set_sha: &str, entries: &[Slotted<'_>], members: &[usize]) -> Vec<Value> {
    let with_ttl = members.iter().any(|&i| entries[i].entry.ttl.is_some());
    // A TTL is at most 20 digits.
    let size: usize = members
        .iter()
        .map(|&i| entries[i].entry.size() + if with_ttl { 20 } else { 0 })
        .sum();
    let mut buffer = BytesMut::with_capacity(size);
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(members.len() * 3);
    // Keys first, then per entry its value (and TTL): the order both commands want.
    for &i in members {
        let key = &entries[i].entry.key;
        spans.push((buffer.len(), key.len()));
        buffer.extend_from_slice(key);
    }
    for &i in members {
        let entry = &entries[i].entry;
        let value = value_of(entry);
        spans.push((buffer.len(), value.len()));
        buffer.extend_from_slice(value);
        if with_ttl {
            let start = buffer.len();
            let ms = entry.ttl.map_or(0, |ttl| ttl.as_millis().max(1));
            // Writing to a `BytesMut` cannot fail.
            let _ = write!(buffer, "{ms}");
            spans.push((start, buffer.len() - start));
        }
    }
    let buffer = buffer.freeze();
    let slice = |(start, len): (usize, usize)| Value::Bytes(buffer.slice(start..start + len));
    let (keys, rest) = spans.split_at(members.len());
    if !with_ttl {
        let mut args = Vec::with_capacity(1 + members.len() * 2);
        args.push(Value::from("MSET"));
        for (key, value) in keys.iter().zip(rest) {
            args.push(slice(*key));
            args.push(slice(*value));
        }
        return args;
    }
    let mut args = Vec::with_capacity(3 + members.len() * 3);
    args.push(Value::from("EVALSHA"));
    args.push(Value::from(set_sha));
    args.push(Value::Integer(members.len() as i64));
    args.extend(keys.iter().map(|k| slice(*k)));
    args.extend(rest.iter().map(|r| slice(*r)));
    args
}

/// One version per entry of a batch, taken from the store's clock now (before anything of the batch
/// is read or written); `None` for a plain writer.
pub(crate) fn batch_versions(writer: &Writer, entries: usize) -> Option<Vec<Version>> {
    match writer {
        Writer::Plain => None,
        Writer::Versioned(store) => Some((0..entries).map(|_| store.next_version()).collect()),
    }
}

/// One entry of a versioned batch: key, value, version, TTL.
type VersionedEntry<'a> = (&'a [u8], &'a [u8], Version, Option<Duration>);

async fn write_versioned(
    store: &Versioned,
    entries: &[Slotted<'_>],
    indices: &[usize],
    versions: Option<&[Version]>,
) -> Vec<(usize, Outcome)> {
    // One pipelined script call per entry, grouped by node (see `Versioned::set_many`).
    let written = match versions {
        Some(versions) => {
            let batch: Vec<VersionedEntry<'_>> = indices
                .iter()
                .map(|&i| {
                    let entry = &entries[i].entry;
                    let version = versions.get(i).copied().unwrap_or_else(|| store.next_version());
                    (&entry.key[..], &value_of(entry)[..], version, entry.ttl)
                })
                .collect();
            store
                .set_many_with_versions(&batch, WriteOptions::default())
                .await
        }
        None => {
            let batch: Vec<(&[u8], &[u8], Option<Duration>)> = indices
                .iter()
                .map(|&i| {
                    let entry = &entries[i].entry;
                    (&entry.key[..], &value_of(entry)[..], entry.ttl)
                })
                .collect();
            store.set_many(&batch, WriteOptions::default()).await
        }
    };
    indices
        .iter()
        .zip(written)
        .map(|(&i, written)| {
            let outcome = match written {
                Ok(WriteOutcome::Written { version, .. }) => Outcome::Written(Stored::Versioned(version)),
                Ok(WriteOutcome::Stale { .. }) => Outcome::Skipped,
                Err(consistency::Error::Client(error)) => outcome_of_error(&error),
                Err(error) => Outcome::Failed(error.to_string()),
            };
            (i, outcome)
        })
        .collect()
}

/// One key for a `RESTORE` script call: its slot, key, payload and TTL.
pub(crate) type RestoreAction = (u16, Bytes, Bytes, Option<Duration>);

async fn restore_entries(io: &Io, entries: &[Slotted<'_>], indices: &[usize]) -> Vec<(usize, Outcome)> {
    if indices.is_empty() {
        return Vec::new();
    }
    let actions: Vec<RestoreAction> = indices
        .iter()
        .map(|&i| {
            let Slotted { slot, entry } = &entries[i];
            (*slot, entry.key.clone(), value_of(entry).clone(), entry.ttl)
        })
        .collect();
    let results = restore(io, &actions).await;
    indices.iter().copied().zip(results).collect()
}

/// Runs `RESTORE … REPLACE` for `(slot, key, payload, ttl)` of one shard, in slot order (for few
/// calls); outcomes in input order.
pub(crate) async fn restore(io: &Io, actions: &[RestoreAction]) -> Vec<Outcome> {
    let slots: Vec<u16> = actions.iter().map(|(slot, ..)| *slot).collect();
    let calls = io.runs(&slots).into_iter().map(|run| async move {
        let part = &actions[run.clone()];
        match restore_call(io, part).await {
            Ok(results) => (run, results),
            // The whole call failed (for example TRYAGAIN while its slot moves, some keys moved and
            // some not): one key per call always routes, through ASK if need be.
            Err(_) => {
                let single = part.iter().map(|action| async move {
                    match restore_call(io, std::slice::from_ref(action)).await {
                        Ok(mut results) => results.pop().unwrap_or(Outcome::Failed("empty reply".into())),
                        Err(error) => outcome_of_error(&error),
                    }
                });
                (run, futures::future::join_all(single).await)
            }
        }
    });
    let mut out: Vec<Outcome> = (0..actions.len())
        .map(|_| Outcome::Failed("internal: no outcome".into()))
        .collect();
    for (run, results) in futures::future::join_all(calls).await {
        for (index, result) in run.zip(results) {
            out[index] = result;
        }
    }
    out
}

/// A per-key script's reply: an array with exactly one reply per key, in key order.
pub(crate) fn per_key_replies(reply: Value, keys: usize) -> Result<Vec<Value>, String> {
    let Value::Array(replies) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    if replies.len() != keys {
        return Err(format!("{} replies for {keys} keys", replies.len()));
    }
    Ok(replies)
}

pub(crate) fn script_reply_error(command: &str, detail: String) -> cluster_client::Error {
    cluster_client::Error::Reply {
        node: String::new(),
        command: command.into(),
        detail,
    }
}

async fn restore_call(io: &Io, part: &[RestoreAction]) -> Result<Vec<Outcome>, cluster_client::Error> {
    let keys: Vec<&[u8]> = part.iter().map(|(_, k, ..)| &k[..]).collect();
    let mut owned: Vec<Bytes> = Vec::with_capacity(1 + part.len() * 2);
    owned.push(Bytes::from_static(if io.dump_digests {
        b"digest"
    } else {
        b"none"
    }));
    for (_, _, payload, ttl) in part {
        owned.push(ttl_arg(*ttl));
        owned.push(payload.clone());
    }
    let args: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
    let reply = io.client.eval(&io.scripts.restore, &keys, &args).await?;
    parse_restore(reply, part.len(), io.dump_digests)
        .map_err(|detail| script_reply_error("RESTORE script", detail))
}

/// Parses the `RESTORE` script's reply: per key `{1, digest}` (the digest empty unless asked for) or
/// `{0, error}`.
fn parse_restore(reply: Value, keys: usize, digests: bool) -> Result<Vec<Outcome>, String> {
    Ok(per_key_replies(reply, keys)?
        .into_iter()
        .map(|reply| {
            let Value::Array(pair) = reply else {
                return Outcome::Failed(format!("unexpected reply {reply:?}"));
            };
            match (
                pair.first().and_then(Value::as_i64),
                pair.get(1).and_then(Value::as_bytes),
            ) {
                (Some(1), Some(digest)) => {
                    // A digest that is not one leaves the key out of any rollback: safe.
                    let digest = if digests { Digest::from_hex(digest) } else { None };
                    Outcome::Written(Stored::Dump(digest))
                }
                (Some(0), Some(error)) => Outcome::Failed(String::from_utf8_lossy(error).into_owned()),
                _ => Outcome::Failed(format!("unexpected reply {pair:?}")),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;

    /// The race the history checker found (`cargo xtask chaos safety --minutes 10 --seed 2026`): a
    /// warm-up captured a key's previous value, another client deleted the key (acknowledged with
    /// WAIT), then the warm-up's versioned write took a fresh, newer version, replaced the tombstone,
    /// and the rollback put back the value from before the delete. With the batch's versions taken
    /// before the capture, the delete is newer than the warm-up's write, which is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_between_capture_and_write_wins_over_the_warm_up() {
        let _lock = local_cluster::test_lock::shared().await.unwrap();
        let cluster = local_cluster::LocalCluster::shared().await.unwrap();
        let config = cluster_config::ClusterConfig::builder()
            .nodes(cluster.seeds())
            .build()
            .unwrap();
        let client = ClusterClient::connect(config).await.unwrap();
        let store = Versioned::new(client.clone(), consistency::ConsistencyConfig::default()).unwrap();
        let writer = Writer::Versioned(store.clone());
        let key = format!("warmup-capture-race:{}", std::process::id());
        store
            .set(key.as_bytes(), b"before", None, WriteOptions::default())
            .await
            .unwrap();

        // The warm-up takes its batch's versions, then captures (the capture is where the race opens).
        let versions = batch_versions(&writer, 1).expect("a versioned writer has versions");
        // Another client deletes the key in between.
        let deleted = store
            .delete(key.as_bytes(), WriteOptions::default())
            .await
            .unwrap();
        assert!(deleted.is_written(), "{deleted:?}");
        // The warm-up's write arrives.
        let entry = Entry::new(key.clone(), "warm");
        let items = [Slotted {
            slot: sharding::key_slot(key.as_bytes()),
            entry: &entry,
        }];
        let io = Io::new(client.clone(), false);
        let outcomes = write_batch(&io, &writer, "", &items, Some(&versions)).await;
        assert_eq!(outcomes, vec![Outcome::Skipped], "the delete must win");
        assert!(
            store.get(key.as_bytes()).await.unwrap().is_none(),
            "the key stays deleted"
        );
        client.close().await;
    }

    #[test]
    fn errors_split_into_retryable_and_final() {
        let server = |message: &str| cluster_client::Error::Server {
            node: "n".into(),
            command: "EVALSHA".into(),
            message: message.into(),
        };
        let check = |error: cluster_client::Error, want: bool| {
            assert_eq!(retryable(&error), want, "{error}");
        };
        check(
            server("TRYAGAIN Multiple keys request during rehashing of slot"),
            true,
        );
        check(server("redirected to 127.0.0.1:7001"), true);
        check(server("CLUSTERDOWN The cluster is down"), true);
        check(
            server("OOM command not allowed when used memory > 'maxmemory'"),
            false,
        );
        check(
            server("NOPERM this user has no permissions to run the 'evalsha' command"),
            false,
        );
        check(cluster_client::Error::SlotUncovered { slot: 7 }, true);
        check(cluster_client::Error::ValueTooLarge { len: 2, max: 1 }, false);
    }

    #[test]
    fn only_refused_commands_turn_batching_off() {
        let server = |message: &str| cluster_client::Error::Server {
            node: "n".into(),
            command: "MSET".into(),
            message: message.into(),
        };
        let check = |error: cluster_client::Error, want: bool| {
            assert_eq!(refuses_batching(&error), want, "{error}");
        };
        check(
            server("NOPERM this user has no permissions to run the 'mset' command"),
            true,
        );
        check(
            server("ERR unknown command 'EVALSHA', with args beginning with: "),
            true,
        );
        check(server("redirected to 127.0.0.1:7001"), false);
        check(
            server("OOM command not allowed when used memory > 'maxmemory'"),
            false,
        );
        check(
            cluster_client::Error::UnknownNode {
                node: "10.0.0.1:6379".into(),
                known: String::new(),
            },
            false,
        );
    }

    #[test]
    fn slot_groups_become_one_command() {
        let entries = [
            Entry::new("{a}1", "v1"),
            Entry::new("{a}2", "v2").ttl(Duration::from_millis(1500)),
            Entry::new("{a}3", "v3"),
        ];
        let slotted: Vec<Slotted<'_>> = entries.iter().map(|entry| Slotted { slot: 1, entry }).collect();
        let text = |args: Vec<Value>| -> Vec<String> {
            args.iter()
                .map(|a| match a {
                    Value::Integer(n) => n.to_string(),
                    other => String::from_utf8_lossy(other.as_bytes().unwrap_or_default()).into_owned(),
                })
                .collect()
        };
        let check = |members: &[usize], want: &[&str]| {
            assert_eq!(text(fast_command("sha", &slotted, members)), want, "{members:?}");
        };
        check(&[0, 2], &["MSET", "{a}1", "v1", "{a}3", "v3"]);
        check(
            &[0, 1, 2],
            &[
                "EVALSHA", "sha", "3", "{a}1", "{a}2", "{a}3", "v1", "0", "v2", "1500", "v3", "0",
            ],
        );
    }

    #[test]
    fn ttl_arguments() {
        let check = |ttl: Option<Duration>, want: &str| assert_eq!(ttl_arg(ttl), want.as_bytes());
        check(None, "0");
        check(Some(Duration::from_micros(10)), "1");
        check(Some(Duration::from_secs(60)), "60000");
    }
}
