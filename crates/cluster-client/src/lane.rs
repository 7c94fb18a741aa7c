//! Commands and the connections they travel on.
//!
//! A [`Cmd`] is one of the commands cluster-client sends, issued through fred's *typed* methods
//! (`get`, `set`, `evalsha`, ...). fred flushes the socket after every `custom()` command, but after a
//! typed one only when its command queue is empty, so typed commands share `write`s under load.
//!
//! A [`Lane`] is one fred connection plus a small driver task. A call that finds nothing else in flight
//! on its lane goes straight to fred. Under load, calls queue for the driver, which yields once so that
//! every task ready to run can queue its command too, then hands them all to fred in one go: fred's
//! router sees a full queue, writes them together and flushes once. Measured on this 2-core machine
//! (`cargo xtask load --workloads get,set --pool-size 1 --clients ours,fred,per-node`): without the
//! driver, one fred client per node made one `writev` per command and reached ~0.8× the ops/s of
//! fred's cluster client (which sends all nodes' commands through one router task); with it, fewer
//! writes per command than fred's cluster client. See docs/ARCHITECTURE.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use fred::bytes_utils::Str;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Expiration, Key, SetOptions as FredSetOptions};
use futures::StreamExt;
use futures_buffered::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

/// A command cluster-client sends; cheap to clone (keys and values are shared `Bytes`).
#[derive(Debug, Clone)]
pub(crate) enum Cmd {
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        /// `PX` milliseconds.
        ttl_ms: Option<i64>,
        /// `NX` / `XX`.
        condition: Option<FredSetOptions>,
    },
    Del(Bytes),
    Exists(Bytes),
    Pexpire(Bytes, i64),
    Pttl(Bytes),
    EvalSha {
        sha: Str,
        keys: Arc<[Bytes]>,
        args: Arc<[Bytes]>,
    },
    /// `WAIT replicas timeout-ms` after a write of `marker`; never sent on a lane, only on a node's
    /// dedicated wait connections (see the `wait` module).
    Wait {
        replicas: i64,
        timeout_ms: i64,
        marker: Bytes,
    },
    /// Anything else, by name (flushed at once by fred: used for rare commands only).
    Custom {
        name: Arc<str>,
        args: Vec<Value>,
    },
}

impl Cmd {
    /// A rarely sent command by name.
    pub(crate) fn custom(name: impl Into<Arc<str>>, args: Vec<Value>) -> Cmd {
        Cmd::Custom {
            name: name.into(),
            args,
        }
    }

    /// The command's name, for errors and logs.
    pub(crate) fn name(&self) -> &str {
        match self {
            Cmd::Get(_) => "GET",
            Cmd::Set { .. } => "SET",
            Cmd::Del(_) => "DEL",
            Cmd::Exists(_) => "EXISTS",
            Cmd::Pexpire(..) => "PEXPIRE",
            Cmd::Pttl(_) => "PTTL",
            Cmd::EvalSha { .. } => "EVALSHA",
            Cmd::Wait { .. } => "WAIT",
            Cmd::Custom { name, .. } => name,
        }
    }

    /// The whole command as arguments (name first), for a raw per-node command.
    pub(crate) fn to_args(&self) -> Vec<Value> {
        let key = |k: &Bytes| Value::Bytes(k.clone());
        let mut args: Vec<Value> = vec![Value::from(self.name().to_string())];
        match self {
            Cmd::Get(k) | Cmd::Del(k) | Cmd::Exists(k) | Cmd::Pttl(k) => args.push(key(k)),
            Cmd::Set {
                key: k,
                value,
                ttl_ms,
                condition,
            } => {
                args.push(key(k));
                args.push(Value::Bytes(value.clone()));
                if let Some(ms) = ttl_ms {
                    args.push("PX".into());
                    args.push(Value::Integer(*ms));
                }
                match condition {
                    Some(FredSetOptions::NX) => args.push("NX".into()),
                    Some(FredSetOptions::XX) => args.push("XX".into()),
                    None => {}
                }
            }
            Cmd::Pexpire(k, ms) => {
                args.push(key(k));
                args.push(Value::Integer(*ms));
            }
            Cmd::EvalSha { sha, keys, args: a } => {
                args.push(Value::from(sha.to_string()));
                args.push(Value::Integer(keys.len() as i64));
                args.extend(keys.iter().map(key));
                args.extend(a.iter().map(key));
            }
            Cmd::Wait {
                replicas, timeout_ms, ..
            } => {
                args.push(Value::Integer(*replicas));
                args.push(Value::Integer(*timeout_ms));
            }
            Cmd::Custom { args: rest, .. } => args.extend(rest.iter().cloned()),
        }
        args
    }

    /// Issues the command on `client` (a client, a client with options, or a pipeline).
    /// `EVALSHA` goes as a custom command: fred 10 has no `LuaInterface` on clients with options or on
    /// pipelines (and flushes a typed `EVALSHA` at once anyway).
    pub(crate) async fn issue<C>(&self, client: &C) -> Result<Value, fred::error::Error>
    where
        C: KeysInterface + ServerInterface + ClientLike + Sync,
    {
        match self {
            Cmd::Get(key) => client.get(Key::from(key.clone())).await,
            Cmd::Set {
                key,
                value,
                ttl_ms,
                condition,
            } => {
                client
                    .set(
                        Key::from(key.clone()),
                        Value::Bytes(value.clone()),
                        ttl_ms.map(Expiration::PX),
                        condition.clone(),
                        false,
                    )
                    .await
            }
            Cmd::Del(key) => client.del(Key::from(key.clone())).await,
            Cmd::Exists(key) => client.exists(Key::from(key.clone())).await,
            Cmd::Pexpire(key, ms) => client.pexpire(Key::from(key.clone()), *ms, None).await,
            Cmd::Pttl(key) => client.pttl(Key::from(key.clone())).await,
            Cmd::EvalSha { sha, keys, args } => {
                let mut all = Vec::with_capacity(2 + keys.len() + args.len());
                all.push(Value::String(sha.clone()));
                all.push(Value::Integer(keys.len() as i64));
                all.extend(keys.iter().chain(args.iter()).map(|b| Value::Bytes(b.clone())));
                let command = CustomCommand::new_static("EVALSHA", ClusterHash::Random, false);
                client.custom(command, all).await
            }
            // Only reached if a wait were ever sent on a shared connection; `send` never does.
            Cmd::Wait {
                replicas, timeout_ms, ..
            } => client.wait(*replicas, (*timeout_ms).max(1)).await,
            Cmd::Custom { name, args } => {
                let command = CustomCommand::new(name.to_string(), ClusterHash::Random, false);
                client.custom(command, args.clone()).await
            }
        }
    }

    /// Appends the command in RESP to `buf`, for a batch connection (see the `bulk` module); `false`
    /// (and nothing appended) for the commands that never go there (`WAIT`, custom commands).
    pub(crate) fn encode(&self, buf: &mut bytes::BytesMut) -> bool {
        use redis_protocol::resp2::types::BorrowedFrame as F;
        let one = |buf: &mut bytes::BytesMut, name: &'static [u8], key: &Bytes| {
            crate::bulk::encode(buf, &[F::BulkString(name), F::BulkString(key)]);
        };
        let mut ms = itoa::Buffer::new();
        match self {
            Cmd::Get(key) => one(buf, b"GET", key),
            Cmd::Del(key) => one(buf, b"DEL", key),
            Cmd::Exists(key) => one(buf, b"EXISTS", key),
            Cmd::Pttl(key) => one(buf, b"PTTL", key),
            Cmd::Pexpire(key, millis) => crate::bulk::encode(
                buf,
                &[
                    F::BulkString(b"PEXPIRE"),
                    F::BulkString(key),
                    F::BulkString(ms.format(*millis).as_bytes()),
                ],
            ),
            Cmd::Set {
                key,
                value,
                ttl_ms,
                condition,
            } => {
                let mut frames = [
                    F::BulkString(b"SET"),
                    F::BulkString(key),
                    F::BulkString(value),
                    F::Null,
                    F::Null,
                    F::Null,
                ];
                let mut len = 3;
                if let Some(millis) = ttl_ms {
                    frames[3] = F::BulkString(b"PX");
                    frames[4] = F::BulkString(ms.format(*millis).as_bytes());
                    len = 5;
                }
                match condition {
                    Some(FredSetOptions::NX) => {
                        frames[len] = F::BulkString(b"NX");
                        len += 1;
                    }
                    Some(FredSetOptions::XX) => {
                        frames[len] = F::BulkString(b"XX");
                        len += 1;
                    }
                    None => {}
                }
                crate::bulk::encode(buf, &frames[..len]);
            }
            Cmd::EvalSha { sha, keys, args } => {
                let numkeys = ms.format(keys.len());
                let mut frames = Vec::with_capacity(3 + keys.len() + args.len());
                frames.push(F::BulkString(b"EVALSHA"));
                frames.push(F::BulkString(sha.as_bytes()));
                frames.push(F::BulkString(numkeys.as_bytes()));
                frames.extend(keys.iter().chain(args.iter()).map(|b| F::BulkString(b)));
                crate::bulk::encode(buf, &frames);
            }
            Cmd::Wait { .. } | Cmd::Custom { .. } => return false,
        }
        true
    }
}

/// A queued call: the command, its options, and where the reply goes.
struct Job {
    cmd: Cmd,
    options: Options,
    reply: oneshot::Sender<Result<Value, fred::error::Error>>,
}

/// One fred connection and its driver.
pub(crate) struct Lane {
    pub(crate) client: Client,
    queue: mpsc::UnboundedSender<Job>,
    /// Calls in flight on this lane (direct or queued).
    busy: AtomicUsize,
}

impl Lane {
    /// Wraps `client` and spawns its driver on the current tokio runtime.
    pub(crate) fn new(client: Client) -> Lane {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(drive(client.clone(), jobs));
        Lane {
            client,
            queue,
            busy: AtomicUsize::new(0),
        }
    }

    /// Calls in flight on this lane.
    pub(crate) fn in_flight(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Sends `cmd` with `options`: directly when nothing else is in flight on this lane, otherwise
    /// through the driver, which batches it with the other calls that are ready.
    pub(crate) async fn call(&self, cmd: &Cmd, options: Options) -> Result<Value, fred::error::Error> {
        let busy = Busy::enter(&self.busy);
        if busy.alone {
            // Boxed: fred's command futures are ~5 KB, and a call future that size would be copied
            // around on every call through every layer above.
            let client = self.client.with_options(&options);
            return Box::pin(cmd.issue(&client)).await;
        }
        let (reply, replied) = oneshot::channel();
        let job = Job {
            cmd: cmd.clone(),
            options,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = self.queue.send(job) {
            // The driver has ended (its runtime is gone): send it ourselves.
            let client = self.client.with_options(&job.options);
            return Box::pin(job.cmd.issue(&client)).await;
        }
        replied
            .await
            .unwrap_or_else(|_| Err(fred::error::Error::new_canceled()))
    }
}

/// Counts calls in flight on a lane for as long as it lives (also when the call is dropped).
struct Busy<'a> {
    count: &'a AtomicUsize,
    alone: bool,
}

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Busy<'a> {
        let before = count.fetch_add(1, Ordering::Relaxed);
        Busy {
            count,
            alone: before == 0,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The driver: takes every queued job at once and keeps them all in flight, answering each as its
/// reply arrives. Ends when the lane is dropped and the last job has been answered.
///
/// A fred command future is ~5 KB; `futures_buffered::FuturesUnordered` keeps them in reusable slots
/// instead of one allocation each (measured: GET ~5% less client CPU per call than with
/// `futures::stream::FuturesUnordered`, SET equal, `cargo xtask load --workloads get,set --clients ours`
/// alternated 3×).
async fn drive(client: Client, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            job = jobs.recv() => {
                let Some(job) = job else { break };
                // Let every other task that is ready run first and queue its command, so that fred gets
                // them together and writes them with one flush.
                tokio::task::yield_now().await;
                in_flight.push(run(client.clone(), job));
                while let Ok(job) = jobs.try_recv() {
                    in_flight.push(run(client.clone(), job));
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

async fn run(client: Client, job: Job) {
    let result = job.cmd.issue(&client.with_options(&job.options)).await;
    let _ = job.reply.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_future_stays_small() {
        // fred's command futures are ~5 KB; the lane boxes them (direct path) or keeps them in the
        // driver's reusable slots (queued path), so a call does not carry one.
        let lane = Lane::new(Builder::default_centralized().build().unwrap());
        let cmd = Cmd::Get(Bytes::from_static(b"k"));
        let call = lane.call(&cmd, Options::default());
        assert!(
            std::mem::size_of_val(&call) < 1024,
            "{} bytes",
            std::mem::size_of_val(&call)
        );
    }

    #[test]
    fn busy_counts_calls_in_flight() {
        let count = AtomicUsize::new(0);
        let first = Busy::enter(&count);
        let second = Busy::enter(&count);
        assert!(first.alone && !second.alone);
        assert_eq!(count.load(Ordering::Relaxed), 2);
        drop(first);
        drop(second);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert!(Busy::enter(&count).alone);
    }

    #[test]
    fn names_and_args() {
        let set = Cmd::Set {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ttl_ms: Some(1500),
            condition: Some(FredSetOptions::NX),
        };
        assert_eq!(set.name(), "SET");
        let args: Vec<String> = set.to_args().iter().filter_map(Value::as_string).collect();
        assert_eq!(args, ["SET", "k", "v", "PX", "1500", "NX"]);
        let eval = Cmd::EvalSha {
            sha: Str::from("abc"),
            keys: vec![Bytes::from_static(b"k")].into(),
            args: vec![Bytes::from_static(b"a")].into(),
        };
        let args: Vec<String> = eval.to_args().iter().filter_map(Value::as_string).collect();
        assert_eq!(args, ["EVALSHA", "abc", "1", "k", "a"]);
    }
}
