//! The typed cache: codecs, TTL jitter, negative caching, single-flight loads, leases, fail-safe.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{CallOptions, ClusterClient, SetOptions, Ttl};
use cluster_config::ClusterConfig;
use consistency::{
    ConsistencyConfig, Envelope, FailoverRepairTask, Version, Versioned, WriteOptions, WriteOutcome,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::codec::{self, Codec, Stored};
use crate::lease::{self, Attempt, Filled};
use crate::{CacheStats, Error};

/// The longest accepted [`CacheSettings::lease`]: a loader slower than this should not hold other
/// processes back, and the bound keeps every deadline computed from it far from overflow.
const LEASE_MAX: Duration = Duration::from_secs(10 * 60);
/// The shortest accepted [`CacheSettings::lease`].
const LEASE_MIN: Duration = Duration::from_millis(10);
/// The longest accepted [`CacheSettings::negative_ttl`]: an absence remembered longer hides new data.
const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest accepted per-call timeout in [`CacheSettings::call`].
const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(10 * 60);
/// The smallest accepted [`CacheSettings::decompressed_max_bytes`].
const DECOMPRESSED_MIN_BYTES: usize = 1024;
/// The first pause between two attempts to take a lease held by another process; it doubles up to
/// [`LEASE_POLL_MAX`].
const LEASE_POLL_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two attempts to take a lease.
const LEASE_POLL_MAX: Duration = Duration::from_millis(50);

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
    /// The largest value this cache decompresses (64 MiB by default, at least 1 KiB). A stored
    /// compressed value declaring more is refused with a decode error before anything is allocated, and
    /// a value whose encoding is larger is refused on write, so what is written can be read.
    pub decompressed_max_bytes: usize,
    /// Share of each TTL removed at random (0.1: a TTL of 100 s becomes 90–100 s), so keys written
    /// together do not expire together. 0 to 0.5.
    pub ttl_jitter: f64,
    /// How long `get_or_load` remembers that the loader found nothing; `None` does not remember.
    /// From 1 ms to 24 h.
    pub negative_ttl: Option<Duration>,
    /// Write through consistency's versioned last-write-wins writes (on by default): a slow loader's
    /// old value never overwrites a newer one, and a delete wins over a load that started before it.
    pub versioned: Option<ConsistencyConfig>,
    /// Cross-process load leases for `get_or_load`: the first process loads, the others wait for its
    /// value, and take over once its lease has run this long without a value (a holder that crashed or
    /// got stuck). A waiter gives up with [`Error::LeaseWait`] after twice this. From 10 ms to 10 min;
    /// `None` (the default) keeps single-flight within the process only.
    pub lease: Option<Duration>,
    /// When Redis cannot be reached, `get_or_load` answers from the loader instead of failing.
    pub fail_safe: bool,
    /// Per-call options (timeout, replica reads, waiting for a failover). A timeout, when set, is from
    /// 1 ms to 10 min.
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
            decompressed_max_bytes: 64 * 1024 * 1024,
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
        if let Some(lease) = self.lease {
            if lease < LEASE_MIN {
                return Err(Error::Settings(format!(
                    "lease is {lease:?}, under 10 ms; use at least the loader's usual time"
                )));
            }
            if lease > LEASE_MAX {
                return Err(Error::Settings(format!(
                    "lease is {lease:?}, over 10 min; a loader that slow should not hold other processes \
                     back: use at most 10 min"
                )));
            }
        }
        if let Some(ttl) = self.negative_ttl {
            if ttl < Duration::from_millis(1) {
                return Err(Error::Settings(format!(
                    "negative_ttl is {ttl:?}, under 1 ms; use None to remember no absence"
                )));
            }
            if ttl > NEGATIVE_TTL_MAX {
                return Err(Error::Settings(format!(
                    "negative_ttl is {ttl:?}, over 24 h; an absence remembered that long hides new data"
                )));
            }
        }
        if let Some(timeout) = self.call.timeout {
            if timeout < Duration::from_millis(1) {
                return Err(Error::Settings(format!(
                    "call.timeout is {timeout:?}, under 1 ms, so every call would fail; use None for the \
                     configured command timeout"
                )));
            }
            if timeout > CALL_TIMEOUT_MAX {
                return Err(Error::Settings(format!(
                    "call.timeout is {timeout:?}, over 10 min; use at most 10 min so that a lost node \
                     is noticed"
                )));
            }
        }
        if self.decompressed_max_bytes < DECOMPRESSED_MIN_BYTES {
            return Err(Error::Settings(format!(
                "decompressed_max_bytes is {}, under 1 KiB; use at least the size of your largest value",
                self.decompressed_max_bytes
            )));
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
    lease_scripts: lease::Scripts,
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
                lease_scripts: lease::Scripts::new(),
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
        let mut prepared = Vec::new();
        for (key, value, ttl, priority) in entries {
            let key = self.full_key(key);
            let frame = self.encode(&key, &value)?;
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

    /// How many `get_or_load` flights (single-flight entries) are open in this process. For tests and
    /// diagnostics: it returns to zero once no call is loading, cancelled calls included.
    #[doc(hidden)]
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        let frame = self.encode(&key, value)?;
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
        let framed: Vec<Result<Framed, Error>> = entries
            .iter()
            .map(|(k, v, ttl)| {
                let key = self.full_key(k);
                let frame = self.encode(&key, v)?;
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
                    return self.decode_value(&key, codec, compressed, payload).map(Some);
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

        let flight = FlightGuard::join(&self.inner.flights, &key);
        let mut loader = Some(loader);
        let result = flight
            .cell()
            .get_or_try_init(|| self.load(&key, ttl, loader.take().expect("runs once")))
            .await
            .cloned();
        // Leaving the flight here, or on any early drop of this future, removes the map entry once no
        // caller holds it: a cancelled call leaves nothing behind.
        drop(flight);
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
            } => self.decode_value(&key, codec, compressed, payload).map(Some),
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
        let mut lease = match self.inner.settings.lease {
            Some(lease_ttl) => match self.take_lease(key, lease_ttl).await? {
                LeaseOutcome::Mine(held) => Some(held),
                LeaseOutcome::Filled(frame) => return Ok(frame),
            },
            None => None,
        };
        let result = self
            .load_and_store(key, ttl, loader, version, lease.as_mut())
            .await;
        if let Some(held) = lease.as_mut()
            && !held.done
        {
            // Nothing filled the lease (the loader failed, found nothing to remember, or its value
            // was refused): give it back now, so that another caller can load at once.
            if let Err(error) = self.fill_lease(key, &held.prefix, None, None, None).await {
                tracing::debug!(%error, "giving a lease back failed; it ends at its expiry");
            }
            held.done = true;
        }
        result
    }

    /// The part of [`Cache::load`] that runs while the lease (if any) is held.
    async fn load_and_store<T, F, Fut, E>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        loader: F,
        version: Option<Version>,
        lease: Option<&mut HeldLease>,
    ) -> Result<Bytes, Error>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stats
            .bump(&self.inner.stats.loads, "cache_loads_total");
        let loaded = match loader().await {
            Ok(value) => value,
            Err(e) => {
                self.inner
                    .stats
                    .bump(&self.inner.stats.load_errors, "cache_load_errors_total");
                return Err(Error::Loader {
                    key: cluster_client::printable_key(key),
                    source: e.into(),
                });
            }
        };
        let (frame, ttl) = match &loaded {
            Some(value) => (self.encode(key, value)?, self.jitter(ttl)),
            None => match self.inner.settings.negative_ttl {
                Some(negative) => (codec::absent(), Some(negative)),
                None => return Ok(Bytes::from(codec::absent())),
            },
        };
        let outcome = match lease {
            Some(held) => {
                let outcome = self
                    .fill_lease(key, &held.prefix, Some(&frame), ttl, version)
                    .await?;
                held.done = true;
                outcome
            }
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

    /// Takes the key's lease, or waits for the holder's value. A tombstone counts as "no value, may
    /// load" (the lease keeps it, see `lease.rs`); a live lease of another process is waited on, with
    /// a growing pause, until it is filled, given back or expires, and at most twice the lease.
    async fn take_lease(&self, key: &[u8], lease_ttl: Duration) -> Result<LeaseOutcome, Error> {
        let prefix = lease::new_prefix();
        let lease_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let started = Instant::now();
        // `validate` bounds the lease to 10 min, so this cannot overflow; saturating keeps it so.
        let wait = lease_ttl.saturating_mul(2);
        let mut pause = LEASE_POLL_MIN;
        // The guard gives the lease back if this future is dropped from here until the fill.
        let mut held = HeldLease {
            cache: self.clone(),
            key: key.to_vec(),
            prefix,
            done: true,
        };
        loop {
            // Armed before the await: a cancellation while the script runs may leave the lease taken.
            held.done = false;
            let attempt = lease::try_take(
                &self.inner.client,
                &self.inner.lease_scripts,
                key,
                &held.prefix,
                lease_ms,
            )
            .await;
            held.done = true;
            match attempt? {
                Attempt::Taken => {
                    held.done = false;
                    return Ok(LeaseOutcome::Mine(held));
                }
                Attempt::Stored(raw) => {
                    if let Some(frame) = self.unwrap_envelope(key, Some(raw))? {
                        return Ok(LeaseOutcome::Filled(frame));
                    }
                }
                Attempt::Held => {}
            }
            let waited = started.elapsed();
            let Some(left) = wait.checked_sub(waited).filter(|left| !left.is_zero()) else {
                return Err(Error::LeaseWait {
                    key: cluster_client::printable_key(key),
                    waited,
                });
            };
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(LEASE_POLL_MAX);
        }
    }

    /// Replaces the lease with `frame` (or gives the lease back when `frame` is `None`) if the key still
    /// holds it; `Stale` when the lease is gone (deleted or overwritten meanwhile) or a delete newer
    /// than `version` is kept.
    async fn fill_lease(
        &self,
        key: &[u8],
        prefix: &[u8],
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
            (None, _) => Vec::new(),
        };
        // The same refusal, before a byte is sent, as the plain write path gives.
        let max = self.inner.client.config().limits().value_max_bytes;
        if stored.len() > max {
            let error = cluster_client::Error::ValueTooLarge {
                len: stored.len(),
                max,
            };
            return Err(match version {
                Some(_) => consistency::Error::from(error).into(),
                None => error.into(),
            });
        }
        let ttl_ms = ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let filled = lease::fill(
            &self.inner.client,
            &self.inner.lease_scripts,
            key,
            prefix,
            &stored,
            ttl_ms,
        )
        .await?;
        Ok(match filled {
            Filled::Done => Write::Written,
            Filled::LeaseLost | Filled::DeleteKept => Write::Stale,
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
                self.decode_value(key, codec, compressed, payload).map(Some)
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

    /// Shortens `ttl` by a random share of up to `ttl_jitter`. Any `ttl` is accepted: the cut is at
    /// most half of it, computed without overflow even for `Duration::MAX`.
    fn jitter(&self, ttl: Option<Duration>) -> Option<Duration> {
        let share = self.inner.settings.ttl_jitter;
        ttl.map(|ttl| jittered(ttl, share * fastrand::f64()))
    }

    /// Encodes and frames `value` with this cache's settings.
    fn encode<T: Serialize + ?Sized>(&self, key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
        let settings = &self.inner.settings;
        codec::encode(
            key,
            value,
            settings.codec,
            settings.compress_at_bytes,
            settings.decompressed_max_bytes,
        )
    }

    /// Decodes a stored value's payload, within this cache's decompression limit.
    fn decode_value<T: DeserializeOwned>(
        &self,
        key: &[u8],
        codec: Codec,
        compressed: bool,
        payload: &[u8],
    ) -> Result<T, Error> {
        let max = self.inner.settings.decompressed_max_bytes;
        codec::decode(key, codec, compressed, payload, max)
    }
}

/// `ttl` shortened by `cut` (a share from 0 to 1), at least 1 ms; no overflow for any `ttl`.
fn jittered(ttl: Duration, cut: f64) -> Duration {
    // The product is at most `ttl` (rounded through f64): one that does not fit a Duration is all of it.
    let cut = Duration::try_from_secs_f64(ttl.as_secs_f64() * cut).unwrap_or(ttl);
    ttl.saturating_sub(cut).max(Duration::from_millis(1))
}

enum LeaseOutcome {
    Mine(HeldLease),
    Filled(Bytes),
}

/// A lease this process holds (or may hold: a take was under way). Dropped before the lease was
/// filled or given back (the `get_or_load` future was cancelled), it gives the lease back from a
/// spawned task, so that other processes need not wait for its expiry.
struct HeldLease {
    cache: Cache,
    key: Vec<u8>,
    prefix: Vec<u8>,
    /// Filled or given back: nothing left to do on drop.
    done: bool,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime to give it back from: the lease ends at its expiry.
        };
        let cache = self.cache.clone();
        let key = std::mem::take(&mut self.key);
        let prefix = std::mem::take(&mut self.prefix);
        runtime.spawn(async move {
            if let Err(error) = cache.fill_lease(&key, &prefix, None, None, None).await {
                tracing::debug!(%error, "giving a cancelled call's lease back failed; it ends at its expiry");
            }
        });
    }
}

/// This caller's share of a single-flight entry. Dropping it (when the call ends, or when its future is
/// dropped mid-load) removes the map entry once no other caller holds it, so the map holds only keys
/// being loaded right now.
struct FlightGuard<'a> {
    flights: &'a Mutex<HashMap<Vec<u8>, Flight>>,
    key: &'a [u8],
    flight: Option<Flight>,
}

impl<'a> FlightGuard<'a> {
    fn join(flights: &'a Mutex<HashMap<Vec<u8>, Flight>>, key: &'a [u8]) -> FlightGuard<'a> {
        let flight = {
            let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_vec()).or_default().clone()
        };
        FlightGuard {
            flights,
            key,
            flight: Some(flight),
        }
    }

    fn cell(&self) -> &OnceCell<Bytes> {
        self.flight.as_deref().expect("present until drop")
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Every clone and every drop of a flight happens under this lock, so once ours is gone a count
        // of one means only the map still holds the entry.
        drop(self.flight.take());
        if map.get(self.key).is_some_and(|f| Arc::strong_count(f) == 1) {
            map.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `settings` after `change`; `want` is a fragment of the error, or `None` for valid.
    fn check(change: impl FnOnce(&mut CacheSettings), want: Option<&str>) {
        let mut settings = CacheSettings::default();
        change(&mut settings);
        match (settings.validate(), want) {
            (Ok(()), None) => {}
            (Err(Error::Settings(text)), Some(want)) => {
                assert!(text.contains(want), "{text:?} does not say {want:?}")
            }
            (got, want) => panic!("{settings:?}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn zero_and_maximal_durations_are_typed_setting_errors() {
        check(|_| {}, None);
        // lease
        check(
            |s| s.lease = Some(Duration::ZERO),
            Some("lease is 0ns, under 10 ms"),
        );
        check(|s| s.lease = Some(Duration::MAX), Some("over 10 min"));
        check(|s| s.lease = Some(LEASE_MIN), None);
        check(|s| s.lease = Some(LEASE_MAX), None);
        check(
            |s| s.lease = Some(LEASE_MAX + Duration::from_millis(1)),
            Some("over 10 min"),
        );
        // negative_ttl
        check(
            |s| s.negative_ttl = Some(Duration::ZERO),
            Some("negative_ttl is 0ns"),
        );
        check(|s| s.negative_ttl = Some(Duration::MAX), Some("over 24 h"));
        check(|s| s.negative_ttl = Some(NEGATIVE_TTL_MAX), None);
        check(|s| s.negative_ttl = None, None);
        // call.timeout
        check(
            |s| s.call = CallOptions::timeout(Duration::ZERO),
            Some("every call would fail"),
        );
        check(
            |s| s.call = CallOptions::timeout(Duration::MAX),
            Some("call.timeout"),
        );
        check(|s| s.call = CallOptions::timeout(CALL_TIMEOUT_MAX), None);
        // Sizes next to them.
        check(
            |s| s.decompressed_max_bytes = 0,
            Some("decompressed_max_bytes is 0"),
        );
        check(|s| s.decompressed_max_bytes = usize::MAX, None);
    }

    #[test]
    fn jitter_accepts_zero_and_maximal_ttls() {
        let ms = Duration::from_millis;
        for (ttl, cut, want) in [
            (Duration::ZERO, 0.5, ms(1)),
            (ms(1), 0.5, ms(1)),
            (ms(1_000), 0.0, ms(1_000)),
            (ms(1_000), 0.1, ms(900)),
            (Duration::MAX, 0.0, Duration::MAX),
            (Duration::MAX, 1.0, ms(1)),
        ] {
            assert_eq!(jittered(ttl, cut), want, "{ttl:?} cut by {cut}");
        }
        let half = jittered(Duration::MAX, 0.5);
        assert!(half < Duration::MAX && half > Duration::MAX / 3, "{half:?}");
    }
}
