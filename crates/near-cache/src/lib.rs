//! A near cache for Redis Cluster: hot values served from process memory, invalidated by the servers
//! through RESP3 client tracking, and never served once an invalidation may have been lost.
//!
//! [`NearCache::get`] answers from memory when it can; otherwise it reads through
//! [`ClusterClient::get_tracked`] (one tracking connection per primary, see cluster-client's
//! `tracking` module) and keeps the value. The rules that keep it correct, each tested on real
//! `redis-server` processes (`tests/near.rs`) and checked under faults by `cargo xtask chaos
//! near-cache`:
//!
//! - **A read that races an invalidation never installs its value.** Every key hashes to one of
//!   [`STRIPES`] generation counters; an invalidation bumps the key's counter before it removes the
//!   key, and a read keeps its value only if the counter did not move between sending the read and
//!   storing the value (checked again after storing).
//! - **A lost connection, a flushed tracking table, a failover or a moved slot stop every value it
//!   covered from being served.** Each value is kept with the [`TrackToken`] of the connection that
//!   read it, and is served only while [`ClusterClient::tracking_token`] for its key returns the same
//!   token: the token changes when the connection drops or is killed, misses its heartbeat, is
//!   flushed, or when the key's slot is served by another node.
//! - **A migrating slot is not cached**: a read answered with `ASK` (or `MOVED`) comes back without a
//!   token and is not kept.
//! - **This process's own writes are read back**: [`NearCache::write_guard`] evicts the key before the
//!   write is sent and again when the guard drops (also when the write's future is cancelled), and
//!   both times bumps the key's generation, so a read that was in flight meanwhile installs nothing.
//!   cache-facade wraps every write it makes.
//! - **Nothing is served forever**: every value expires from memory after [`NearSettings::ttl_cap`],
//!   and never later than the key's own TTL on the server (read with `PTTL` in the same request: the
//!   server invalidates an expired key only when it gets round to deleting it).
//!
//! The store is [`quick_cache`] (S3-FIFO), bounded in entries and bytes (see [`NearSettings`]),
//! chosen over moka by `cargo bench -p benches --bench near_store` (docs/RESULTS.md).
//!
//! ```
//! use cluster_client::{ClusterClient, SetOptions};
//! use cluster_config::ClusterConfig;
//! use near_cache::{NearCache, NearSettings};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::shared().await?;
//! # let cluster = local_cluster::LocalCluster::shared().await?;
//! # let seeds = cluster.seeds();
//! // `seeds` is a list of "host:port" (for example from REDIS_CLUSTER_NODES).
//! let client = ClusterClient::connect(ClusterConfig::builder().nodes(seeds).build()?).await?;
//! let near = NearCache::new(client.clone(), NearSettings::default())?;
//! client.set(b"near:doc", b"ada", SetOptions::default()).await?;
//! assert_eq!(near.get(b"near:doc").await?.as_deref(), Some(&b"ada"[..])); // read, now tracked
//! while near.lookup(b"near:doc").is_none() {
//!     near.get(b"near:doc").await?; // a read racing the write's own invalidation keeps nothing
//! }
//! assert_eq!(near.get(b"near:doc").await?.as_deref(), Some(&b"ada"[..])); // from memory
//! {
//!     let _guard = near.write_guard(b"near:doc"); // own writes: evicted before and after
//!     client.set(b"near:doc", b"grace", SetOptions::default()).await?;
//! }
//! assert_eq!(near.get(b"near:doc").await?.as_deref(), Some(&b"grace"[..]));
//! assert!(near.stats().hits >= 1);
//! client.close().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, InvalidationSink, TrackToken, Tracking, TrackingMode};

/// Generation counters keys hash to. A read in flight installs nothing when its key's counter moved:
/// more stripes, fewer reads lost to an unrelated key's invalidation.
pub const STRIPES: usize = 4096;

/// The near cache's counters in the `metrics` registry (label-free).
pub const HITS_METRIC: &str = "near_cache_hits_total";
/// Reads that went to the server.
pub const MISSES_METRIC: &str = "near_cache_misses_total";
/// Keys the servers invalidated.
pub const INVALIDATIONS_METRIC: &str = "near_cache_invalidations_total";
/// Kept values dropped because their tracking token, or their local TTL cap, ran out.
pub const DROPPED_METRIC: &str = "near_cache_dropped_total";
/// Kept values evicted to stay within the entry and byte bounds.
pub const EVICTIONS_METRIC: &str = "near_cache_evictions_total";

/// Bytes counted per entry beside its key and value (the store's bookkeeping, the entry's fields).
pub const ENTRY_OVERHEAD_BYTES: u64 = 96;

/// Why a near cache cannot be built or a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; nothing was built.
    #[error("near cache setting {setting} = {value} is out of range: {allowed}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        allowed: &'static str,
    },
    /// The client failed (the read's own error, or tracking already enabled on this client).
    #[error(transparent)]
    Client(#[from] cluster_client::Error),
}

/// How big the near cache may grow, how long it may keep a value, and how the servers track keys.
///
/// Plain public fields with a [`Default`]: change the ones you care about with struct-update syntax
/// (`NearSettings { max_entries: 10_000, ..Default::default() }`); [`NearCache::new`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct NearSettings {
    /// At most this many entries (default 100,000). Each entry weighs at least
    /// `max_bytes / max_entries`, so both bounds hold.
    pub max_entries: usize,
    /// At most this many bytes of keys, values and [`ENTRY_OVERHEAD_BYTES`] per entry (default 64 MiB).
    pub max_bytes: u64,
    /// A value leaves memory this long after it was read, whatever the servers say (default 60 s):
    /// the bound on staleness should every other rule fail.
    pub ttl_cap: Duration,
    /// Tracking mode (default: the server remembers each key read).
    pub mode: TrackingMode,
    /// How long a tracking connection's heartbeat may go unanswered before its values stop being
    /// served (default 500 ms); keep it below the cluster's node timeout.
    pub stall_timeout: Duration,
}

impl Default for NearSettings {
    fn default() -> Self {
        NearSettings {
            max_entries: 100_000,
            max_bytes: 64 << 20,
            ttl_cap: Duration::from_secs(60),
            mode: TrackingMode::Default,
            stall_timeout: Duration::from_millis(500),
        }
    }
}

impl NearSettings {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_entries == 0 || self.max_entries > 100_000_000 {
            return Err(Error::InvalidSetting {
                setting: "max_entries",
                value: self.max_entries.to_string(),
                allowed: "1 to 100,000,000 entries",
            });
        }
        if self.max_bytes < 4096 || self.max_bytes > (1 << 40) {
            return Err(Error::InvalidSetting {
                setting: "max_bytes",
                value: self.max_bytes.to_string(),
                allowed: "4 KiB to 1 TiB",
            });
        }
        if self.ttl_cap.is_zero() || self.ttl_cap > Duration::from_secs(86_400) {
            return Err(Error::InvalidSetting {
                setting: "ttl_cap",
                value: format!("{:?}", self.ttl_cap),
                allowed: "more than 0 and at most one day",
            });
        }
        if self.stall_timeout < Duration::from_millis(10) || self.stall_timeout > Duration::from_secs(60) {
            return Err(Error::InvalidSetting {
                setting: "stall_timeout",
                value: format!("{:?}", self.stall_timeout),
                allowed: "10 ms to 60 s, below the cluster's node timeout",
            });
        }
        Ok(())
    }
}

/// What the near cache has done since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NearStats {
    /// Reads served from memory.
    pub hits: u64,
    /// Reads that went to the server.
    pub misses: u64,
    /// Of the misses, reads whose value could not be kept (redirected, no tracking connection, or an
    /// invalidation or own write raced them).
    pub not_kept: u64,
    /// Keys the servers invalidated.
    pub invalidations: u64,
    /// Kept values dropped on read because their tracking token or TTL cap ran out.
    pub dropped: u64,
    /// Kept values evicted to stay within [`NearSettings::max_entries`] and
    /// [`NearSettings::max_bytes`].
    pub evictions: u64,
    /// Entries now in memory.
    pub entries: u64,
    /// Bytes now counted (keys, values, overhead).
    pub bytes: u64,
}

impl NearStats {
    /// Hits over reads, 0 when nothing was read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Option<Bytes>,
    token: TrackToken,
    expires: Instant,
}

#[derive(Clone)]
struct Weigh {
    floor: u64,
}

impl quick_cache::Weighter<Bytes, Entry> for Weigh {
    fn weight(&self, key: &Bytes, entry: &Entry) -> u64 {
        weight_of(key.len(), entry.value.as_ref().map_or(0, Bytes::len), self.floor)
    }
}

/// An entry's weight: its bytes, at least `floor` (the byte budget over the entry budget).
fn weight_of(key: usize, value: usize, floor: u64) -> u64 {
    (key as u64 + value as u64 + ENTRY_OVERHEAD_BYTES).max(floor)
}

/// A counter in [`COUNTER_STRIPES`] cache lines, each thread adding to its own: hits are counted on
/// every read served from memory, and one shared line would bounce between the cores serving them.
struct Counter {
    stripes: [Padded; COUNTER_STRIPES],
    metric: metrics::Counter,
}

const COUNTER_STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize % COUNTER_STRIPES
    };
}

impl Counter {
    fn new(name: &'static str) -> Counter {
        Counter {
            stripes: Default::default(),
            metric: metrics::counter!(name),
        }
    }

    fn add(&self, n: u64) {
        let stripe = STRIPE.with(|s| *s);
        self.stripes[stripe].0.fetch_add(n, Ordering::Relaxed);
        self.metric.increment(n);
    }

    fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Counts the store's evictions.
#[derive(Clone)]
struct Evictions(Arc<Counter>);

impl quick_cache::Lifecycle<Bytes, Entry> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Bytes, _: Entry) {
        self.0.add(1);
    }
}

type Store = quick_cache::sync::Cache<Bytes, Entry, Weigh, quick_cache::DefaultHashBuilder, Evictions>;

/// What the invalidation sink and the cache share.
struct Shared {
    store: Store,
    evictions: Arc<Counter>,
    generations: Box<[AtomicU64]>,
    /// Bumped by [`NearCache::clear`]: a read in flight across it installs nothing.
    epoch: AtomicU64,
    hasher: RandomState,
    hits: Counter,
    misses: Counter,
    not_kept: Counter,
    invalidations: Counter,
    dropped: Counter,
}

impl Shared {
    fn generation(&self, key: &[u8]) -> &AtomicU64 {
        let stripe = self.hasher.hash_one(key) as usize % STRIPES;
        &self.generations[stripe]
    }

    /// Bumps the key's generation, then removes it: a read in flight installs nothing, and what was
    /// kept is gone.
    fn evict(&self, key: &[u8]) {
        self.generation(key).fetch_add(1, Ordering::SeqCst);
        self.store.remove(key);
    }
}

impl InvalidationSink for Shared {
    fn invalidate(&self, keys: &[Bytes]) {
        for key in keys {
            self.evict(key);
        }
        self.invalidations.add(keys.len() as u64);
    }
}

/// Hot values in process memory, invalidated by the servers. Cheap to clone; see the crate docs.
#[derive(Clone)]
pub struct NearCache {
    client: ClusterClient,
    shared: Arc<Shared>,
    ttl_cap: Duration,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("stats", &self.stats())
            .field("ttl_cap", &self.ttl_cap)
            .finish_non_exhaustive()
    }
}

impl NearCache {
    /// Builds the near cache over `client` and turns on key tracking there (once per client: see
    /// [`ClusterClient::enable_tracking`]).
    pub fn new(client: ClusterClient, settings: NearSettings) -> Result<NearCache, Error> {
        settings.validate()?;
        let floor = (settings.max_bytes / settings.max_entries as u64).max(1);
        let evictions = Arc::new(Counter::new(EVICTIONS_METRIC));
        let shared = Arc::new(Shared {
            store: Store::with(
                settings.max_entries,
                settings.max_bytes,
                Weigh { floor },
                quick_cache::DefaultHashBuilder::default(),
                Evictions(evictions.clone()),
            ),
            evictions,
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            hasher: RandomState::new(),
            hits: Counter::new(HITS_METRIC),
            misses: Counter::new(MISSES_METRIC),
            not_kept: Counter::new("near_cache_not_kept_total"),
            invalidations: Counter::new(INVALIDATIONS_METRIC),
            dropped: Counter::new(DROPPED_METRIC),
        });
        let tracking =
            Tracking::new(settings.mode.clone(), shared.clone()).stall_timeout(settings.stall_timeout);
        client.enable_tracking(tracking)?;
        Ok(NearCache {
            client,
            shared,
            ttl_cap: settings.ttl_cap,
        })
    }

    /// The value under `key`: from memory when a kept value is still covered by its tracking, else
    /// from the key's primary (and kept, when the read was tracked and nothing raced it).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        if let Some(value) = self.lookup(key) {
            // A hit awaits nothing: a task reading hot keys in a loop would never yield, and on a
            // runtime with few threads it would starve the tracking connections' own tasks (their
            // replies and invalidations). Each hit takes its share of tokio's cooperative budget.
            tokio::task::consume_budget().await;
            return Ok(value);
        }
        self.fetch(key).await
    }

    /// The kept value, if it may be served: `Some(None)` is a kept absence. Synchronous: unlike
    /// [`get`](Self::get) it never yields, so a task that loops on it alone should yield itself.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<Bytes>> {
        let shared = &*self.shared;
        let entry = shared.store.get(key)?;
        if entry.expires > Instant::now() && self.client.tracking_token(key) == Some(entry.token) {
            shared.hits.add(1);
            return Some(entry.value);
        }
        // Only this entry: a newer one installed meanwhile stays.
        shared.store.remove_if(key, |kept| {
            kept.token == entry.token && kept.expires == entry.expires
        });
        shared.dropped.add(1);
        None
    }

    /// Reads `key` from its primary without looking in memory, and keeps the value when it may.
    pub async fn fetch(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        let shared = &*self.shared;
        shared.misses.add(1);
        let generation = shared.generation(key);
        let before = generation.load(Ordering::SeqCst);
        let epoch = shared.epoch.load(Ordering::SeqCst);
        // Expiry counts from before the read leaves: the server's TTL is measured after it.
        let sent = Instant::now();
        let read = self.client.get_tracked(key).await?;
        let unchanged =
            || generation.load(Ordering::SeqCst) == before && shared.epoch.load(Ordering::SeqCst) == epoch;
        match read.token {
            Some(token) if unchanged() => {
                // Never past the key's own TTL on the server: an expired key is invalidated only when
                // the server deletes it, which may be much later.
                let keep = read.ttl.map_or(self.ttl_cap, |ttl| ttl.min(self.ttl_cap));
                let expires = sent + keep;
                let entry = Entry {
                    // A copy: the read's bytes are a slice of the connection's read buffer, which a
                    // kept slice would hold in memory whole.
                    value: read.value.as_deref().map(Bytes::copy_from_slice),
                    token,
                    expires,
                };
                shared.store.insert(Bytes::copy_from_slice(key), entry);
                if !unchanged() {
                    // An invalidation ran between the check and the insert; its removal may have come
                    // first. Only this entry goes: a newer one installed meanwhile stays.
                    shared
                        .store
                        .remove_if(key, |kept| kept.token == token && kept.expires == expires);
                    shared.not_kept.add(1);
                }
            }
            _ => shared.not_kept.add(1),
        }
        Ok(read.value)
    }

    /// Reads `key` through the routed path, bypassing the near cache entirely (nothing read, nothing
    /// kept): for a caller that must see the server's value now.
    pub async fn get_bypass(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        Ok(self.client.get(key).await?)
    }

    /// Call before writing `key` in this process, and keep the guard until the write returned: the key
    /// is evicted now and when the guard drops (also when the write's future is dropped), and a read
    /// in flight meanwhile keeps nothing. This makes the process read its own writes.
    pub fn write_guard(&self, key: &[u8]) -> WriteGuard {
        self.shared.evict(key);
        WriteGuard {
            shared: self.shared.clone(),
            keys: vec![Bytes::copy_from_slice(key)],
        }
    }

    /// [`write_guard`](Self::write_guard) for many keys.
    pub fn write_guard_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> WriteGuard {
        let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k.as_ref())).collect();
        for key in &keys {
            self.shared.evict(key);
        }
        WriteGuard {
            shared: self.shared.clone(),
            keys,
        }
    }

    /// Drops `key` from memory.
    pub fn forget(&self, key: &[u8]) {
        self.shared.evict(key);
    }

    /// Drops everything from memory; reads in flight keep nothing.
    pub fn clear(&self) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        self.shared.store.clear();
    }

    /// Counters and sizes.
    pub fn stats(&self) -> NearStats {
        let s = &self.shared;
        NearStats {
            hits: s.hits.get(),
            misses: s.misses.get(),
            not_kept: s.not_kept.get(),
            invalidations: s.invalidations.get(),
            dropped: s.dropped.get(),
            evictions: s.evictions.get(),
            entries: s.store.len() as u64,
            bytes: s.store.weight(),
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }
}

/// Evicts its keys again when dropped; see [`NearCache::write_guard`].
#[must_use = "the guard evicts the keys again when dropped: keep it until the write returned"]
pub struct WriteGuard {
    shared: Arc<Shared>,
    keys: Vec<Bytes>,
}

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        for key in &self.keys {
            self.shared.evict(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_the_setting_named() {
        let ok = NearSettings::default();
        ok.validate().unwrap();
        for (bad, name) in [
            (
                NearSettings {
                    max_entries: 0,
                    ..ok.clone()
                },
                "max_entries",
            ),
            (
                NearSettings {
                    max_bytes: 10,
                    ..ok.clone()
                },
                "max_bytes",
            ),
            (
                NearSettings {
                    ttl_cap: Duration::ZERO,
                    ..ok.clone()
                },
                "ttl_cap",
            ),
            (
                NearSettings {
                    ttl_cap: Duration::MAX,
                    ..ok.clone()
                },
                "ttl_cap",
            ),
            (
                NearSettings {
                    stall_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "stall_timeout",
            ),
            (
                NearSettings {
                    stall_timeout: Duration::MAX,
                    ..ok.clone()
                },
                "stall_timeout",
            ),
        ] {
            match bad.validate() {
                Err(Error::InvalidSetting { setting, .. }) => assert_eq!(setting, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn weight_holds_both_the_entry_and_the_byte_bound() {
        assert_eq!(weight_of(1, 1, 1000), 1000);
        assert_eq!(weight_of(1, 5000, 1000), 5000 + 1 + ENTRY_OVERHEAD_BYTES);
        assert_eq!(weight_of(0, 0, 1), ENTRY_OVERHEAD_BYTES);
    }
}
