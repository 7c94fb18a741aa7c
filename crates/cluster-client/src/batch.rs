//! Multi-key operations: split by node, one pipeline per node (one request on the node's own
//! connection, see the `bulk` module), nodes in parallel, per-key results in input order. A key whose pipeline reply is a redirect or a connection error is retried through the
//! single-key path, which follows MOVED/ASK and honours the call's failover options.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;

use crate::client::{Access, Cmd, Routed, eval_source, is_noscript, to_bytes, to_i64};
use crate::durations;
use crate::node::NodeHandle;
use crate::script::Script;
use crate::{ClusterClient, Error};

/// One node's share of a batch: its handle and `(input index, command)`.
type Group = (Arc<NodeHandle>, Vec<(usize, Cmd)>);

/// Adds `item` to `node`'s group, opening the group on the node's first item. A batch touches a few
/// nodes, so a scan of the groups by handle beats hashing (and cloning) the node's address for
/// every key. A node has one handle (the client's registry hands out one per address); two handles
/// of one address would only make two pipelines to that node.
fn push_to_node<T>(groups: &mut Vec<(Arc<NodeHandle>, Vec<T>)>, node: Arc<NodeHandle>, item: T) {
    match groups.iter_mut().find(|(group, _)| Arc::ptr_eq(group, &node)) {
        Some((_, items)) => items.push(item),
        None => groups.push((node, vec![item])),
    }
}

/// One script call of [`ClusterClient::eval_grouped`]: the keys it carried and what it answered.
#[derive(Debug)]
pub struct GroupReply {
    /// The input indexes of the keys the call carried, ascending.
    pub indexes: Vec<usize>,
    /// The script's reply; or why the call failed, or was never made (a key that could not be routed
    /// comes alone, with the routing error).
    pub result: Result<crate::Value, Error>,
}

impl ClusterClient {
    /// `GET` of many keys across slots: results in input order, `Ok(None)` for missing keys, a per-key
    /// error for keys whose shard could not answer.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "GET", keys = keys.len()))]
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Bytes>, Error>> {
        let cmds = keys
            .iter()
            .map(|k| Ok(Cmd::Get(Bytes::copy_from_slice(k.as_ref()))))
            .collect();
        let mut results = self.batch(keys, cmds, Access::Read).await;
        // During a reshard, misses of moved keys are asked of their old owners (see `resharding`).
        let missed: Vec<(usize, Arc<NodeHandle>)> = self
            .moved_in_batch(keys, |i| matches!(results[i], Ok(Value::Null)))
            .into_iter()
            .map(|(index, old, _)| (index, old))
            .collect();
        if !missed.is_empty() {
            self.batch_fallback(keys, missed, &mut results).await;
        }
        results
            .into_iter()
            .map(|r| r.and_then(|v| to_bytes(v, "GET")))
            .collect()
    }

    /// `SET` of many entries `(key, value, ttl)` across slots; per-entry results in input order.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "SET", keys = entries.len()))]
    pub async fn set_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V, Option<Duration>)],
    ) -> Vec<Result<(), Error>> {
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _, _)| k.as_ref()).collect();
        let cmds = entries
            .iter()
            .map(|(key, value, ttl)| {
                self.check_value(value.as_ref())?;
                Ok(Cmd::Set {
                    key: Bytes::copy_from_slice(key.as_ref()),
                    value: Bytes::copy_from_slice(value.as_ref()),
                    ttl_ms: ttl
                        .map(|ttl| durations::ttl_ms("set_many ttl", ttl))
                        .transpose()?,
                    condition: None,
                })
            })
            .collect();
        // During a reshard, moved keys go to their new owners, then leave their old ones (see
        // `resharding`).
        let moved = self.moved_in_batch(&keys, |_| true);
        let results = self.batch_split(&keys, cmds, &moved).await;
        let written: Vec<(usize, Arc<NodeHandle>, Cmd)> = moved
            .into_iter()
            .filter(|(index, _, _)| results[*index].is_ok())
            .map(|(index, old, _)| (index, old, Cmd::Del(Bytes::copy_from_slice(keys[index]))))
            .collect();
        for (_, result) in self.on_nodes(written).await {
            if let Err(error) = result {
                tracing::warn!(%error, "reshard: deleting an old copy after a write failed");
            }
        }
        results.into_iter().map(|r| r.map(|_| ())).collect()
    }

    /// `DEL` of many keys across slots: whether each existed, in input order.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "DEL", keys = keys.len()))]
    pub async fn del_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        let cmds = keys
            .iter()
            .map(|k| Ok(Cmd::Del(Bytes::copy_from_slice(k.as_ref()))))
            .collect();
        // During a reshard, moved keys are deleted on their old owners first, then on their new owners
        // (see `resharding`).
        let moved = self.moved_in_batch(keys, |_| true);
        let mut on_old: Vec<Option<Result<Value, Error>>> = (0..keys.len()).map(|_| None).collect();
        let old_dels = moved
            .iter()
            .map(|(index, old, _)| {
                (
                    *index,
                    old.clone(),
                    Cmd::Del(Bytes::copy_from_slice(keys[*index].as_ref())),
                )
            })
            .collect();
        for (index, result) in self.on_nodes(old_dels).await {
            on_old[index] = Some(result);
        }
        self.batch_split(keys, cmds, &moved)
            .await
            .into_iter()
            .zip(on_old)
            .map(|(r, old)| {
                let existed_on_old = match old {
                    None => false,
                    Some(Ok(reply)) => to_i64(&reply, "DEL")? > 0,
                    Some(Err(error)) => return Err(error),
                };
                r.and_then(|v| Ok(to_i64(&v, "DEL")? > 0 || existed_on_old))
            })
            .collect()
    }

    /// Runs `script` once per group of keys that one primary serves (as this client's slot map
    /// says), at most `max_keys` keys a call, nodes concurrently: the call that lets a script decide
    /// many keys of one node in one execution (the versioned writes of the `consistency` crate do).
    ///
    /// The call declares no key (`EVALSHA sha 0 args...`); `args(indexes)` builds the arguments of
    /// the call that carries the keys `keys[i]` for `i` in `indexes`. Redis still refuses a script
    /// any key its node does not serve (a stale slot map, a slot migrating away whose key already
    /// left, a slot being imported): the command touching it fails inside the script with the error
    /// Redis gives a script (`Script attempted to access a non local key ...`). So the script must
    /// reach each key with `redis.pcall`, leave a key whose command failed alone, and report it, and
    /// its caller must send such a key again through a single-key call, which follows `MOVED` and
    /// `ASK`. A node that lacks the script gets its source, as in [`eval`](Self::eval). A call
    /// acknowledged by a primary a failover has replaced gives [`Error::WriteUncertain`].
    ///
    /// `None`, and nothing sent, while a reshard of a hash ring is in progress: the ring's keys then
    /// have two owners, and only the single-key calls know which to ask (see [`Reshard`](crate::Reshard)).
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "EVALSHA", keys = keys.len()))]
    pub async fn eval_grouped<K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        script: &Script,
        keys: &[K],
        max_keys: usize,
        args: impl Fn(&[usize]) -> Vec<A>,
    ) -> Option<Vec<GroupReply>> {
        if self.reshard_in_progress().is_some() {
            return None;
        }
        let mut replies = Vec::new();
        let Routed { groups, failed } = self.group_by_primary(keys);
        replies.extend(failed.into_iter().map(|(index, error)| GroupReply {
            indexes: vec![index],
            result: Err(error),
        }));
        let calls: Vec<(Arc<NodeHandle>, Vec<usize>)> = groups
            .into_iter()
            .flat_map(|(node, indexes)| {
                indexes
                    .chunks(max_keys.max(1))
                    .map(|chunk| (node.clone(), chunk.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if calls.is_empty() {
            tokio::task::consume_budget().await;
        }
        let timeout = match self.call_timeout() {
            Ok(timeout) => timeout,
            Err(_) => {
                replies.extend(calls.into_iter().map(|(_, indexes)| GroupReply {
                    indexes,
                    result: self.call_timeout().map(|_| crate::Value::Null),
                }));
                return Some(replies);
            }
        };
        let runs = calls.into_iter().map(|(node, indexes)| {
            let args = args(&indexes);
            async move {
                let result = self.script_on(&node, script, &args, timeout).await;
                if result.is_ok() {
                    for &index in &indexes {
                        self.note_write(keys[index].as_ref());
                    }
                }
                GroupReply { indexes, result }
            }
        });
        replies.extend(futures::future::join_all(runs).await);
        Some(replies)
    }

    /// One `EVALSHA sha 0 args...` on `node`'s batch connection, encoded straight from `args`; its
    /// source if the node lacks it.
    async fn script_on<A: AsRef<[u8]>>(
        &self,
        node: &Arc<NodeHandle>,
        script: &Script,
        args: &[A],
        timeout: Duration,
    ) -> Result<crate::Value, Error> {
        use redis_protocol::resp2::types::BorrowedFrame as F;
        let started = Instant::now();
        let mut frames = Vec::with_capacity(3 + args.len());
        frames.extend([
            F::BulkString(b"EVALSHA"),
            F::BulkString(script.sha().as_bytes()),
            F::BulkString(b"0"),
        ]);
        frames.extend(args.iter().map(|a| F::BulkString(a.as_ref())));
        let mut request =
            bytes::BytesMut::with_capacity(64 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
        crate::bulk::encode(&mut request, &frames);
        let reply = match node.bulk().call(request.freeze(), 1, timeout).await {
            Ok(frames) => match frames.into_iter().next() {
                Some(frame) => crate::bulk::frame_to_value(frame),
                None => Err(fred::error::Error::new(ErrorKind::Protocol, "no reply")),
            },
            Err(error) => Err(error),
        };
        node.record_untimed();
        let result = match reply.map_err(|e| self.node_error(node, "EVALSHA", &e, started)) {
            Err(error) if is_noscript(&error) => {
                let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
                self.node_call(&node.addr, eval_source(script, &[], &args).to_args())
                    .await
                    .map(crate::value::from_fred)
            }
            other => other,
        };
        match result {
            // Acknowledged by a primary that a failover has replaced: see `ClusterClient::run`.
            Ok(_) if node.is_replaced() => Err(Error::WriteUncertain {
                command: "EVALSHA".into(),
                node: node.addr.clone(),
            }),
            other => other,
        }
    }

    /// [`batch`](ClusterClient::batch), except that the keys of `moved` (`(index, old owner, new
    /// owner)`) go to their new owner as named there, whatever the routing says (see
    /// `ClusterClient::moved_owners`).
    async fn batch_split<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        cmds: Vec<Result<Cmd, Error>>,
        moved: &[(usize, Arc<NodeHandle>, Arc<NodeHandle>)],
    ) -> Vec<Result<Value, Error>> {
        if moved.is_empty() {
            return self.batch(keys, cmds, Access::Write).await;
        }
        let mut results: Vec<Option<Result<Value, Error>>> = (0..keys.len()).map(|_| None).collect();
        let mut cmds: Vec<Option<Result<Cmd, Error>>> = cmds.into_iter().map(Some).collect();
        let mut direct = Vec::with_capacity(moved.len());
        for (index, _, new) in moved {
            match cmds[*index].take() {
                Some(Ok(cmd)) => direct.push((*index, new.clone(), cmd)),
                Some(Err(error)) => results[*index] = Some(Err(error)),
                None => {}
            }
        }
        let rest: Vec<usize> = (0..keys.len()).filter(|&i| cmds[i].is_some()).collect();
        let rest_keys: Vec<&[u8]> = rest.iter().map(|&i| keys[i].as_ref()).collect();
        let rest_cmds = rest
            .iter()
            .map(|&i| cmds[i].take().unwrap_or(Err(Error::Closed)))
            .collect();
        let (routed, direct) = futures::future::join(
            self.batch(&rest_keys, rest_cmds, Access::Write),
            self.on_nodes(direct),
        )
        .await;
        for (index, result) in rest.into_iter().zip(routed) {
            results[index] = Some(result);
        }
        for (index, result) in direct {
            if result.is_ok() {
                self.note_write(keys[index].as_ref());
            }
            results[index] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Closed)))
            .collect()
    }

    /// Each `(index, node, command)` on its node, one pipeline per node, nodes concurrently.
    async fn on_nodes(
        &self,
        calls: Vec<(usize, Arc<NodeHandle>, Cmd)>,
    ) -> Vec<(usize, Result<Value, Error>)> {
        if calls.is_empty() {
            return Vec::new();
        }
        let timeout = match self.call_timeout() {
            Ok(timeout) => timeout,
            Err(_) => {
                return calls
                    .into_iter()
                    .map(|(index, _, _)| (index, self.call_timeout().map(|_| Value::Null)))
                    .collect();
            }
        };
        let mut groups: Vec<Group> = Vec::new();
        for (index, node, cmd) in calls {
            push_to_node(&mut groups, node, (index, cmd));
        }
        let pipelines = groups
            .into_iter()
            .map(|(node, cmds)| self.pipeline(node, cmds, timeout));
        futures::future::join_all(pipelines)
            .await
            .into_iter()
            .flatten()
            .map(|(index, _, result)| (index, result))
            .collect()
    }

    /// Asks the old owners for the keys of `missed` (`(input index, old owner)`), then the new owners
    /// once more for those still missing, as a single-key read does.
    async fn batch_fallback<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        missed: Vec<(usize, Arc<NodeHandle>)>,
        results: &mut [Result<Value, Error>],
    ) {
        let reads = missed
            .into_iter()
            .map(|(index, old)| (index, old, Cmd::Get(Bytes::copy_from_slice(keys[index].as_ref()))))
            .collect();
        let mut still_missing = Vec::new();
        for (index, result) in self.on_nodes(reads).await {
            match result {
                Ok(Value::Null) => still_missing.push(index),
                other => results[index] = other,
            }
        }
        if still_missing.is_empty() {
            return;
        }
        let again: Vec<&[u8]> = still_missing.iter().map(|&i| keys[i].as_ref()).collect();
        let cmds = again
            .iter()
            .map(|k| Ok(Cmd::Get(Bytes::copy_from_slice(k))))
            .collect();
        for (index, result) in still_missing
            .into_iter()
            .zip(self.batch(&again, cmds, Access::Read).await)
        {
            results[index] = result;
        }
    }

    /// Runs `cmds[i]` for `keys[i]`: grouped by primary, one pipeline per node, nodes concurrently.
    pub(crate) async fn batch<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        cmds: Vec<Result<Cmd, Error>>,
        access: Access,
    ) -> Vec<Result<Value, Error>> {
        let mut results: Vec<Option<Result<Value, Error>>> = (0..keys.len()).map(|_| None).collect();
        let routed = self.group_by_primary(keys);
        let mut cmds: Vec<Option<Result<Cmd, Error>>> = cmds.into_iter().map(Some).collect();
        for (index, error) in routed.failed {
            results[index] = Some(Err(error));
        }
        let mut groups: Vec<Group> = Vec::with_capacity(routed.groups.len());
        for (node, indexes) in routed.groups {
            let mut group = Vec::with_capacity(indexes.len());
            for index in indexes {
                match cmds[index].take() {
                    Some(Ok(cmd)) => group.push((index, cmd)),
                    Some(Err(error)) => results[index] = Some(Err(error)),
                    None => {}
                }
            }
            if !group.is_empty() {
                groups.push((node, group));
            }
        }
        if groups.is_empty() {
            // Every key failed fast (or the batch is empty): nothing below awaits, so take a share
            // of tokio's cooperative budget, as the single-key fail-fast path does.
            tokio::task::consume_budget().await;
        }
        let timeout = match self.call_timeout() {
            Ok(timeout) => timeout,
            // An out-of-range CallOptions::timeout: every key gets the error, nothing is sent.
            Err(_) => {
                return (0..keys.len())
                    .map(|_| self.call_timeout().map(|_| Value::Null))
                    .collect();
            }
        };
        let pipelines = groups
            .into_iter()
            .map(|(node, cmds)| async move { (node.clone(), self.pipeline(node, cmds, timeout).await) });
        let mut retry = Vec::new();
        for (node, outcome) in futures::future::join_all(pipelines).await {
            for (index, cmd, result) in outcome {
                match result {
                    // Acknowledged by a primary that a failover has replaced: see `ClusterClient::run`.
                    Ok(_) if access == Access::Write && node.is_replaced() => {
                        results[index] = Some(Err(Error::WriteUncertain {
                            command: cmd.name().into(),
                            node: node.addr.clone(),
                        }));
                    }
                    Ok(value) => {
                        if access == Access::Write {
                            self.note_write(keys[index].as_ref());
                        }
                        results[index] = Some(Ok(value));
                    }
                    Err(error) if is_final(&error) => results[index] = Some(Err(error)),
                    Err(_) => retry.push((index, cmd)),
                }
            }
        }
        // Redirected or failed keys go through the routed single-key path (MOVED/ASK, failover wait).
        let retries = retry
            .into_iter()
            .map(|(index, cmd)| async move { (index, self.run(keys[index].as_ref(), cmd, access).await) });
        for (index, result) in futures::future::join_all(retries).await {
            results[index] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Closed)))
            .collect()
    }

    async fn pipeline(
        &self,
        node: Arc<NodeHandle>,
        cmds: Vec<(usize, Cmd)>,
        timeout: Duration,
    ) -> Vec<(usize, Cmd, Result<Value, Error>)> {
        let started = Instant::now();
        let replies = match bulk_request(&cmds) {
            // The usual way: one request on the node's batch connection (see the `bulk` module).
            Some(request) => match node.bulk().call(request, cmds.len(), timeout).await {
                Ok(frames) => frames.into_iter().map(crate::bulk::frame_value).collect(),
                Err(error) => cmds.iter().map(|_| Err(error.clone())).collect(),
            },
            // A command the batch connection does not carry: a fred pipeline.
            None => {
                let pipeline = node.lane().client.pipeline();
                for (_, cmd) in &cmds {
                    let _ = cmd.issue(&pipeline).await;
                }
                match tokio::time::timeout(timeout, pipeline.try_all::<Value>()).await {
                    Ok(replies) => replies,
                    Err(_) => {
                        let error = fred::error::Error::new(ErrorKind::Timeout, "pipeline timed out");
                        cmds.iter().map(|_| Err(error.clone())).collect()
                    }
                }
            }
        };
        node.record_untimed();
        cmds.into_iter()
            .zip(replies)
            .map(|((index, cmd), reply)| {
                let result = reply.map_err(|e| self.node_error(&node, cmd.name(), &e, started));
                (index, cmd, result)
            })
            .collect()
    }
}

/// The commands encoded as one request for a batch connection, or `None` if one of them cannot go
/// there.
fn bulk_request(cmds: &[(usize, Cmd)]) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::with_capacity(cmds.len() * 64);
    for (_, cmd) in cmds {
        if !cmd.encode(&mut buf) {
            return None;
        }
    }
    Some(buf.freeze())
}

/// Errors the single-key path could not fix: server errors other than redirects.
fn is_final(error: &Error) -> bool {
    match error {
        Error::Server { message, .. } => {
            !message.starts_with("redirected")
                && !message.starts_with("TRYAGAIN")
                && !message.starts_with("LOADING")
                && !message.starts_with("CLUSTERDOWN")
        }
        Error::Timeout { .. } => true,
        _ => false,
    }
}
