//! Short-lived admin connections to one node.
//!
//! Each call opens its own fred centralized client and closes it afterwards. Nothing here outlives the
//! call, so a `LocalCluster` can be shared by tests that each run their own tokio runtime.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

use crate::Error;

/// An open admin connection to one node.
pub(crate) struct Conn {
    client: Client,
    addr: String,
}

impl Conn {
    /// Connects to `127.0.0.1:port`, failing within `timeout` when nothing answers.
    pub(crate) async fn open(port: u16, timeout: Duration) -> Result<Conn, Error> {
        let addr = format!("127.0.0.1:{port}");
        let config = Config {
            server: ServerConfig::new_centralized("127.0.0.1", port),
            fail_fast: true,
            ..Config::default()
        };
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                c.auto_client_setname = false;
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(30))
            .build()
            .map_err(|source| Error::Command {
                addr: addr.clone(),
                command: "connect".into(),
                source,
            })?;
        match tokio::time::timeout(timeout, client.init()).await {
            Ok(Ok(_)) => Ok(Conn { client, addr }),
            Ok(Err(source)) => {
                close_in_background(client);
                Err(Error::Command {
                    addr,
                    command: "connect".into(),
                    source,
                })
            }
            Err(_) => {
                close_in_background(client);
                Err(Error::Command {
                    addr,
                    command: "connect".into(),
                    source: fred::error::Error::new(fred::error::ErrorKind::Timeout, "connection timed out"),
                })
            }
        }
    }

    /// Sends one command (`args[0]` is the command name) and converts the reply.
    pub(crate) async fn call<R: FromValue>(&self, args: Vec<Value>) -> Result<R, Error> {
        let mut args = args.into_iter();
        let name = args
            .next()
            .and_then(|v| v.as_string())
            .ok_or_else(|| Error::Invalid("a command needs a name".into()))?;
        let rest: Vec<Value> = args.collect();
        let describe = || describe(&name, &rest);
        let reply: Value = self
            .client
            .custom(
                CustomCommand::new(name.clone(), ClusterHash::Random, false),
                rest.clone(),
            )
            .await
            .map_err(|source| Error::Command {
                addr: self.addr.clone(),
                command: describe(),
                source,
            })?;
        R::from_value(reply).map_err(|source| Error::Command {
            addr: self.addr.clone(),
            command: describe(),
            source,
        })
    }

    /// Like [`Conn::call`] for commands whose words are all text.
    pub(crate) async fn call_str<R: FromValue>(&self, words: &[&str]) -> Result<R, Error> {
        self.call(words.iter().map(|w| Value::from(*w)).collect()).await
    }

    /// `INFO <section>` parsed into `field -> value` pairs.
    pub(crate) async fn info(&self, section: &str) -> Result<Info, Error> {
        let text: String = self.call_str(&["INFO", section]).await?;
        Ok(Info::parse(&text))
    }

    /// `CLUSTER INFO` parsed into `field -> value` pairs.
    pub(crate) async fn cluster_info(&self) -> Result<Info, Error> {
        let text: String = self.call_str(&["CLUSTER", "INFO"]).await?;
        Ok(Info::parse(&text))
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes the connection without waiting for the server's goodbye.
    pub(crate) fn close(self) {
        close_in_background(self.client);
    }
}

fn describe(name: &str, rest: &[Value]) -> String {
    let mut words = vec![name.to_string()];
    words.extend(
        rest.iter()
            .take(3)
            .map(|v| v.as_str_lossy().map(|s| s.into_owned()).unwrap_or_default()),
    );
    if rest.len() > 3 {
        words.push("...".into());
    }
    words.join(" ")
}

/// `quit()` on a client whose node is gone can take the command timeout, so it runs in its own task.
fn close_in_background(client: Client) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = client.quit().await;
        });
    }
}

/// Parsed `INFO` output.
#[derive(Debug, Clone, Default)]
pub struct Info {
    fields: Vec<(String, String)>,
}

impl Info {
    pub(crate) fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Info { fields }
    }

    /// The raw value of one field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }

    /// One field parsed as an integer.
    pub fn get_u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }
}
