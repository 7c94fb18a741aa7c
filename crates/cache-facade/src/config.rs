//! The facade's own settings and their validation (the connection settings are in `ClusterConfig`).

use std::time::Duration;

use cluster_client::CallOptions;
use consistency::ConsistencyConfig;

use crate::Error;
use crate::codec::Codec;

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
    pub(crate) fn validate(&self) -> Result<(), Error> {
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
}
