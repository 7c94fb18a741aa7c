//! The public typed commands: single-key calls, scripts, `WAIT`, raw node commands and `SCAN`, and the
//! reply conversions they share with the batch module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use sharding::key_slot;

use super::resharding::is_miss;
use super::routing::{Access, send};
use super::{CallOptions, ClusterClient, Cmd, SetCondition, SetOptions};
use crate::Error;
#[cfg(doc)]
use crate::Topology;
use crate::durations;
use crate::node::NodeHandle;
use crate::script::Script;
use crate::value;
use crate::wait::{WaitOutcome, marker_key};

/// A key's remaining time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist.
    Missing,
    /// The key exists without an expiry.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

// Every public call is one `rcc.call` span (field `command`), at debug level: with no subscriber, or
// one that filters debug out, creating it is one check of the callsite's cached interest and the span
// is disabled, so the hot path pays nothing measurable. One span per call, never one per retry or
// redirect (those happen inside it); keys are not recorded, as they may carry user data.
impl ClusterClient {
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        let max = self.inner.config.limits().key_max_bytes;
        if key.len() > max {
            return Err(Error::KeyTooLarge { len: key.len(), max });
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        let max = self.inner.config.limits().value_max_bytes;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    // ----- single-key operations -----

    /// `GET`: the value, or `None` when the key does not exist.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "GET"))]
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        self.check_key(key)?;
        let read = Cmd::Get(Bytes::copy_from_slice(key));
        let value = self.run(key, read.clone(), Access::Read).await?;
        // During a reshard a miss may be a key still on its old owner.
        match value {
            Value::Null => match self.read_fallback(key, read).await? {
                Some(value) => to_bytes(value, "GET"),
                None => Ok(None),
            },
            value => to_bytes(value, "GET"),
        }
    }

    /// `SET` with an optional TTL and condition; `Ok(false)` when the condition kept it from writing.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "SET"))]
    pub async fn set(&self, key: &[u8], value: &[u8], options: SetOptions) -> Result<bool, Error> {
        self.check_key(key)?;
        self.check_value(value)?;
        let cmd = Cmd::Set {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            ttl_ms: options
                .ttl
                .map(|ttl| durations::ttl_ms("SetOptions::ttl", ttl))
                .transpose()?,
            condition: options.condition.map(|c| match c {
                SetCondition::IfAbsent => fred::types::SetOptions::NX,
                SetCondition::IfPresent => fred::types::SetOptions::XX,
            }),
        };
        let reply = match self.moved_owners(key) {
            Some((old, new)) => self.write_moved(key, &cmd, &old, &new).await?.0,
            None => self.run(key, cmd, Access::Write).await?,
        };
        Ok(!matches!(reply, Value::Null))
    }

    /// `DEL`: whether the key existed.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "DEL"))]
    pub async fn del(&self, key: &[u8]) -> Result<bool, Error> {
        self.check_key(key)?;
        let cmd = Cmd::Del(Bytes::copy_from_slice(key));
        // During a reshard a moved key is deleted on both owners, the old one first (see `resharding`).
        let (reply, on_old) = match self.moved_owners(key) {
            Some((old, new)) => self.write_moved(key, &cmd, &old, &new).await?,
            None => (self.run(key, cmd, Access::Write).await?, false),
        };
        Ok(to_i64(&reply, "DEL")? > 0 || on_old)
    }

    /// `EXISTS` for one key.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "EXISTS"))]
    pub async fn exists(&self, key: &[u8]) -> Result<bool, Error> {
        self.check_key(key)?;
        let read = Cmd::Exists(Bytes::copy_from_slice(key));
        let mut reply = self.run(key, read.clone(), Access::Read).await?;
        if is_miss(&reply)
            && let Some(fallback) = self.read_fallback(key, read).await?
        {
            reply = fallback;
        }
        Ok(to_i64(&reply, "EXISTS")? > 0)
    }

    /// `PEXPIRE`: whether the key existed and got the TTL.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "PEXPIRE"))]
    pub async fn pexpire(&self, key: &[u8], ttl: Duration) -> Result<bool, Error> {
        self.check_key(key)?;
        let cmd = Cmd::Pexpire(
            Bytes::copy_from_slice(key),
            durations::ttl_ms("pexpire ttl", ttl)?,
        );
        let mut reply = self.run(key, cmd.clone(), Access::Write).await?;
        if is_miss(&reply)
            && let Some(fallback) = self.read_fallback(key, cmd).await?
        {
            reply = fallback;
        }
        Ok(to_i64(&reply, "PEXPIRE")? > 0)
    }

    /// `PTTL`: the key's remaining time to live.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "PTTL"))]
    pub async fn pttl(&self, key: &[u8]) -> Result<Ttl, Error> {
        self.check_key(key)?;
        let read = Cmd::Pttl(Bytes::copy_from_slice(key));
        let mut reply = self.run(key, read.clone(), Access::Read).await?;
        if matches!(reply, Value::Integer(-2))
            && let Some(fallback) = self.read_fallback(key, read).await?
        {
            reply = fallback;
        }
        Ok(match to_i64(&reply, "PTTL")? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::Expires(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// Runs a Lua script by SHA on the node owning the first key; without keys, on the first shard's
    /// primary.
    ///
    /// A node that lacks the script (`NOSCRIPT`: it never ran it, restarted, was promoted, or its cache
    /// was flushed) gets the script's source in one `EVAL`, which runs it and caches it there. `NOSCRIPT`
    /// means the script did not run, so running it then is running it once. `SCRIPT LOAD` then `EVALSHA`
    /// would be two calls with a window between them where a `SCRIPT FLUSH` fails the call.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "EVALSHA"))]
    pub async fn eval(&self, script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Result<crate::Value, Error> {
        for key in keys {
            self.check_key(key)?;
        }
        let route_key: &[u8] = keys.first().copied().unwrap_or(b"");
        let reply = match self
            .run(route_key, evalsha(script, keys, args), Access::Write)
            .await
        {
            Err(error) if is_noscript(&error) => {
                self.run(route_key, eval_source(script, keys, args), Access::Write)
                    .await
            }
            other => other,
        };
        reply.map(value::from_fred)
    }

    /// Runs `script` once per `(key, args)` entry, each call with that one key: grouped by the node
    /// that owns the key, one pipeline per node, nodes concurrently, like [`get_many`](Self::get_many);
    /// results in input order. A redirected call follows `MOVED`/`ASK` as [`eval`](Self::eval) does;
    /// the calls a node refused with `NOSCRIPT` (they did not run) are sent again with the script's
    /// source, as [`eval`](Self::eval) does.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "EVALSHA", keys = calls.len()))]
    pub async fn eval_many<K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        script: &Script,
        calls: &[(K, Vec<A>)],
    ) -> Vec<Result<crate::Value, Error>> {
        let keys: Vec<&[u8]> = calls.iter().map(|(key, _)| key.as_ref()).collect();
        let cmds = calls
            .iter()
            .map(|(key, args)| {
                self.check_key(key.as_ref())?;
                Ok(Cmd::EvalSha {
                    sha: script.sha_str(),
                    keys: Arc::from([Bytes::copy_from_slice(key.as_ref())]),
                    args: args.iter().map(|a| Bytes::copy_from_slice(a.as_ref())).collect(),
                })
            })
            .collect();
        let mut results: Vec<Result<crate::Value, Error>> = Vec::with_capacity(calls.len());
        let mut unknown = Vec::new();
        for (index, result) in self
            .batch(&keys, cmds, Access::Write)
            .await
            .into_iter()
            .enumerate()
        {
            if matches!(&result, Err(error) if is_noscript(error)) {
                unknown.push(index);
            }
            results.push(result.map(value::from_fred));
        }
        let again = unknown.iter().map(|&index| {
            let key = keys[index];
            let args: Vec<&[u8]> = calls[index].1.iter().map(AsRef::as_ref).collect();
            async move { (index, self.eval(script, &[key], &args).await) }
        });
        for (index, result) in futures::future::join_all(again).await {
            results[index] = result;
        }
        results
    }

    /// Runs a Lua script on one given node (for example a replica, for read-only scripts); a node
    /// without the script gets its source, as in [`ClusterClient::eval`].
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "EVALSHA", node = node))]
    pub async fn eval_on_node(
        &self,
        node: &str,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<crate::Value, Error> {
        let reply = match self.node_call(node, evalsha(script, keys, args).to_args()).await {
            Err(error) if is_noscript(&error) => {
                self.node_call(node, eval_source(script, keys, args).to_args())
                    .await
            }
            other => other,
        };
        reply.map(value::from_fred)
    }

    /// Waits up to `timeout` for `replicas` replicas of the primary serving `key` to acknowledge every
    /// write that primary had acknowledged (to this client, on any connection) before the call started;
    /// returns how many did (possibly more than asked, or fewer when the timeout passed).
    ///
    /// `WAIT` never runs on a connection other calls share (it would hold every call queued behind it
    /// on its shard): it runs on a dedicated connection of the node, after a write of a marker key in
    /// `key`'s slot on that same connection, whose acknowledgement implies that of every earlier write
    /// (one ordered replication stream per primary). See the `wait` module for the details, and for
    /// concurrent waits on one node. `timeout` must be from [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT) ([`Error::InvalidDuration`] otherwise; a zero `WAIT`
    /// timeout would block for ever).
    pub async fn wait(&self, key: &[u8], replicas: u32, timeout: Duration) -> Result<u32, Error> {
        Ok(self.wait_outcome(key, replicas, timeout).await?.acked)
    }

    /// [`ClusterClient::wait`], also saying which replication stream (the primary's `master_replid`)
    /// the wait ran on, so a caller that knows where its write was executed can tell whether these
    /// acknowledgements cover it ([`WaitOutcome::covers`]): after a failover, a wait routed to the new
    /// primary says nothing about a write the old one executed.
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "WAIT"))]
    pub async fn wait_outcome(
        &self,
        key: &[u8],
        replicas: u32,
        timeout: Duration,
    ) -> Result<WaitOutcome, Error> {
        self.check_key(key)?;
        let cmd = Cmd::Wait {
            replicas: i64::from(replicas),
            timeout_ms: durations::timeout_ms("wait timeout", timeout)?,
            marker: marker_key(key_slot(key)),
        };
        let reply = self.wait_handle(timeout)?.run(key, cmd, Access::Write).await?;
        WaitOutcome::from_reply(&reply).ok_or_else(|| Error::Reply {
            node: String::new(),
            command: "WAIT".into(),
            detail: format!("unexpected reply {reply:?}"),
        })
    }

    /// A handle whose deadline leaves a `WAIT` of `timeout` time to answer: the call timeout, or the
    /// wait's timeout plus half a second if that is longer (saturating at the longest timeout).
    fn wait_handle(&self, timeout: Duration) -> Result<ClusterClient, Error> {
        let deadline = self
            .timeout()?
            .max(timeout.saturating_add(Duration::from_millis(500)))
            .min(durations::MAX_TIMEOUT.saturating_add(Duration::from_millis(500)));
        Ok(self.with_options(CallOptions {
            timeout: Some(deadline),
            ..self.options.clone()
        }))
    }

    /// A raw command on one node (`host:port`, as in [`Topology`]); the first argument is the command
    /// name. It goes over the node's READONLY connection, so a replica answers reads of its own data.
    ///
    /// `WAIT` is not sent on that shared connection: it runs as [`ClusterClient::wait`] does, on the
    /// node's dedicated wait connection after a marker write in the first slot the node serves, so it
    /// counts the node's writes from every connection and stalls no other call. Its timeout must be 1
    /// to `u32::MAX` milliseconds (`WAIT n 0` would block for ever).
    ///
    /// The reply converts to `R` as [`FromValue`](crate::FromValue) says; one that does not is
    /// [`Error::Reply`].
    #[tracing::instrument(level = "debug", name = "rcc.call", skip_all, fields(command = "NODE_COMMAND", node = node))]
    pub async fn node_command<R: crate::FromValue>(
        &self,
        node: &str,
        args: Vec<crate::Value>,
    ) -> Result<R, Error> {
        let name = args.first().and_then(crate::Value::as_string).unwrap_or_default();
        let reply = self.node_call(node, value::to_fred(args)).await?;
        R::from_value(value::from_fred(reply)).map_err(|e| Error::Reply {
            node: node.into(),
            command: name,
            detail: e.to_string(),
        })
    }

    /// [`ClusterClient::node_command`] in fred's terms, for this crate's own node commands.
    pub(crate) async fn node_call(&self, node: &str, args: Vec<Value>) -> Result<Value, Error> {
        let handle = self.inner.known_node(node)?;
        let mut args = args.into_iter();
        let name = args.next().and_then(|v| v.as_string()).unwrap_or_default();
        let rest: Vec<Value> = args.collect();
        if name.eq_ignore_ascii_case("WAIT") {
            return self.wait_on_node(&handle, &rest).await;
        }
        let started = Instant::now();
        // A node known to be down fails fast; otherwise the call may wait (up to its timeout) for the
        // READONLY connection, which may still be opening right after the node was first seen.
        let options = Options {
            timeout: Some(self.timeout()?),
            fail_fast: !handle.is_up(),
            ..Options::default()
        };
        let result = handle
            .readonly()
            .call(&Cmd::custom(name.as_str(), rest), options)
            .await;
        handle.record_untimed();
        result.map_err(|e| self.inner.to_error(&handle, &name, &e, started))
    }

    /// `WAIT replicas timeout-ms` addressed to one node (see [`ClusterClient::node_command`]).
    async fn wait_on_node(&self, handle: &Arc<NodeHandle>, args: &[Value]) -> Result<Value, Error> {
        let bad = |detail: String| Error::Server {
            node: handle.addr.clone(),
            command: "WAIT".into(),
            message: format!("ERR {detail}"),
        };
        let number = |value: Option<&Value>| value.and_then(value::fred_i64);
        let (Some(replicas), Some(timeout_ms), 2) = (number(args.first()), number(args.get(1)), args.len())
        else {
            return Err(bad("WAIT takes two integers: numreplicas timeout-ms".into()));
        };
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        let timeout_ms = durations::timeout_ms("WAIT timeout", timeout)?;
        let routing = self.inner.routing.load();
        let slot = routing
            .topology
            .shards()
            .iter()
            .find(|s| s.primary == handle.addr)
            .and_then(|s| s.slots.first())
            .map_or(0, |range| range.start());
        drop(routing);
        let cmd = Cmd::Wait {
            replicas: replicas.max(0),
            timeout_ms,
            marker: marker_key(slot),
        };
        let deadline = self.wait_handle(timeout)?.timeout()?;
        let started = Instant::now();
        let result = send(handle, &cmd, deadline, false, false).await;
        handle.record_untimed();
        let reply = result.map_err(|e| self.inner.to_error(handle, "WAIT", &e, started))?;
        // Addressed to a node, `WAIT` answers as Redis does: the count alone.
        let outcome =
            WaitOutcome::from_reply(&reply).ok_or_else(|| bad(format!("unexpected reply {reply:?}")))?;
        Ok(Value::Integer(i64::from(outcome.acked)))
    }

    /// One `SCAN` step on one node: the next cursor (0 when done) and the keys of this step.
    pub async fn scan_node(
        &self,
        node: &str,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: u32,
    ) -> Result<(u64, Vec<Bytes>), Error> {
        let mut args: Vec<Value> = vec!["SCAN".into(), cursor.to_string().into()];
        if let Some(pattern) = pattern {
            args.push("MATCH".into());
            args.push(bytes_arg(pattern));
        }
        args.push("COUNT".into());
        args.push(Value::Integer(count as i64));
        let reply: Value = self.node_call(node, args).await?;
        let bad = |detail: &str| Error::Reply {
            node: node.into(),
            command: "SCAN".into(),
            detail: detail.into(),
        };
        let Value::Array(mut parts) = reply else {
            return Err(bad("not an array"));
        };
        if parts.len() != 2 {
            return Err(bad("not a [cursor, keys] pair"));
        }
        let keys = match parts.pop() {
            Some(Value::Array(keys)) => keys.into_iter().filter_map(|k| k.into_bytes()).collect(),
            _ => return Err(bad("keys are not an array")),
        };
        let cursor = parts
            .pop()
            .and_then(|c| c.as_string())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("bad cursor"))?;
        Ok((cursor, keys))
    }
}

/// Whether a server said it lacks a script (`NOSCRIPT`): the script did not run.
pub(crate) fn is_noscript(error: &Error) -> bool {
    matches!(error, Error::Server { message, .. } if message.starts_with("NOSCRIPT"))
}

/// `EVAL source numkeys keys... args...`: runs the script and caches it on the node.
pub(crate) fn eval_source(script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
    let mut all = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(Value::from(script.source().to_string()));
    all.push(Value::Integer(keys.len() as i64));
    all.extend(keys.iter().chain(args).map(|b| bytes_arg(b)));
    Cmd::custom("EVAL", all)
}

fn evalsha(script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
    Cmd::EvalSha {
        sha: script.sha_str(),
        keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
        args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
    }
}

pub(crate) fn bytes_arg(bytes: &[u8]) -> Value {
    Value::Bytes(Bytes::copy_from_slice(bytes))
}

pub(crate) fn to_bytes(value: Value, command: &str) -> Result<Option<Bytes>, Error> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        Value::String(s) => Ok(Some(s.into_inner())),
        Value::Integer(i) => Ok(Some(Bytes::from(i.to_string()))),
        other => Err(Error::Reply {
            node: String::new(),
            command: command.into(),
            detail: format!("not a string: {other:?}"),
        }),
    }
}

pub(crate) fn to_i64(value: &Value, command: &str) -> Result<i64, Error> {
    match value {
        Value::Integer(i) => Ok(*i),
        other => other.as_i64().ok_or_else(|| Error::Reply {
            node: String::new(),
            command: command.into(),
            detail: format!("not an integer: {other:?}"),
        }),
    }
}
