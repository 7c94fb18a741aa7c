//! Counters since a cache was built, kept in process and exported through `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::Cache;

/// Counts since a [`Cache`] was built (also exported through `metrics` as `cache_*_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a value (or a remembered absence).
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that failed.
    pub load_errors: u64,
    /// Loaded values refused because a newer write or a delete happened during the load.
    pub stale_refused: u64,
    /// `get_or_load` answers served by the loader because Redis could not be reached.
    pub fail_safe_serves: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_errors: AtomicU64,
    pub(crate) stale_refused: AtomicU64,
    pub(crate) fail_safe: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(&self, counter: &AtomicU64, name: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name).increment(1);
    }
}

impl Cache {
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
}
