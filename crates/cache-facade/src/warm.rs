//! Warm-up wrappers: entries (typed values encoded with the cache's codec by [`Cache::entry`]) written
//! through the cache's writer by `warmup`.

use std::time::Duration;

use serde::Serialize;
use warmup::{Entry, Priority, Progress, Report, Source, Warmup, WarmupConfig};

use crate::Error;
use crate::cache::Cache;

impl Cache {
    /// A warm-up entry for `value` under `key`, as this cache stores it: the key with the cache's
    /// namespace, the value encoded and framed with the cache's codec (so [`Cache::get`] reads it
    /// back), no TTL and [`Priority::Normal`]; set those with [`Entry::ttl`] and [`Entry::priority`].
    pub fn entry<T: Serialize + ?Sized>(&self, key: impl AsRef<[u8]>, value: &T) -> Result<Entry, Error> {
        let key = self.full_key(key);
        let frame = self.encode(&key, value)?;
        Ok(Entry::new(key, frame))
    }

    /// Warms the cache with `entries`: grouped by shard, highest priority first, written in parallel per
    /// node (versioned when writes are versioned), validated on the replicas, rolled back past the
    /// configured share of bad entries. Entries are written as they are: build typed ones with
    /// [`Cache::entry`], which applies the namespace and the codec.
    pub async fn warm_up<I>(&self, entries: I, config: WarmupConfig) -> Result<Report, Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        self.warm_up_with_progress(entries, config, |_| {}).await
    }

    /// [`Cache::warm_up`] with a callback that receives progress (counts, bytes, rate, ETA, per shard).
    pub async fn warm_up_with_progress<I>(
        &self,
        entries: I,
        config: WarmupConfig,
        progress: impl Fn(&Progress) + Send + Sync + 'static,
    ) -> Result<Report, Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.run_warm_up(Source::entries(entries), config, progress).await
    }

    /// Warms the cache from any warm-up source (a JSON-lines file, another Redis, a stream). Values are
    /// written as the source gives them: use this for migrations, and [`Cache::warm_up`] for typed data.
    pub async fn warm_up_source(&self, source: Source, config: WarmupConfig) -> Result<Report, Error> {
        self.run_warm_up(source, config, |_| {}).await
    }

    async fn run_warm_up(
        &self,
        source: Source,
        config: WarmupConfig,
        progress: impl Fn(&Progress) + Send + Sync + 'static,
    ) -> Result<Report, Error> {
        // Every key may change: the near cache is cleared now and again when the warm-up ends (or
        // its future is dropped), so this process reads what it wrote.
        let _near = self.inner.near.clone().map(|near| {
            near.clear();
            ClearOnDrop(near)
        });
        let warm = match &self.inner.versioned {
            Some(versioned) => Warmup::versioned(versioned.clone(), config)?,
            None => Warmup::new(self.inner.client.clone(), config)?,
        };
        Ok(warm.on_progress(progress).run(source).await?)
    }

    /// The spec's `preloadCriticalData`: a warm-up of typed `(key, value)` pairs, each encoded like
    /// [`Cache::entry`], all with critical priority and the same `ttl`.
    pub async fn preload_critical<T, K, I>(&self, entries: I, ttl: Option<Duration>) -> Result<Report, Error>
    where
        T: Serialize,
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (K, T)>,
    {
        let mut prepared = Vec::new();
        for (key, value) in entries {
            let mut entry = self.entry(key, &value)?.priority(Priority::Critical);
            if let Some(ttl) = ttl {
                entry = entry.ttl(ttl);
            }
            prepared.push(entry);
        }
        self.warm_up(prepared, WarmupConfig::default()).await
    }
}

/// Clears the near cache when dropped.
struct ClearOnDrop(near_cache::NearCache);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.clear();
    }
}
