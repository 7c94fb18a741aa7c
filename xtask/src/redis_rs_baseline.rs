//! redis-rs (the `redis` crate's async cluster client on tokio) as a peer of `cargo xtask load`,
//! built the way its users build it and with its best documented settings. None of our own settings
//! (`ClusterConfig`) configure it: a peer measured with our choices would measure our choices.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;

/// Connections in the best variant's pool. redis-rs's cluster connection multiplexes every caller
/// onto one socket per node, so independent connections (each with its own sockets and driver task)
/// are how its users spread load; as many as fred's best variant has clients, so both peers get the
/// same number of sockets.
pub(crate) const BEST_POOL_SIZE: usize = crate::fred_baseline::BEST_POOL_SIZE;

/// One or more redis-rs cluster connections, handed out in turn.
pub(crate) struct RedisRs {
    connections: Vec<ClusterConnection>,
    next: AtomicUsize,
}

impl RedisRs {
    /// As a user writes it: `ClusterClient::new(nodes)` and one `get_async_connection()` shared (cloned)
    /// by every task, every setting at its default.
    pub(crate) async fn defaults(seeds: &[String]) -> Result<RedisRs> {
        let client = ClusterClient::new(urls(seeds)).context("building redis-rs's cluster client")?;
        Self::connect(&client, 1).await
    }

    /// Its best documented settings: a pool of [`BEST_POOL_SIZE`] connections, `TCP_NODELAY` on (off
    /// by default), reads from primaries only (the default; replicas would add a hop of replication
    /// lag, not speed, on one machine).
    pub(crate) async fn best(seeds: &[String]) -> Result<RedisRs> {
        let client = ClusterClientBuilder::new(urls(seeds))
            .tcp_settings(TcpSettings::default().set_nodelay(true))
            .build()
            .context("building redis-rs's cluster client")?;
        Self::connect(&client, BEST_POOL_SIZE).await
    }

    /// As its users build it for a cache that must ride out failovers (the chaos drills' peer):
    /// `ClusterClient::builder(nodes)` with its documented `response_timeout` and `connection_timeout`
    /// both set to `timeout`, every other setting at its default (16 retries with its own backoff,
    /// reads from primaries, RESP2), and one connection shared (cloned) by every task. The response
    /// timeout is the one choice made for it: redis-rs's cluster client has none by default, so a call
    /// to a stopped node would wait for ever; with it, redis-rs also bounds each whole call (retries and
    /// redirects included) by the same duration, as ours and fred's calls are bounded.
    pub(crate) async fn with_timeouts(seeds: &[String], timeout: Duration) -> Result<RedisRs> {
        let client = ClusterClient::builder(urls(seeds))
            .response_timeout(timeout)
            .connection_timeout(timeout)
            .build()
            .context("building redis-rs's cluster client")?;
        Self::connect(&client, 1).await
    }

    /// With its client-side cache (`cache-aio`), as its docs build it: RESP3
    /// (`use_protocol(ProtocolVersion::RESP3)`) and `cache_config(CacheConfig::new())` (every read
    /// cached, 10,000 keys per connection, 30 min client TTL), one connection shared by every task.
    pub(crate) async fn cached(seeds: &[String]) -> Result<RedisRs> {
        let client = ClusterClientBuilder::new(urls(seeds))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .cache_config(redis::caching::CacheConfig::new())
            .build()
            .context("building redis-rs's cluster client with its client-side cache")?;
        Self::connect(&client, 1).await
    }

    /// [`RedisRs::cached`] with the drills' `response_timeout` and `connection_timeout` (see
    /// [`RedisRs::with_timeouts`]), for the near-cache checker.
    pub(crate) async fn cached_with_timeouts(seeds: &[String], timeout: Duration) -> Result<RedisRs> {
        let client = ClusterClientBuilder::new(urls(seeds))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .cache_config(redis::caching::CacheConfig::new())
            .response_timeout(timeout)
            .connection_timeout(timeout)
            .build()
            .context("building redis-rs's cluster client with its client-side cache")?;
        Self::connect(&client, 1).await
    }

    /// Hits and misses of the client-side cache over every connection (`None` without one).
    pub(crate) fn cache_hits_misses(&self) -> Option<(u64, u64)> {
        let mut total = None;
        for connection in &self.connections {
            if let Some(stats) = connection.get_cache_statistics() {
                let (h, m) = total.unwrap_or((0, 0));
                total = Some((h + stats.hit as u64, m + stats.miss as u64));
            }
        }
        total
    }

    async fn connect(client: &ClusterClient, count: usize) -> Result<RedisRs> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            connections.push(
                client
                    .get_async_connection()
                    .await
                    .context("connecting redis-rs's cluster client")?,
            );
        }
        Ok(RedisRs {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection of the pool, round-robin (a clone: redis-rs connections are handles).
    pub(crate) fn connection(&self) -> ClusterConnection {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[index].clone()
    }

    /// How many connections this variant holds.
    pub(crate) fn len(&self) -> usize {
        self.connections.len()
    }
}

/// `host:port` seeds as the `redis://` URLs redis-rs takes (IPv6 hosts in brackets).
fn urls(seeds: &[String]) -> Vec<String> {
    seeds
        .iter()
        .map(|seed| match seed.rsplit_once(':') {
            Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
                format!("redis://[{host}]:{port}/")
            }
            _ => format!("redis://{seed}/"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_become_redis_urls() {
        let seeds = [
            "127.0.0.1:7000".to_string(),
            "::1:7001".to_string(),
            "[::1]:7002".to_string(),
        ];
        assert_eq!(
            urls(&seeds),
            [
                "redis://127.0.0.1:7000/",
                "redis://[::1]:7001/",
                "redis://[::1]:7002/"
            ]
        );
    }
}
