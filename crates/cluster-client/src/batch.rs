//! Multi-key operations: split by node, one pipeline per node, nodes in parallel, per-key results in
//! input order. A key whose pipeline reply is a redirect or a connection error is retried through the
//! single-key path, which follows MOVED/ASK and honours the call's failover options.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;

use crate::client::{Access, Cmd, to_bytes, to_i64};
use crate::durations;
use crate::node::NodeHandle;
use crate::{ClusterClient, Error};

/// One node's share of a batch: its handle and `(input index, command)`.
type Group = (Arc<NodeHandle>, Vec<(usize, Cmd)>);

impl ClusterClient {
    /// `GET` of many keys across slots: results in input order, `Ok(None)` for missing keys, a per-key
    /// error for keys whose shard could not answer.
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<Option<Bytes>, Error>> {
        let cmds = keys
            .iter()
            .map(|k| Ok(Cmd::Get(Bytes::copy_from_slice(k.as_ref()))))
            .collect();
        let mut results = self.batch(keys, cmds, Access::Read).await;
        // During a reshard, misses of moved keys are asked of their old owners (see `resharding`).
        let missed = self.moved_in_batch(keys, |i| matches!(results[i], Ok(Value::Null)));
        if !missed.is_empty() {
            self.batch_fallback(keys, missed, &mut results).await;
        }
        results
            .into_iter()
            .map(|r| r.and_then(|v| to_bytes(v, "GET")))
            .collect()
    }

    /// `SET` of many entries `(key, value, ttl)` across slots; per-entry results in input order.
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
        let results = self.batch(&keys, cmds, Access::Write).await;
        // During a reshard, written keys that moved are deleted on their old owners (see `resharding`).
        let written = self.moved_in_batch(&keys, |i| results[i].is_ok());
        if !written.is_empty() {
            let dels = by_node(&keys, written, Cmd::Del);
            let timeout = self.call_timeout().unwrap_or(durations::MIN_TIMEOUT);
            let pipelines = dels.into_values().map(|(node, cmds)| self.pipeline(node, cmds, timeout));
            for outcome in futures::future::join_all(pipelines).await {
                for (_, _, result) in outcome {
                    if let Err(error) = result {
                        tracing::warn!(%error, "reshard: deleting an old copy after a write failed");
                    }
                }
            }
        }
        results.into_iter().map(|r| r.map(|_| ())).collect()
    }

    /// `DEL` of many keys across slots: whether each existed, in input order.
    pub async fn del_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        let cmds = keys
            .iter()
            .map(|k| Ok(Cmd::Del(Bytes::copy_from_slice(k.as_ref()))))
            .collect();
        // During a reshard, moved keys are deleted on their old owners first (see `resharding`).
        let moved = self.moved_in_batch(keys, |_| true);
        let mut on_old: Vec<Option<Result<Value, Error>>> = (0..keys.len()).map(|_| None).collect();
        if !moved.is_empty() {
            let dels = by_node(keys, moved, Cmd::Del);
            match self.call_timeout() {
                Ok(timeout) => {
                    let pipelines = dels.into_values().map(|(node, cmds)| self.pipeline(node, cmds, timeout));
                    for outcome in futures::future::join_all(pipelines).await {
                        for (index, _, result) in outcome {
                            on_old[index] = Some(result);
                        }
                    }
                }
                Err(_) => return keys.iter().map(|_| self.call_timeout().map(|_| false)).collect(),
            }
        }
        self.batch(keys, cmds, Access::Write)
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

    /// Asks the old owners for the keys of `missed` (`(input index, old owner)`), then the new owners
    /// once more for those still missing, as a single-key read does.
    async fn batch_fallback<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        missed: Vec<(usize, Arc<NodeHandle>)>,
        results: &mut [Result<Value, Error>],
    ) {
        let Ok(timeout) = self.call_timeout() else {
            return;
        };
        let reads = by_node(keys, missed, Cmd::Get);
        let pipelines = reads.into_values().map(|(node, cmds)| self.pipeline(node, cmds, timeout));
        let mut still_missing = Vec::new();
        for outcome in futures::future::join_all(pipelines).await {
            for (index, _, result) in outcome {
                match result {
                    Ok(Value::Null) => still_missing.push(index),
                    other => results[index] = other,
                }
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
        let mut groups: HashMap<String, Group> = HashMap::new();
        for (index, (route, cmd)) in self.route_many(keys).into_iter().zip(cmds).enumerate() {
            match (route, cmd) {
                (Ok((node, _slot)), Ok(cmd)) => {
                    groups
                        .entry(node.addr.clone())
                        .or_insert_with(|| (node, Vec::new()))
                        .1
                        .push((index, cmd));
                }
                (Err(e), _) | (_, Err(e)) => results[index] = Some(Err(e)),
            }
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
            .into_values()
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
        let pipeline = node.lane().client.pipeline();
        for (_, cmd) in &cmds {
            let _ = cmd.issue(&pipeline).await;
        }
        let replies = match tokio::time::timeout(timeout, pipeline.try_all::<Value>()).await {
            Ok(replies) => replies,
            Err(_) => {
                let error = fred::error::Error::new(ErrorKind::Timeout, "pipeline timed out");
                cmds.iter().map(|_| Err(error.clone())).collect()
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

/// The commands `make(key)` for `(input index, node)` pairs, grouped by node.
fn by_node<K: AsRef<[u8]>>(
    keys: &[K],
    pairs: Vec<(usize, Arc<NodeHandle>)>,
    make: impl Fn(Bytes) -> Cmd,
) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for (index, node) in pairs {
        let cmd = make(Bytes::copy_from_slice(keys[index].as_ref()));
        groups
            .entry(node.addr.clone())
            .or_insert_with(|| (node, Vec::new()))
            .1
            .push((index, cmd));
    }
    groups
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
