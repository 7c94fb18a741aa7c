//! Warm-up wrappers: typed entries encoded with the cache's codec, through the cache's writer.

use std::time::Duration;

use serde::Serialize;

use crate::Error;
use crate::cache::Cache;

impl Cache {
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
}
