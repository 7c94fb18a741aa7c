//! The facade's own settings, their builder and their validation (the connection settings are in
//! `ClusterConfig`).

use std::time::Duration;

use cluster_client::CallOptions;
use consistency::ConsistencyConfig;
use near_cache::NearSettings;

use crate::Error;
use crate::codec::Codec;

/// The longest accepted [`CacheConfig::lease`]: a loader slower than this should not hold other
/// processes back, and the bound keeps every deadline computed from it far from overflow.
const LEASE_MAX: Duration = Duration::from_secs(10 * 60);
/// The shortest accepted [`CacheConfig::lease`].
const LEASE_MIN: Duration = Duration::from_millis(10);
/// The longest accepted [`CacheConfig::negative_ttl`]: an absence remembered longer hides new data.
const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest accepted per-call timeout in [`CacheConfig::call`].
const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(10 * 60);
/// The smallest accepted `CacheConfig::decompressed_max_bytes`.
#[cfg(feature = "lz4")]
const DECOMPRESSED_MIN_BYTES: usize = 1024;

/// The facade's own settings (the connection settings are in [`ClusterConfig`](crate::ClusterConfig)).
///
/// Built with [`CacheConfig::builder`], which checks every value once in
/// [`build`](CacheConfigBuilder::build); [`CacheConfig::default`] is the default of every field. Read
/// a field with the method of the same name.
///
/// ```
/// use std::time::Duration;
/// use cache_facade::{CacheConfig, Codec};
///
/// let config = CacheConfig::builder()
///     .namespace("orders")
///     .codec(Codec::Json)
///     .lease(Duration::from_secs(5))
///     .fail_safe(true)
///     .build()?;
/// assert_eq!(config.namespace(), Some("orders"));
/// assert!(CacheConfig::builder().ttl_jitter(0.9).build().is_err());
/// # Ok::<(), cache_facade::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub(crate) namespace: Option<String>,
    pub(crate) codec: Codec,
    // Without the `lz4` feature nothing is compressed (`None`) and the limit is never used; both stay
    // so that the codec's signature does not change with the feature.
    pub(crate) compress_at_bytes: Option<usize>,
    pub(crate) decompressed_max_bytes: usize,
    pub(crate) ttl_jitter: f64,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) versioned: Option<ConsistencyConfig>,
    pub(crate) lease: Option<Duration>,
    pub(crate) fail_safe: bool,
    pub(crate) call: CallOptions,
    #[cfg(feature = "health")]
    pub(crate) health: bool,
    pub(crate) near: Option<NearSettings>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            namespace: None,
            codec: Codec::Json,
            compress_at_bytes: if cfg!(feature = "lz4") { Some(1024) } else { None },
            decompressed_max_bytes: 64 * 1024 * 1024,
            ttl_jitter: 0.1,
            negative_ttl: Some(Duration::from_secs(30)),
            versioned: Some(ConsistencyConfig::default()),
            lease: None,
            fail_safe: false,
            call: CallOptions::default(),
            #[cfg(feature = "health")]
            health: true,
            near: None,
        }
    }
}

impl CacheConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> CacheConfigBuilder {
        CacheConfigBuilder {
            config: CacheConfig::default(),
        }
    }

    /// A builder starting from this configuration, to derive a changed copy.
    pub fn to_builder(&self) -> CacheConfigBuilder {
        CacheConfigBuilder { config: self.clone() }
    }

    /// Prefix for every key (`namespace:key`), so several caches can share a cluster. Default none.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// How values become bytes. Default [`Codec::Json`].
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Encoded values of at least this many bytes are LZ4-compressed; `None` never compresses.
    /// Default 1 KiB. Only with the `lz4` feature.
    #[cfg(feature = "lz4")]
    pub fn compress_at_bytes(&self) -> Option<usize> {
        self.compress_at_bytes
    }

    /// The largest value this cache decompresses (64 MiB by default, at least 1 KiB). A stored
    /// compressed value declaring more is refused with a decode error before anything is allocated, and
    /// a value whose encoding is larger is refused on write, so what is written can be read. Only with
    /// the `lz4` feature.
    #[cfg(feature = "lz4")]
    pub fn decompressed_max_bytes(&self) -> usize {
        self.decompressed_max_bytes
    }

    /// The largest share of each TTL removed at random (0.1: a TTL of 100 s becomes 90–100 s), so keys
    /// written together do not expire together. Jitter only ever shortens a TTL, never below 1 ms, so a
    /// value never outlives the TTL its writer asked for; `warmup::WarmupConfig::ttl_jitter` means the
    /// same. From 0 (off) to 0.5; default 0.1.
    pub fn ttl_jitter(&self) -> f64 {
        self.ttl_jitter
    }

    /// How long `get_or_load` remembers that the loader found nothing; `None` does not remember. From
    /// 1 ms to 24 h; default 30 s.
    pub fn negative_ttl(&self) -> Option<Duration> {
        self.negative_ttl
    }

    /// Write through consistency's versioned last-write-wins writes (on by default): a slow loader's
    /// old value never overwrites a newer one, and a delete wins over a load that started before it.
    /// `None` writes plain values.
    pub fn versioned(&self) -> Option<&ConsistencyConfig> {
        self.versioned.as_ref()
    }

    /// Cross-process load leases for `get_or_load`: the first process loads, the others wait for its
    /// value, and take over once its lease has run this long without a value (a holder that crashed or
    /// got stuck). A waiter gives up with [`Error::LeaseWait`] after twice this. From 10 ms to 10 min;
    /// `None` (the default) keeps single-flight within the process only.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }

    /// When Redis cannot be reached, `get_or_load` answers from the loader instead of failing. Default
    /// off.
    pub fn fail_safe(&self) -> bool {
        self.fail_safe
    }

    /// Per-call options (timeout, replica reads, waiting for a failover). A timeout, when set, is from
    /// 1 ms to 10 min. Default: the client's.
    pub fn call(&self) -> &CallOptions {
        &self.call
    }

    /// Background health collection (every `REDIS_HEALTH_INTERVAL_MS`, 30 s by default); `false` runs
    /// none. Default on. Only with the `health` feature.
    #[cfg(feature = "health")]
    pub fn health(&self) -> bool {
        self.health
    }

    /// The near cache: hot values kept in process memory and invalidated by the servers (RESP3 client
    /// tracking), see the `near-cache` crate. `None` (the default) keeps nothing in memory.
    pub fn near(&self) -> Option<&NearSettings> {
        self.near.as_ref()
    }

    /// Checks every value; [`CacheConfigBuilder::build`] calls it.
    fn validate(&self) -> Result<(), Error> {
        if let Some(near) = &self.near {
            near.validate()
                .map_err(|e| Error::Settings(format!("near: {e}")))?;
        }
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
        #[cfg(feature = "lz4")]
        if self.decompressed_max_bytes < DECOMPRESSED_MIN_BYTES {
            return Err(Error::Settings(format!(
                "decompressed_max_bytes is {}, under 1 KiB; use at least the size of your largest value",
                self.decompressed_max_bytes
            )));
        }
        Ok(())
    }
}

/// Builds a [`CacheConfig`]: one setter per field, named like it (see the field's getter on
/// [`CacheConfig`] for its meaning, default and range); [`build`](Self::build) checks the values.
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheConfigBuilder {
    config: CacheConfig,
}

impl CacheConfigBuilder {
    /// Sets the key prefix (`namespace:key`); it must not be empty.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = Some(namespace.into());
        self
    }

    /// Sets how values become bytes.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Sets the encoded size from which values are LZ4-compressed; `None` never compresses.
    #[cfg(feature = "lz4")]
    pub fn compress_at_bytes(mut self, bytes: impl Into<Option<usize>>) -> Self {
        self.config.compress_at_bytes = bytes.into();
        self
    }

    /// Sets the largest value this cache decompresses (at least 1 KiB).
    #[cfg(feature = "lz4")]
    pub fn decompressed_max_bytes(mut self, bytes: usize) -> Self {
        self.config.decompressed_max_bytes = bytes;
        self
    }

    /// Sets the largest share of each TTL removed at random (0 to 0.5; 0 turns jitter off).
    pub fn ttl_jitter(mut self, share: f64) -> Self {
        self.config.ttl_jitter = share;
        self
    }

    /// Sets how long an absence found by a loader is remembered; `None` remembers none.
    pub fn negative_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.config.negative_ttl = ttl.into();
        self
    }

    /// Sets the versioned-write settings; `None` writes plain values.
    pub fn versioned(mut self, versioned: impl Into<Option<ConsistencyConfig>>) -> Self {
        self.config.versioned = versioned.into();
        self
    }

    /// Sets the cross-process load lease (10 ms to 10 min); `None` keeps single-flight in the process.
    pub fn lease(mut self, lease: impl Into<Option<Duration>>) -> Self {
        self.config.lease = lease.into();
        self
    }

    /// Sets whether `get_or_load` answers from the loader when Redis cannot be reached.
    pub fn fail_safe(mut self, fail_safe: bool) -> Self {
        self.config.fail_safe = fail_safe;
        self
    }

    /// Sets the per-call options.
    pub fn call(mut self, call: CallOptions) -> Self {
        self.config.call = call;
        self
    }

    /// Sets whether health is collected in the background.
    #[cfg(feature = "health")]
    pub fn health(mut self, health: bool) -> Self {
        self.config.health = health;
        self
    }

    /// Sets the near cache (`None`: off).
    pub fn near(mut self, near: impl Into<Option<NearSettings>>) -> Self {
        self.config.near = near.into();
        self
    }

    /// Checks every value and returns the configuration, or an [`Error::Settings`] naming the field,
    /// what is wrong and what to use.
    pub fn build(self) -> Result<CacheConfig, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the defaults after `change`; `want` is a fragment of the error, or `None` for valid.
    fn check(change: impl FnOnce(CacheConfigBuilder) -> CacheConfigBuilder, want: Option<&str>) {
        let builder = change(CacheConfig::builder());
        let shown = format!("{builder:?}");
        match (builder.build(), want) {
            (Ok(_), None) => {}
            (Err(Error::Settings(text)), Some(want)) => {
                assert!(text.contains(want), "{text:?} does not say {want:?}")
            }
            (got, want) => panic!("{shown}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn zero_and_maximal_durations_are_typed_setting_errors() {
        check(|b| b, None);
        // lease
        check(
            |b| b.lease(Some(Duration::ZERO)),
            Some("lease is 0ns, under 10 ms"),
        );
        check(|b| b.lease(Some(Duration::MAX)), Some("over 10 min"));
        check(|b| b.lease(Some(LEASE_MIN)), None);
        check(|b| b.lease(Some(LEASE_MAX)), None);
        check(
            |b| b.lease(Some(LEASE_MAX + Duration::from_millis(1))),
            Some("over 10 min"),
        );
        // negative_ttl
        check(
            |b| b.negative_ttl(Some(Duration::ZERO)),
            Some("negative_ttl is 0ns"),
        );
        check(|b| b.negative_ttl(Some(Duration::MAX)), Some("over 24 h"));
        check(|b| b.negative_ttl(Some(NEGATIVE_TTL_MAX)), None);
        check(|b| b.negative_ttl(None), None);
        // call.timeout
        check(
            |b| b.call(CallOptions::timeout(Duration::ZERO)),
            Some("every call would fail"),
        );
        check(
            |b| b.call(CallOptions::timeout(Duration::MAX)),
            Some("call.timeout"),
        );
        check(|b| b.call(CallOptions::timeout(CALL_TIMEOUT_MAX)), None);
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn the_decompression_limit_is_at_least_a_kibibyte() {
        check(
            |b| b.decompressed_max_bytes(0),
            Some("decompressed_max_bytes is 0"),
        );
        check(|b| b.decompressed_max_bytes(DECOMPRESSED_MIN_BYTES), None);
        check(|b| b.decompressed_max_bytes(usize::MAX), None);
    }

    #[test]
    fn ttl_jitter_is_a_share_from_zero_to_a_half_and_namespaces_are_not_empty() {
        check(|b| b.ttl_jitter(0.0), None);
        check(|b| b.ttl_jitter(0.5), None);
        check(|b| b.ttl_jitter(0.51), Some("ttl_jitter is 0.51"));
        check(|b| b.ttl_jitter(-0.1), Some("ttl_jitter is -0.1"));
        check(|b| b.ttl_jitter(f64::NAN), Some("ttl_jitter is NaN"));
        check(|b| b.namespace("orders"), None);
        check(|b| b.namespace(""), Some("namespace is empty"));
    }
}
