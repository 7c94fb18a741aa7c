//! Counters since a cache was built, kept in process and exported through `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::Cache;

/// Reads that found a value (a counter).
pub const HITS_METRIC: &str = "rcc_cache_hits_total";
/// Reads that found nothing (a counter).
pub const MISSES_METRIC: &str = "rcc_cache_misses_total";
/// Loader runs (a counter).
pub const LOADS_METRIC: &str = "rcc_cache_loads_total";
/// Loader runs that failed (a counter).
pub const LOAD_ERRORS_METRIC: &str = "rcc_cache_load_errors_total";
/// Loaded values refused as stale (a counter).
pub const STALE_REFUSED_METRIC: &str = "rcc_cache_stale_refused_total";
/// `get_or_load` answers served by the loader because Redis could not be reached (a counter).
pub const FAIL_SAFE_METRIC: &str = "rcc_cache_fail_safe_total";
/// Duration of `get` and `set` through the cache, label `op` (a histogram).
pub const OPERATION_DURATION_METRIC: &str = "rcc_cache_operation_duration_seconds";

/// Every metric this crate records: name, kind, description.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        HITS_METRIC,
        "counter",
        "Cache reads that found a value (or a remembered absence).",
    ),
    (MISSES_METRIC, "counter", "Cache reads that found nothing."),
    (LOADS_METRIC, "counter", "Loader runs of get_or_load."),
    (LOAD_ERRORS_METRIC, "counter", "Loader runs that failed."),
    (
        STALE_REFUSED_METRIC,
        "counter",
        "Loaded values refused because a newer write or a delete happened during the load.",
    ),
    (
        FAIL_SAFE_METRIC,
        "counter",
        "get_or_load answers served by the loader because Redis could not be reached.",
    ),
    (
        OPERATION_DURATION_METRIC,
        "histogram",
        "Duration of get and set through the cache, decoding included (label op).",
    ),
];

/// Describes the metrics of this crate and of the crates under it (cluster-client, health,
/// consistency, warm-up) to the installed `metrics` recorder. Idempotent; [`install_prometheus`]
/// calls it.
pub fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            "histogram" => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
            _ => metrics::describe_counter!(name, metrics::Unit::Count, help),
        }
    }
    cluster_client::describe_metrics();
    consistency::describe_metrics();
    #[cfg(feature = "health")]
    health::describe_metrics();
    #[cfg(feature = "warmup")]
    warmup::describe_metrics();
}

/// Installs the Prometheus recorder as the process's global `metrics` recorder, serves `GET /metrics`
/// on `addr` (latencies as histograms with [`cluster_client::DURATION_BUCKETS_SECONDS`]), and
/// describes every metric of the product. See [`health::install_prometheus`], which does the
/// installing; call it once, at start-up, from the application.
#[cfg(feature = "prometheus")]
pub fn install_prometheus(addr: std::net::SocketAddr) -> Result<health::PrometheusHandle, health::Error> {
    let handle = health::install_prometheus(addr)?;
    describe_metrics();
    Ok(handle)
}

/// Counts since a [`Cache`] was built (also exported through `metrics` as `rcc_cache_*_total`).
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
