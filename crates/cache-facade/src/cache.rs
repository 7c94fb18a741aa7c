//! The `Cache` type and its construction: the client, versioned writes, background health and repair.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cluster_client::ClusterClient;
use cluster_config::ClusterConfig;
use consistency::{FailoverRepairTask, Versioned};
use near_cache::{NearCache, WriteGuard};

use crate::Error;
use crate::config::CacheConfig;
use crate::lease;
use crate::loading::Flight;
use crate::stats::Counters;

pub(crate) struct Inner {
    pub(crate) client: ClusterClient,
    pub(crate) versioned: Option<Versioned>,
    pub(crate) config: CacheConfig,
    pub(crate) flights: Mutex<HashMap<Vec<u8>, Flight>>,
    pub(crate) lease_scripts: lease::Scripts,
    pub(crate) stats: Counters,
    #[cfg(feature = "health")]
    pub(crate) health: Option<health::HealthChecker>,
    #[cfg(feature = "health")]
    pub(crate) _health_task: Option<health::HealthTask>,
    pub(crate) _repair: Option<FailoverRepairTask>,
    pub(crate) near: Option<NearCache>,
}

/// A typed cache over a Redis Cluster (or one Redis, or sharded standalone nodes). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.inner.config)
            .field("client", &self.inner.client)
            .finish()
    }
}

impl Cache {
    /// Connects with the default [`CacheConfig`].
    pub async fn connect(cluster: ClusterConfig) -> Result<Cache, Error> {
        Cache::with_config(cluster, CacheConfig::default()).await
    }

    /// Connects with configuration from the `REDIS_*` environment (and `REDIS_CONFIG_FILE`).
    pub async fn from_env() -> Result<Cache, Error> {
        Cache::connect(ClusterConfig::from_env()?).await
    }

    /// Connects with the given cache configuration; starts failover repair when writes are versioned.
    pub async fn with_config(cluster: ClusterConfig, config: CacheConfig) -> Result<Cache, Error> {
        let client = ClusterClient::connect(cluster).await?;
        Cache::from_client(client, config)
    }

    /// Builds the cache over an existing client.
    pub fn from_client(client: ClusterClient, config: CacheConfig) -> Result<Cache, Error> {
        let client = client.with_options(config.call.clone());
        let versioned = config
            .versioned
            .clone()
            .map(|c| Versioned::new(client.clone(), c))
            .transpose()?;
        let repair = versioned
            .as_ref()
            .filter(|v| v.journal().is_some())
            .map(Versioned::spawn_failover_repair);
        // No metrics recorder is installed here: that is the application's call (`install_prometheus`),
        // as a library that installed one would take the choice of recorder away from it.
        #[cfg(feature = "health")]
        let (health, health_task) = if config.health {
            let settings = health::HealthConfig::from_config(client.config());
            let checker = health::HealthChecker::for_client(&client, settings)?;
            let task = checker.spawn();
            (Some(checker), Some(task))
        } else {
            (None, None)
        };
        let near = config
            .near
            .clone()
            .map(|settings| NearCache::new(client.clone(), settings))
            .transpose()?;
        Ok(Cache {
            inner: Arc::new(Inner {
                near,
                client,
                versioned,
                config,
                flights: Mutex::new(HashMap::new()),
                lease_scripts: lease::Scripts::new(),
                stats: Counters::default(),
                #[cfg(feature = "health")]
                health,
                #[cfg(feature = "health")]
                _health_task: health_task,
                _repair: repair,
            }),
        })
    }

    /// The near cache, when [`CacheConfig::near`] is set (its stats, `forget`, `clear`).
    pub fn near(&self) -> Option<&NearCache> {
        self.inner.near.as_ref()
    }

    /// A guard that keeps this process reading its own write of `key` through the near cache (none
    /// without one): hold it until the write returned.
    pub(crate) fn near_guard(&self, key: &[u8]) -> Option<WriteGuard> {
        self.inner.near.as_ref().map(|near| near.write_guard(key))
    }

    /// [`near_guard`](Self::near_guard) for many keys.
    pub(crate) fn near_guard_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Option<WriteGuard> {
        self.inner.near.as_ref().map(|near| near.write_guard_many(keys))
    }

    /// The cluster client underneath.
    pub fn client(&self) -> &ClusterClient {
        &self.inner.client
    }

    /// The versioned-write handle, when writes are versioned (journal, sync history, audits).
    pub fn versioned(&self) -> Option<&Versioned> {
        self.inner.versioned.as_ref()
    }

    /// The background health checker (snapshots, summary, alerts, trends), unless turned off. Only with
    /// the `health` feature.
    #[cfg(feature = "health")]
    pub fn health(&self) -> Option<&health::HealthChecker> {
        self.inner.health.as_ref()
    }

    /// A health summary from a collection round run now over every node (the background loop keeps
    /// running on its own interval). `None` when health collection is turned off. Only with the
    /// `health` feature.
    #[cfg(feature = "health")]
    pub async fn cluster_health_summary(&self) -> Option<health::HealthSummary> {
        let checker = self.inner.health.as_ref()?;
        checker.check_now().await;
        checker.cluster_health_summary()
    }

    /// The cache configuration (the cluster configuration is the client's, [`ClusterClient::config`]).
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The key as stored: `namespace:key`.
    pub fn full_key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        let key = key.as_ref();
        match &self.inner.config.namespace {
            Some(ns) => {
                let mut full = Vec::with_capacity(ns.len() + 1 + key.len());
                full.extend_from_slice(ns.as_bytes());
                full.push(b':');
                full.extend_from_slice(key);
                full
            }
            None => key.to_vec(),
        }
    }
}
