//! Administrative commands for operator tools (the `rebalance` crate): commands addressed to one node,
//! also a node that is not (yet, or any more) in the topology, and `MIGRATE` with the cluster's
//! credentials appended here, so that the password never leaves this crate in a loggable form.
//!
//! Admin commands run on connections of their own ([`Admin`] holds one per node), never on the
//! connections the application's calls use: `MIGRATE` blocks its source node's connection while it
//! copies a batch, and a call queued behind it would wait for the whole batch. Like a probe connection,
//! an admin connection is fail-fast, has no reconnect policy and no retries, and is dropped at its first
//! connection error or timeout; the next command opens a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_config::{ClusterConfig, NodeAddr};
use fred::prelude::{ClientLike, Options};
use fred::types::{ClusterHash, CustomCommand};

use crate::client::{Failure, classify};
use crate::value::{self, Value};
use crate::{ClusterClient, Error, FromValue, durations, fred_config};

/// What a `MIGRATE` of a batch of keys did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrateReply {
    /// Every key that existed on the source was copied to the target and deleted from the source.
    Moved,
    /// None of the keys existed on the source any more (deleted or expired since they were listed);
    /// nothing was sent.
    NoKey,
    /// The target already holds at least one of the keys (`BUSYKEY`): those keys stay on the source
    /// untouched, every other key of the batch moved. Keys are never sent with `REPLACE`, so the
    /// target's copy is never overwritten; deciding which copy wins is the caller's job.
    BusyKey,
}

/// Administrative access to cluster nodes by address, with the cluster's credentials, on connections
/// no application call shares. Get one from [`ClusterClient::admin`] (or [`Admin::new`] with a
/// configuration); it opens a node's connection on first use and keeps it while it works.
///
/// ```
/// use std::time::Duration;
/// use cluster_client::{Admin, Value};
/// use cluster_config::ClusterConfig;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let _lock = local_cluster::test_lock::shared().await?;
/// # let redis = local_cluster::LocalStandalone::start(1).await?;
/// # let addr = redis.addrs()[0].clone();
/// let admin = Admin::new(&ClusterConfig::builder().nodes([addr.as_str()]).build()?);
/// let pong: String = admin.command(&addr, vec![Value::from("PING")], Duration::from_secs(1)).await?;
/// assert_eq!(pong, "PONG");
/// # Ok(())
/// # }
/// ```
pub struct Admin {
    config: ClusterConfig,
    nodes: Mutex<HashMap<String, Arc<AdminSlot>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password: only the node names are shown.
        let nodes: Vec<String> = self.slots().keys().cloned().collect();
        f.debug_struct("Admin").field("nodes", &nodes).finish()
    }
}

impl ClusterClient {
    /// Administrative access with this client's credentials (see [`Admin`]). Each call returns a new
    /// [`Admin`] with connections of its own.
    pub fn admin(&self) -> Admin {
        Admin::new(self.config())
    }
}

/// One node's admin connection, if one is open. The async lock makes concurrent first uses open one
/// connection, not one each.
struct AdminSlot {
    addr: String,
    node: NodeAddr,
    conn: tokio::sync::Mutex<Option<fred::clients::Client>>,
}

impl Admin {
    /// Admin access with the credentials of `config`. Opens nothing until the first command.
    pub fn new(config: &ClusterConfig) -> Admin {
        Admin {
            config: config.clone(),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AdminSlot>>> {
        // The map is only ever extended or cleared whole, never left half-written: a poisoned lock is
        // usable.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, node: &str) -> Result<Arc<AdminSlot>, Error> {
        let mut nodes = self.slots();
        if let Some(slot) = nodes.get(node) {
            return Ok(slot.clone());
        }
        let parsed: NodeAddr = node.parse().map_err(|_| Error::UnknownNode {
            node: node.into(),
            known: "an address host:port is expected".into(),
        })?;
        let slot = Arc::new(AdminSlot {
            addr: node.to_owned(),
            node: parsed,
            conn: tokio::sync::Mutex::new(None),
        });
        nodes.insert(node.to_owned(), slot.clone());
        Ok(slot)
    }

    /// Sends one command (the first argument is its name) to `node` (`host:port`, in the topology or
    /// not) and waits up to `timeout` for the reply, converted to `R` as [`FromValue`] says.
    ///
    /// Redirects are not followed: a `MOVED`/`ASK` reply is [`Error::Server`] with the server's text.
    /// An error reply is [`Error::Server`], no answer within `timeout` is [`Error::Timeout`], a node
    /// that cannot be reached is [`Error::Connection`]. `timeout` must be from
    /// [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    pub async fn command<R: FromValue>(
        &self,
        node: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<R, Error> {
        let timeout = durations::timeout("Admin::command timeout", timeout)?;
        let name = args.first().and_then(Value::as_string).unwrap_or_default();
        let reply = self.call(node, &name, value::to_fred(args), timeout).await?;
        R::from_value(reply).map_err(|e| Error::Reply {
            node: node.into(),
            command: name,
            detail: e.to_string(),
        })
    }

    /// `MIGRATE target-host target-port "" 0 timeout [AUTH2 user password | AUTH password] KEYS
    /// keys...` on `source`: moves `keys` (all in one slot, normally one being migrated) to `target`.
    ///
    /// The cluster's credentials are appended here when the configuration has them, so the password
    /// never leaves this crate. `REPLACE` is never sent: a key the target already holds is reported as
    /// [`MigrateReply::BusyKey`] and left on the source. `timeout` is `MIGRATE`'s own I/O timeout
    /// between the two nodes; the reply is awaited for twice that plus one second, as the server may
    /// spend up to `timeout` on each step of the copy. With no keys nothing is sent
    /// ([`MigrateReply::NoKey`]).
    pub async fn migrate(
        &self,
        source: &str,
        target: &str,
        keys: &[Bytes],
        timeout: Duration,
    ) -> Result<MigrateReply, Error> {
        let timeout_ms = durations::timeout_ms("MIGRATE timeout", timeout)?;
        if keys.is_empty() {
            return Ok(MigrateReply::NoKey);
        }
        let target_addr: NodeAddr = target.parse().map_err(|_| Error::UnknownNode {
            node: target.into(),
            known: "an address host:port is expected".into(),
        })?;
        let mut args: Vec<fred::types::Value> = Vec::with_capacity(keys.len() + 10);
        args.push(target_addr.host().into());
        args.push(i64::from(target_addr.port()).into());
        args.push("".into());
        args.push(0i64.into());
        args.push(timeout_ms.into());
        if let Some(password) = self.config.password() {
            match self.config.username() {
                Some(user) => {
                    args.push("AUTH2".into());
                    args.push(user.into());
                }
                None => args.push("AUTH".into()),
            }
            args.push(password.expose().into());
        }
        args.push("KEYS".into());
        args.extend(keys.iter().map(|k| fred::types::Value::Bytes(k.clone())));
        let wait = timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
            .min(durations::MAX_TIMEOUT);
        let mut full = Vec::with_capacity(args.len() + 1);
        full.push(fred::types::Value::from("MIGRATE"));
        full.extend(args);
        match self.call(source, "MIGRATE", full, wait).await {
            Ok(reply) => match reply.as_str() {
                Some(text) if text.eq_ignore_ascii_case("NOKEY") => Ok(MigrateReply::NoKey),
                _ => Ok(MigrateReply::Moved),
            },
            Err(Error::Server { message, .. }) if message.contains("BUSYKEY") => Ok(MigrateReply::BusyKey),
            Err(other) => Err(other),
        }
    }

    /// Closes every admin connection (in the background).
    pub fn close(&self) {
        let nodes = std::mem::take(&mut *self.slots());
        for slot in nodes.into_values() {
            if let Ok(mut conn) = slot.conn.try_lock()
                && let Some(client) = conn.take()
            {
                close_in_background(client);
            }
        }
    }

    /// One command on `node`'s admin connection (opened first if there is none, or it broke).
    async fn call(
        &self,
        node: &str,
        name: &str,
        args: Vec<fred::types::Value>,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let slot = self.slot(node)?;
        let client = slot.client(&self.config).await?;
        let mut args = args.into_iter();
        // The command name is the first argument; fred takes it apart from the rest.
        let _ = args.next();
        let command = CustomCommand::new(name.to_string(), ClusterHash::Random, false);
        let options = Options {
            timeout: Some(timeout),
            fail_fast: true,
            max_attempts: Some(1),
            ..Options::default()
        };
        let result = client
            .with_options(&options)
            .custom::<fred::types::Value, fred::types::Value>(command, args.collect())
            .await;
        match result {
            Ok(reply) => Ok(value::from_fred(reply)),
            Err(error) => {
                let failure = classify(&error, slot.node.host());
                if matches!(failure, Failure::Timeout | Failure::Down(_)) {
                    slot.drop_client(&client).await;
                }
                Err(failure.into_error_at(&slot.addr, name, timeout))
            }
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.close();
    }
}

impl AdminSlot {
    /// The open connection, or a new one (connected within the configured connect timeout).
    async fn client(&self, config: &ClusterConfig) -> Result<fred::clients::Client, Error> {
        let mut conn = self.conn.lock().await;
        if let Some(client) = conn.as_ref().filter(|c| c.is_connected()) {
            return Ok(client.clone());
        }
        if let Some(old) = conn.take() {
            close_in_background(old);
        }
        let connect = config.timeouts().connect;
        let client = fred_config::probe_builder(config, &self.node, connect)?
            .build()
            .map_err(|e| Error::Connection {
                node: self.addr.clone(),
                command: "connect".into(),
                message: e.to_string(),
            })?;
        match tokio::time::timeout(connect, client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                close_in_background(client.clone());
                let failure = classify(&error, self.node.host());
                return Err(failure.into_error_at(&self.addr, "connect", connect));
            }
            Err(_) => {
                close_in_background(client);
                return Err(Error::Timeout {
                    command: "connect".into(),
                    node: self.addr.clone(),
                    after: connect,
                });
            }
        }
        *conn = Some(client.clone());
        Ok(client)
    }

    /// Forgets `client` if it is still the slot's connection (another caller may have replaced it).
    async fn drop_client(&self, client: &fred::clients::Client) {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|c| c.id() == client.id())
            && let Some(old) = conn.take()
        {
            close_in_background(old);
        }
    }
}

/// `QUIT` without waiting: on a node that hangs it can take the connect timeout.
fn close_in_background(client: fred::clients::Client) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = client.quit().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use cluster_config::Password;

    use super::*;

    #[tokio::test]
    async fn the_password_never_shows_and_bad_input_sends_nothing() {
        let config = ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .username("ops")
            .password(Password::new("hunter2-secret"))
            .build()
            .expect("valid config");
        let admin = Admin::new(&config);
        // Refused before any connection: a malformed address, a zero timeout.
        let error = admin
            .command::<Value>(
                "not an address",
                vec![Value::from("PING")],
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, Error::UnknownNode { .. }), "{error}");
        let error = admin
            .migrate(
                "127.0.0.1:1",
                "127.0.0.1:2",
                &[Bytes::from_static(b"k")],
                Duration::ZERO,
            )
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidDuration { .. }), "{error}");
        assert_eq!(
            admin
                .migrate("127.0.0.1:1", "127.0.0.1:2", &[], Duration::from_secs(1))
                .await
                .unwrap(),
            MigrateReply::NoKey
        );
        // A node that does not answer is a connection error that names it, without the password.
        let error = admin
            .migrate(
                "127.0.0.1:1",
                "127.0.0.1:2",
                &[Bytes::from_static(b"k")],
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
        for shown in [format!("{admin:?}"), error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
