//! Writing one batch: plain string values through one `SET` script call per slot group (falling back
//! to `set_many`), versioned values through `consistency`, `DUMP` payloads through `RESTORE`.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_client::{ClusterClient, Value};
use consistency::{Version, Versioned, WriteOptions, WriteOutcome};

use crate::entry::{Entry, Payload};
use crate::plan::slot_runs;
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

/// One entry's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written(Expect),
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
    /// Cleared once a script call fails for a reason other than routing (for example an ACL without
    /// `EVALSHA`): later batches go straight to `set_many`.
    pub(crate) scripts_usable: AtomicBool,
    /// Whether keys of one slot always share a node (cluster, standalone and key-range modes).
    pub(crate) by_slot: bool,
}

impl Io {
    pub(crate) fn new(client: ClusterClient) -> Io {
        let by_slot = !matches!(client.mode(), cluster_client::Mode::ShardedKetama);
        Io {
            client,
            scripts: Scripts::new(),
            scripts_usable: AtomicBool::new(true),
            by_slot,
        }
    }

    /// Ranges of `keys` that one script call may carry: same slot in cluster mode, same node always
    /// (callers pass one shard's keys), at most [`MAX_KEYS`].
    pub(crate) fn runs(&self, keys: &[&[u8]]) -> Vec<Range<usize>> {
        let cluster = self.client.mode() == cluster_client::Mode::Cluster;
        if self.by_slot {
            slot_runs(keys, cluster, MAX_KEYS)
        } else {
            // Ketama: a script's keys must all map to one node; one key per call is always right.
            (0..keys.len()).map(|i| i..i + 1).collect()
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

fn outcome_of_error(error: &cluster_client::Error) -> Outcome {
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

/// Writes one batch (entries of one shard, in slot order); outcomes in input order.
pub(crate) async fn write_batch(io: &Io, writer: &Writer, entries: &[Entry]) -> Vec<Outcome> {
    let mut strings = Vec::new();
    let mut dumps = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match entry.payload {
            Payload::Bytes(_) => strings.push(index),
            Payload::Dump(_) => dumps.push(index),
        }
    }
    let strings = async {
        match writer {
            Writer::Plain => write_plain(io, entries, &strings).await,
            Writer::Versioned(store) => write_versioned(store, entries, &strings).await,
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

fn value_of(entry: &Entry) -> &Bytes {
    match &entry.payload {
        Payload::Bytes(b) | Payload::Dump(b) => b,
    }
}

async fn write_plain(io: &Io, entries: &[Entry], indices: &[usize]) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(indices.len());
    let mut fallback: Vec<usize> = Vec::new();
    if io.scripts_usable.load(Ordering::Relaxed) {
        let keys: Vec<&[u8]> = indices.iter().map(|&i| &entries[i].key[..]).collect();
        let calls = io.runs(&keys).into_iter().map(|run| {
            let members: Vec<usize> = indices[run].to_vec();
            async move {
                let keys: Vec<&[u8]> = members.iter().map(|&i| &entries[i].key[..]).collect();
                let ttls: Vec<Bytes> = members.iter().map(|&i| ttl_arg(entries[i].ttl)).collect();
                let mut args: Vec<&[u8]> = Vec::with_capacity(members.len() * 2);
                for (&i, ttl) in members.iter().zip(&ttls) {
                    args.push(value_of(&entries[i]));
                    args.push(ttl);
                }
                let result = io.client.eval(&io.scripts.set, &keys, &args).await;
                (members, result)
            }
        });
        for (members, result) in futures::future::join_all(calls).await {
            match result {
                Ok(_) => out.extend(
                    members
                        .into_iter()
                        .map(|i| (i, Outcome::Written(Expect::Bytes(value_of(&entries[i]).clone())))),
                ),
                Err(error) => {
                    if !retryable(&error) && io.scripts_usable.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%error, "the SET script failed; writing with plain SET from now on");
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
            .map(|&i| (&entries[i].key[..], &value_of(&entries[i])[..], entries[i].ttl))
            .collect();
        let results = io.client.set_many(&batch).await;
        for (i, result) in fallback.into_iter().zip(results) {
            out.push((
                i,
                match result {
                    Ok(()) => Outcome::Written(Expect::Bytes(value_of(&entries[i]).clone())),
                    Err(error) => outcome_of_error(&error),
                },
            ));
        }
    }
    out
}

async fn write_versioned(store: &Versioned, entries: &[Entry], indices: &[usize]) -> Vec<(usize, Outcome)> {
    // Sent together: fred pipelines the script calls on each node's connections.
    let writes = indices.iter().map(|&i| async move {
        let entry = &entries[i];
        let value = value_of(entry);
        let outcome = match store
            .set(&entry.key, value, entry.ttl, WriteOptions::default())
            .await
        {
            Ok(WriteOutcome::Written { version, .. }) => Outcome::Written(Expect::Versioned {
                version,
                value: value.clone(),
            }),
            Ok(WriteOutcome::Stale { .. }) => Outcome::Skipped,
            Err(consistency::Error::Client(error)) => outcome_of_error(&error),
            Err(error) => Outcome::Failed(error.to_string()),
        };
        (i, outcome)
    });
    futures::future::join_all(writes).await
}

/// What to do with one key in a `RESTORE` script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restore {
    /// `RESTORE key ttl payload REPLACE`.
    Put { payload: Bytes, ttl: Option<Duration> },
    /// `DEL key`.
    Delete,
}

async fn restore_entries(io: &Io, entries: &[Entry], indices: &[usize]) -> Vec<(usize, Outcome)> {
    if indices.is_empty() {
        return Vec::new();
    }
    let actions: Vec<(Bytes, Restore)> = indices
        .iter()
        .map(|&i| {
            let entry = &entries[i];
            (
                entry.key.clone(),
                Restore::Put {
                    payload: value_of(entry).clone(),
                    ttl: entry.ttl,
                },
            )
        })
        .collect();
    let results = restore(io, &actions).await;
    indices
        .iter()
        .zip(results)
        .map(|(&i, result)| {
            let outcome = match result {
                Ok(()) => Outcome::Written(Expect::Dump(value_of(&entries[i]).clone())),
                Err(outcome) => outcome,
            };
            (i, outcome)
        })
        .collect()
}

/// Runs `RESTORE`/`DEL` for keys of one shard (sorted by slot for few calls); results in input order.
pub(crate) async fn restore(io: &Io, actions: &[(Bytes, Restore)]) -> Vec<Result<(), Outcome>> {
    let keys: Vec<&[u8]> = actions.iter().map(|(k, _)| &k[..]).collect();
    let calls = io.runs(&keys).into_iter().map(|run| async move {
        let part = &actions[run.clone()];
        match restore_call(io, part).await {
            Ok(results) => (run, results),
            // The whole call failed (for example TRYAGAIN while its slot moves, some keys moved and
            // some not): one key per call always routes, through ASK if need be.
            Err(_) => {
                let single = part.iter().map(|action| async move {
                    match restore_call(io, std::slice::from_ref(action)).await {
                        Ok(mut results) => results
                            .pop()
                            .unwrap_or(Err(Outcome::Failed("empty reply".into()))),
                        Err(error) => Err(outcome_of_error(&error)),
                    }
                });
                (run, futures::future::join_all(single).await)
            }
        }
    });
    let mut out: Vec<Result<(), Outcome>> = (0..actions.len()).map(|_| Ok(())).collect();
    for (run, results) in futures::future::join_all(calls).await {
        for (index, result) in run.zip(results) {
            out[index] = result;
        }
    }
    out
}

async fn restore_call(
    io: &Io,
    part: &[(Bytes, Restore)],
) -> Result<Vec<Result<(), Outcome>>, cluster_client::Error> {
    let keys: Vec<&[u8]> = part.iter().map(|(k, _)| &k[..]).collect();
    let mut owned: Vec<Bytes> = Vec::with_capacity(part.len() * 3);
    for (_, action) in part {
        match action {
            Restore::Put { payload, ttl } => {
                owned.push(Bytes::from_static(b"restore"));
                owned.push(ttl_arg(*ttl));
                owned.push(payload.clone());
            }
            Restore::Delete => {
                owned.push(Bytes::from_static(b"delete"));
                owned.push(Bytes::from_static(b"0"));
                owned.push(Bytes::new());
            }
        }
    }
    let args: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
    let reply = io.client.eval(&io.scripts.restore, &keys, &args).await?;
    let Value::Array(replies) = reply else {
        return Err(cluster_client::Error::Reply {
            node: String::new(),
            command: "RESTORE script".into(),
            detail: format!("not an array: {reply:?}"),
        });
    };
    if replies.len() != part.len() {
        return Err(cluster_client::Error::Reply {
            node: String::new(),
            command: "RESTORE script".into(),
            detail: format!("{} replies for {} keys", replies.len(), part.len()),
        });
    }
    Ok(replies
        .into_iter()
        .map(|reply| match reply.as_bytes() {
            Some(b"OK") => Ok(()),
            Some(text) => Err(Outcome::Failed(String::from_utf8_lossy(text).into_owned())),
            None => Err(Outcome::Failed(format!("unexpected reply {reply:?}"))),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ttl_arguments() {
        let check = |ttl: Option<Duration>, want: &str| assert_eq!(ttl_arg(ttl), want.as_bytes());
        check(None, "0");
        check(Some(Duration::from_micros(10)), "1");
        check(Some(Duration::from_secs(60)), "60000");
    }
}
