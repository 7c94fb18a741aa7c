//! The typed cache: codecs, TTL jitter, negative caching, single-flight loads, leases, fail-safe.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{CallOptions, ClusterClient, Script, SetCondition, SetOptions, Ttl};
use cluster_config::ClusterConfig;
use consistency::{
    ConsistencyConfig, Envelope, FailoverRepairTask, Version, Versioned, WriteOptions, WriteOutcome,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::codec::{self, Codec, Stored};
use crate::{CacheStats, Error};

/// Fills a key only while it still holds this caller's lease; a delete or another write in the
/// meantime removes the lease and the fill is refused.
const LEASE_FILL: &str = r#"-- cache-facade: lease fill
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
  return 1
end
return 0
"#;

/// The facade's own settings (the connection settings are in [`ClusterConfig`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Prefix for every key (`namespace:key`), so several caches can share a cluster.
    pub namespace: Option<String>,
    /// How values become bytes.
    pub codec: Codec,
    /// Encoded values of at least this many bytes are LZ4-compressed; `None` never compresses.
    pub compress_at_bytes: Option<usize>,
    /// Share of each TTL removed at random (0.1: a TTL of 100 s becomes 90–100 s), so keys written
    /// together do not expire together. 0 to 0.5.
    pub ttl_jitter: f64,
    /// How long `get_or_load` remembers that the loader found nothing; `None` does not remember.
    pub negative_ttl: Option<Duration>,
    /// Write through consistency's versioned last-write-wins writes (on by default): a slow loader's
    /// old value never overwrites a newer one, and a delete wins over a load that started before it.
    pub versioned: Option<ConsistencyConfig>,
    /// Cross-process load leases for `get_or_load`: the first process loads, the others wait up to this
    /// long for its value. `None` (the default) keeps single-flight within the process only.
    pub lease: Option<Duration>,
    /// When Redis cannot be reached, `get_or_load` answers from the loader instead of failing.
    pub fail_safe: bool,
    /// Per-call options (timeout, replica reads, waiting for a failover).
    pub call: CallOptions,
    /// Background health collection (every `REDIS_HEALTH_INTERVAL_MS`, 30 s by default); `false` to
    /// run none.
    pub health: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            namespace: None,
            codec: Codec::Json,
            compress_at_bytes: Some(1024),
            ttl_jitter: 0.1,
            negative_ttl: Some(Duration::from_secs(30)),
            versioned: Some(ConsistencyConfig::default()),
            lease: None,
            fail_safe: false,
            call: CallOptions::default(),
            health: true,
        }
    }
}

impl CacheSettings {
    fn validate(&self) -> Result<(), Error> {
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return Err(Error::Settings(format!(
                "ttl_jitter is {}; use a share from 0.0 to 0.5",
                self.ttl_jitter
            )));
        }
        if self.namespace.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Settings(
                "namespace is empty; use None for no namespace".into(),
            ));
        }
        if self.lease.is_some_and(|l| l < Duration::from_millis(10)) {
            return Err(Error::Settings(
                "lease is under 10 ms; use at least the loader's usual time".into(),
            ));
        }
        Ok(())
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// The value is stored.
    Written,
    /// A newer value (or a newer delete) was already stored; nothing changed.
    Stale,
}

type Flight = Arc<OnceCell<Bytes>>;

/// A write ready to send: full key, framed value, TTL after jitter.
type Framed = (Vec<u8>, Vec<u8>, Option<Duration>);

struct Inner {
    client: ClusterClient,
    versioned: Option<Versioned>,
    settings: CacheSettings,
    flights: Mutex<HashMap<Vec<u8>, Flight>>,
    lease_fill: Script,
    stats: Counters,
    health: Option<health::HealthChecker>,
    _health_task: Option<health::HealthTask>,
    _repair: Option<FailoverRepairTask>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    stale_refused: AtomicU64,
    fail_safe: AtomicU64,
}

impl Counters {
    fn bump(&self, counter: &AtomicU64, name: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name).increment(1);
    }
}

/// A typed cache over a Redis Cluster (or one Redis, or sharded standalone nodes). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("settings", &self.inner.settings)
            .field("client", &self.inner.client)
            .finish()
    }
}

impl Cache {
    /// Connects with the default settings.
    pub async fn connect(config: ClusterConfig) -> Result<Cache, Error> {
        Cache::with_settings(config, CacheSettings::default()).await
    }

    /// Connects with configuration from the `REDIS_*` environment (and `REDIS_CONFIG_FILE`).
    pub async fn from_env() -> Result<Cache, Error> {
        Cache::connect(ClusterConfig::from_env()?).await
    }

    /// Connects with the given settings; starts failover repair when writes are versioned.
    pub async fn with_settings(config: ClusterConfig, settings: CacheSettings) -> Result<Cache, Error> {
        settings.validate()?;
        let client = ClusterClient::connect(config).await?;
        Cache::from_client(client, settings)
    }

    /// Builds the cache over an existing client.
    pub fn from_client(client: ClusterClient, settings: CacheSettings) -> Result<Cache, Error> {
        settings.validate()?;
        let client = client.with_options(settings.call.clone());
        let versioned = settings
            .versioned
            .clone()
            .map(|c| Versioned::new(client.clone(), c))
            .transpose()?;
        let repair = versioned
            .as_ref()
            .filter(|v| v.journal().is_some())
            .map(Versioned::spawn_failover_repair);
        let config = client.config().clone();
        if config.metrics().enabled {
            // One process-wide recorder: if the application installed its own, keep it.
            if let Err(error) = health::install_prometheus(config.metrics().listen) {
                tracing::warn!(%error, "metrics endpoint not started");
            }
        }
        let (health, health_task) = if settings.health {
            let options = health::HealthOptions::from_config(&config);
            let checker = health::HealthChecker::for_client(&client, options)?;
            let task = checker.spawn();
            (Some(checker), Some(task))
        } else {
            (None, None)
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                client,
                versioned,
                settings,
                flights: Mutex::new(HashMap::new()),
                lease_fill: Script::new(LEASE_FILL),
                stats: Counters::default(),
                health,
                _health_task: health_task,
                _repair: repair,
            }),
        })
    }

    /// The cluster client underneath.
    pub fn client(&self) -> &ClusterClient {
        &self.inner.client
    }

    /// The versioned-write handle, when writes are versioned (journal, sync history, audits).
    pub fn versioned(&self) -> Option<&Versioned> {
        self.inner.versioned.as_ref()
    }

    /// The background health checker (snapshots, summary, alerts, trends), unless turned off.
    pub fn health(&self) -> Option<&health::HealthChecker> {
        self.inner.health.as_ref()
    }

    /// A health summary from a collection round run now over every node (the background loop keeps
    /// running on its own interval). `None` when health collection is turned off.
    pub async fn cluster_health_summary(&self) -> Option<health::HealthSummary> {
        let checker = self.inner.health.as_ref()?;
        checker.check_now().await;
        checker.cluster_health_summary()
    }

    /// Warms the cache with typed entries `(key, value, ttl, priority)`: grouped by shard, highest
    /// priority first, written in parallel per node (versioned when writes are versioned), validated on
    /// the replicas, rolled back past the configured share of bad entries. Values are encoded with this
    /// cache's codec, so `get` reads them back.
    pub async fn warm_up<T, K, I>(
        &self,
        entries: I,
        config: warmup::WarmupConfig,
    ) -> Result<warmup::Report, Error>
    where
        T: Serialize,
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (K, T, Option<Duration>, warmup::Priority)>,
    {
        self.warm_up_with_progress(entries, config, |_| {}).await
    }

    /// [`Cache::warm_up`] with a callback that receives progress (counts, bytes, rate, ETA, per shard).
    pub async fn warm_up_with_progress<T, K, I>(
        &self,
        entries: I,
        config: warmup::WarmupConfig,
        progress: impl Fn(&warmup::Progress) + Send + Sync + 'static,
    ) -> Result<warmup::Report, Error>
    where
        T: Serialize,
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (K, T, Option<Duration>, warmup::Priority)>,
    {
        let settings = &self.inner.settings;
        let mut prepared = Vec::new();
        for (key, value, ttl, priority) in entries {
            let key = self.full_key(key);
            let frame = codec::encode(&key, &value, settings.codec, settings.compress_at_bytes)?;
            let mut entry = warmup::Entry::new(key, frame).priority(priority);
            if let Some(ttl) = ttl {
                entry = entry.ttl(ttl);
            }
            prepared.push(entry);
        }
        self.run_warm_up(warmup::Source::entries(prepared), config, progress)
            .await
    }

    /// Warms the cache from any warm-up source (a JSON-lines file, another Redis, a stream). Values are
    /// written as the source gives them: use this for migrations, and [`Cache::warm_up`] for typed data.
    pub async fn warm_up_source(
        &self,
        source: warmup::Source,
        config: warmup::WarmupConfig,
    ) -> Result<warmup::Report, Error> {
        self.run_warm_up(source, config, |_| {}).await
    }

    async fn run_warm_up(
        &self,
        source: warmup::Source,
        config: warmup::WarmupConfig,
        progress: impl Fn(&warmup::Progress) + Send + Sync + 'static,
    ) -> Result<warmup::Report, Error> {
        let warm = match &self.inner.versioned {
            Some(versioned) => warmup::Warmup::versioned(versioned.clone(), config)?,
            None => warmup::Warmup::new(self.inner.client.clone(), config)?,
        };
        Ok(warm.on_progress(progress).run(source).await?)
    }

    /// The spec's `preloadCriticalData`: a warm-up in which every entry has critical priority.
    pub async fn preload_critical<T, K, I>(
        &self,
        entries: I,
        ttl: Option<Duration>,
    ) -> Result<warmup::Report, Error>
    where
        T: Serialize,
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (K, T)>,
    {
        let entries = entries
            .into_iter()
            .map(|(k, v)| (k, v, ttl, warmup::Priority::Critical));
        self.warm_up(entries, warmup::WarmupConfig::default()).await
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// Counts since the cache was built.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.stats;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
            stale_refused: c.stale_refused.load(Ordering::Relaxed),
            fail_safe_serves: c.fail_safe.load(Ordering::Relaxed),
        }
    }

    /// The key as stored: `namespace:key`.
    pub fn full_key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        let key = key.as_ref();
        match &self.inner.settings.namespace {
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

    // ----- reads -----

    /// The value under `key` as `T`, or `None` (absent, deleted, remembered as absent, or being loaded).
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        let started = Instant::now();
        let key = self.full_key(key);
        let stored = self.read(&key).await?;
        let result = self.decode_hit(&key, stored.as_deref());
        metrics::histogram!("cache_operation_duration_seconds", "op" => "get")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Many values at once (one pipeline per node), in input order.
    pub async fn get_many<T: DeserializeOwned, K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<T>, Error>> {
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.full_key(k)).collect();
        let raw = self.inner.client.get_many(&full).await;
        full.iter()
            .zip(raw)
            .map(|(key, bytes)| {
                let payload = self.unwrap_envelope(key, bytes?)?;
                self.decode_hit(key, payload.as_deref())
            })
            .collect()
    }

    /// Whether `key` holds a value (a remembered absence or a lease does not count).
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = self.full_key(key);
        Ok(match self.read(&key).await? {
            Some(bytes) => matches!(codec::parse(&key, &bytes, "value")?, Stored::Value { .. }),
            None => false,
        })
    }

    /// The remaining time to live of `key`.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl, Error> {
        Ok(self.inner.client.pttl(&self.full_key(key)).await?)
    }

    // ----- writes -----

    /// Stores `value` for `ttl` (with jitter), or without expiry.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<Write, Error> {
        let started = Instant::now();
        let key = self.full_key(key);
        let frame = codec::encode(
            &key,
            value,
            self.inner.settings.codec,
            self.inner.settings.compress_at_bytes,
        )?;
        let result = self.write(&key, &frame, self.jitter(ttl), None).await;
        metrics::histogram!("cache_operation_duration_seconds", "op" => "set")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Stores many `(key, value, ttl)` entries; per-entry results in input order.
    pub async fn set_many<T: Serialize, K: AsRef<[u8]>>(
        &self,
        entries: &[(K, T, Option<Duration>)],
    ) -> Vec<Result<Write, Error>> {
        let settings = &self.inner.settings;
        let framed: Vec<Result<Framed, Error>> = entries
            .iter()
            .map(|(k, v, ttl)| {
                let key = self.full_key(k);
                let frame = codec::encode(&key, v, settings.codec, settings.compress_at_bytes)?;
                Ok((key, frame, self.jitter(*ttl)))
            })
            .collect();
        if self.inner.versioned.is_some() {
            let writes = framed.into_iter().map(|entry| async move {
                let (key, frame, ttl) = entry?;
                self.write(&key, &frame, ttl, None).await
            });
            return futures::future::join_all(writes).await;
        }
        let ok: Vec<Framed> = framed.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let mut written = self.inner.client.set_many(&ok).await.into_iter();
        framed
            .into_iter()
            .map(|r| match r {
                Ok(_) => written
                    .next()
                    .unwrap_or(Err(cluster_client::Error::Closed))
                    .map(|()| Write::Written)
                    .map_err(Error::from),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Deletes `key`; whether a value was there. With versioned writes the delete leaves a short-lived
    /// tombstone, so a load that started before it cannot bring the old value back.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = self.full_key(key);
        match &self.inner.versioned {
            Some(versioned) => {
                let existed = self.read(&key).await?.is_some();
                versioned.delete(&key, WriteOptions::default()).await?;
                Ok(existed)
            }
            None => Ok(self.inner.client.del(&key).await?),
        }
    }

    /// Deletes many keys; per-key results in input order.
    pub async fn delete_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        futures::future::join_all(keys.iter().map(|k| self.delete(k))).await
    }

    // ----- get_or_load -----

    /// The cached value, or the loader's value (cached for `ttl`). Within this process at most one loader
    /// runs per key at a time; with [`CacheSettings::lease`], at most one across processes.
    pub async fn get_or_load<T, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key_text = String::from_utf8_lossy(key.as_ref()).into_owned();
        let found = self
            .get_or_load_optional(key, ttl, || async { loader().await.map(Some) })
            .await?;
        found.ok_or_else(|| Error::Loader {
            key: key_text,
            source: "the key is remembered as absent (negative cache)".into(),
        })
    }

    /// Like [`Cache::get_or_load`] for loaders that may find nothing: `Ok(None)` is remembered for
    /// [`CacheSettings::negative_ttl`].
    pub async fn get_or_load_optional<T, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = self.full_key(key);
        match self.read(&key).await {
            Ok(Some(bytes)) => match codec::parse(&key, &bytes, std::any::type_name::<T>())? {
                Stored::Value {
                    codec,
                    compressed,
                    payload,
                } => {
                    self.inner.stats.bump(&self.inner.stats.hits, "cache_hits_total");
                    return codec::decode(&key, codec, compressed, payload).map(Some);
                }
                Stored::Absent => {
                    self.inner.stats.bump(&self.inner.stats.hits, "cache_hits_total");
                    return Ok(None);
                }
                Stored::Lease(_) => {}
            },
            Ok(None) => {}
            Err(e) if e.is_unavailable() && self.inner.settings.fail_safe => {
                return self.fail_safe(&key, loader).await;
            }
            Err(e) => return Err(e),
        }
        self.inner
            .stats
            .bump(&self.inner.stats.misses, "cache_misses_total");

        let flight: Flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(key.clone()).or_default().clone()
        };
        let mut loader = Some(loader);
        let result = flight
            .get_or_try_init(|| self.load(&key, ttl, loader.take().expect("runs once")))
            .await
            .cloned();
        {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&key);
            }
        }
        let frame = match result {
            Ok(frame) => frame,
            Err(e) if e.is_unavailable() && self.inner.settings.fail_safe => match loader.take() {
                Some(loader) => return self.fail_safe(&key, loader).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        match codec::parse(&key, &frame, std::any::type_name::<T>())? {
            Stored::Value {
                codec,
                compressed,
                payload,
            } => codec::decode(&key, codec, compressed, payload).map(Some),
            _ => Ok(None),
        }
    }

    /// Runs the loader and stores its result; returns the stored frame.
    async fn load<T, F, Fut, E>(&self, key: &[u8], ttl: Option<Duration>, loader: F) -> Result<Bytes, Error>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The version is taken before the loader runs: a delete or a newer write made while it runs
        // has a newer version, and the loaded (possibly stale) value is refused.
        let version = self.inner.versioned.as_ref().map(Versioned::next_version);
        let lease = match self.inner.settings.lease {
            Some(lease_ttl) => match self.take_lease(key, lease_ttl).await? {
                LeaseOutcome::Mine(token) => Some(token),
                LeaseOutcome::Filled(frame) => return Ok(frame),
            },
            None => None,
        };
        self.inner
            .stats
            .bump(&self.inner.stats.loads, "cache_loads_total");
        let loaded = match loader().await {
            Ok(value) => value,
            Err(e) => {
                self.inner
                    .stats
                    .bump(&self.inner.stats.load_errors, "cache_load_errors_total");
                if let Some(token) = &lease {
                    // Give the lease up so that another caller can load at once.
                    let _ = self.fill_lease(key, token, None, None, None).await;
                }
                return Err(Error::Loader {
                    key: cluster_client::printable_key(key),
                    source: e.into(),
                });
            }
        };
        let (frame, ttl) = match &loaded {
            Some(value) => (
                codec::encode(
                    key,
                    value,
                    self.inner.settings.codec,
                    self.inner.settings.compress_at_bytes,
                )?,
                self.jitter(ttl),
            ),
            None => match self.inner.settings.negative_ttl {
                Some(negative) => (codec::absent(), Some(negative)),
                None => return Ok(Bytes::from(codec::absent())),
            },
        };
        let outcome = match &lease {
            Some(token) => self.fill_lease(key, token, Some(&frame), ttl, version).await?,
            None => self.write(key, &frame, ttl, version).await?,
        };
        if outcome == Write::Stale {
            self.inner
                .stats
                .bump(&self.inner.stats.stale_refused, "cache_stale_refused_total");
        }
        Ok(Bytes::from(frame))
    }

    async fn fail_safe<T, F, Fut, E>(&self, key: &[u8], loader: F) -> Result<Option<T>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stats
            .bump(&self.inner.stats.fail_safe, "cache_fail_safe_total");
        tracing::warn!(key = %String::from_utf8_lossy(key), "redis unreachable; serving from the loader");
        loader().await.map_err(|e| Error::Loader {
            key: cluster_client::printable_key(key),
            source: e.into(),
        })
    }

    /// Takes the key's lease, or waits for the holder's value.
    async fn take_lease(&self, key: &[u8], lease_ttl: Duration) -> Result<LeaseOutcome, Error> {
        let token: Vec<u8> = (0..16).map(|_| fastrand::alphanumeric() as u8).collect();
        let marker = codec::lease(&token);
        let started = Instant::now();
        let deadline = started + lease_ttl * 2;
        loop {
            let taken = self
                .inner
                .client
                .set(
                    key,
                    &marker,
                    SetOptions::ttl(lease_ttl).condition(SetCondition::IfAbsent),
                )
                .await?;
            if taken {
                return Ok(LeaseOutcome::Mine(marker));
            }
            // Someone else holds the lease (or filled the key): wait for a value.
            loop {
                if let Some(bytes) = self.read(key).await? {
                    match codec::parse(key, &bytes, "value")? {
                        Stored::Lease(_) => {}
                        _ => return Ok(LeaseOutcome::Filled(bytes)),
                    }
                } else {
                    break; // The lease expired or was deleted: try to take it.
                }
                if Instant::now() >= deadline {
                    return Err(Error::LeaseWait {
                        key: cluster_client::printable_key(key),
                        waited: started.elapsed(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Replaces the lease with `frame` (or just drops the lease when `frame` is `None`) if the key still
    /// holds it; `Stale` when the lease is gone (deleted or overwritten meanwhile).
    async fn fill_lease(
        &self,
        key: &[u8],
        marker: &[u8],
        frame: Option<&[u8]>,
        ttl: Option<Duration>,
        version: Option<Version>,
    ) -> Result<Write, Error> {
        let stored = match (frame, version) {
            (Some(frame), Some(version)) => Envelope::Value {
                version,
                payload: frame,
            }
            .encode(),
            (Some(frame), None) => frame.to_vec(),
            // Releasing: a 1 ms TTL stands in for a conditional delete.
            (None, _) => marker.to_vec(),
        };
        let ttl_ms = match (frame, ttl) {
            (None, _) => "1".to_string(),
            (Some(_), Some(ttl)) => ttl.as_millis().max(1).to_string(),
            (Some(_), None) => "0".to_string(),
        };
        let reply = self
            .inner
            .client
            .eval(
                &self.inner.lease_fill,
                &[key],
                &[marker, &stored, ttl_ms.as_bytes()],
            )
            .await?;
        Ok(if reply.as_i64() == Some(1) {
            Write::Written
        } else {
            Write::Stale
        })
    }

    // ----- plumbing -----

    /// The stored frame under the full key (envelope removed, tombstones as absent).
    async fn read(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        let raw = self.inner.client.get(key).await?;
        self.unwrap_envelope(key, raw)
    }

    fn unwrap_envelope(&self, key: &[u8], raw: Option<Bytes>) -> Result<Option<Bytes>, Error> {
        let Some(raw) = raw else { return Ok(None) };
        if self.inner.versioned.is_none() {
            return Ok(Some(raw));
        }
        match Envelope::decode(&raw) {
            Ok(Envelope::Value { payload, .. }) => Ok(Some(raw.slice_ref(payload))),
            Ok(Envelope::Tombstone { .. }) => Ok(None),
            Ok(Envelope::Unversioned(_)) => Ok(Some(raw)),
            Err(problem) => Err(Error::Decode {
                key: cluster_client::printable_key(key),
                wanted: "versioned value",
                detail: problem.to_string(),
            }),
        }
    }

    fn decode_hit<T: DeserializeOwned>(&self, key: &[u8], stored: Option<&[u8]>) -> Result<Option<T>, Error> {
        let stats = &self.inner.stats;
        let Some(bytes) = stored else {
            stats.bump(&stats.misses, "cache_misses_total");
            return Ok(None);
        };
        match codec::parse(key, bytes, std::any::type_name::<T>())? {
            Stored::Value {
                codec,
                compressed,
                payload,
            } => {
                stats.bump(&stats.hits, "cache_hits_total");
                codec::decode(key, codec, compressed, payload).map(Some)
            }
            Stored::Absent => {
                stats.bump(&stats.hits, "cache_hits_total");
                Ok(None)
            }
            Stored::Lease(_) => {
                stats.bump(&stats.misses, "cache_misses_total");
                Ok(None)
            }
        }
    }

    async fn write(
        &self,
        key: &[u8],
        frame: &[u8],
        ttl: Option<Duration>,
        version: Option<Version>,
    ) -> Result<Write, Error> {
        let Some(versioned) = &self.inner.versioned else {
            self.inner
                .client
                .set(key, frame, ttl.map(SetOptions::ttl).unwrap_or_default())
                .await?;
            return Ok(Write::Written);
        };
        let outcome = match version {
            Some(version) => {
                versioned
                    .set_with_version(key, frame, version, ttl, WriteOptions::default())
                    .await?
            }
            None => versioned.set(key, frame, ttl, WriteOptions::default()).await?,
        };
        Ok(match outcome {
            WriteOutcome::Written { .. } => Write::Written,
            WriteOutcome::Stale { .. } => Write::Stale,
        })
    }

    /// Shortens `ttl` by a random share of up to `ttl_jitter`.
    fn jitter(&self, ttl: Option<Duration>) -> Option<Duration> {
        let share = self.inner.settings.ttl_jitter;
        ttl.map(|ttl| {
            if share > 0.0 {
                ttl.mul_f64(1.0 - share * fastrand::f64())
                    .max(Duration::from_millis(1))
            } else {
                ttl
            }
        })
    }
}

enum LeaseOutcome {
    Mine(Vec<u8>),
    Filled(Bytes),
}
