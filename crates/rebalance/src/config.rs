//! [`RebalanceConfig`]: how slots move (batch sizes, timeouts, parallelism, the skip threshold, what to
//! do when the target already holds a key).

use std::time::Duration;

use sharding::DistributionThresholds;

use crate::Error;

/// The most keys one `MIGRATE` may carry.
pub const MAX_KEYS_PER_BATCH: usize = 100_000;

/// What a move does when the target already holds a key it is about to copy (`MIGRATE` answers
/// `BUSYKEY`).
///
/// While a slot migrates, the source serves the keys it still has and answers `ASK` for the others,
/// so a client writes a key on the target only when the source no longer had it: the target's copy
/// was written after the source's was deleted or expired, and is the newer one. `REPLACE` would
/// overwrite it with the older copy (a lost write), so keys are never sent with `REPLACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BusyKeyPolicy {
    /// Keep the target's copy and delete the source's, but only if the source's copy is still the one
    /// that was refused (compared by `DUMP`, decided on the source by a script): a write that lands on
    /// the source meanwhile is retried, never dropped silently. Each such key is listed in the report
    /// ([`MoveReport::busy_keys`](crate::MoveReport::busy_keys)). The default.
    #[default]
    KeepTarget,
    /// Stop the move with [`Error::BusyKey`], leaving the slot migrating (both copies untouched) for
    /// an operator to decide; [`Rebalancer::resume`](crate::Rebalancer::resume) finishes it after.
    Abort,
}

/// How a [`Rebalancer`](crate::Rebalancer) moves slots.
///
/// Build it with [`RebalanceConfig::builder`] (setters named like the fields, checked by
/// [`build`](RebalanceConfigBuilder::build)); read a field with the method of the same name.
///
/// ```
/// use std::time::Duration;
/// use rebalance::RebalanceConfig;
///
/// let config = RebalanceConfig::builder().keys_per_batch(500).concurrent_slots(4).build()?;
/// assert_eq!(config.keys_per_batch(), 500);
/// assert_eq!(config.threshold_percent(), 2.0);
/// assert!(RebalanceConfig::builder().keys_per_batch(0).build().is_err());
/// # Ok::<(), rebalance::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceConfig {
    pub(crate) keys_per_batch: usize,
    pub(crate) bytes_per_batch: u64,
    pub(crate) migrate_timeout: Duration,
    pub(crate) batches_in_flight: usize,
    pub(crate) concurrent_slots: usize,
    pub(crate) threshold_percent: f64,
    pub(crate) busy_key_policy: BusyKeyPolicy,
    pub(crate) admin_timeout: Duration,
    pub(crate) join_timeout: Duration,
    pub(crate) distribution_thresholds: DistributionThresholds,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            keys_per_batch: 100,
            bytes_per_batch: 8 * 1024 * 1024,
            migrate_timeout: Duration::from_secs(10),
            batches_in_flight: 4,
            concurrent_slots: 4,
            threshold_percent: 2.0,
            busy_key_policy: BusyKeyPolicy::KeepTarget,
            admin_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(30),
            distribution_thresholds: DistributionThresholds::default(),
        }
    }
}

impl RebalanceConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RebalanceConfigBuilder {
        RebalanceConfigBuilder {
            config: RebalanceConfig::default(),
        }
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> RebalanceConfigBuilder {
        RebalanceConfigBuilder { config: self.clone() }
    }

    /// Keys per `MIGRATE` (1 to [`MAX_KEYS_PER_BATCH`]); default 100.
    pub fn keys_per_batch(&self) -> usize {
        self.keys_per_batch
    }

    /// Bound on the bytes of one `MIGRATE`, as `MEMORY USAGE` estimates them (at least 1 KiB); a batch
    /// stops early when its keys reach it, and always carries at least one key. Default 8 MiB.
    pub fn bytes_per_batch(&self) -> u64 {
        self.bytes_per_batch
    }

    /// `MIGRATE`'s own I/O timeout between the two nodes (1 ms to 1 hour); default 10 s.
    pub fn migrate_timeout(&self) -> Duration {
        self.migrate_timeout
    }

    /// `MIGRATE` commands of one slot in flight at once on the source's admin connection (pipelined;
    /// 1 to 64); default 4.
    pub fn batches_in_flight(&self) -> usize {
        self.batches_in_flight
    }

    /// Slots moving at once (1 to 256). Never two from the same source node, nor two to the same
    /// target: slots of different source/target pairs move in parallel. Default 4.
    pub fn concurrent_slots(&self) -> usize {
        self.concurrent_slots
    }

    /// Primaries whose slot count is off their weighted share by less than this percentage of the
    /// share are left alone, as `redis-cli --cluster rebalance --cluster-threshold` does (0 to 100);
    /// default 2.
    pub fn threshold_percent(&self) -> f64 {
        self.threshold_percent
    }

    /// What to do when a target already holds a key being moved; default
    /// [`BusyKeyPolicy::KeepTarget`].
    pub fn busy_key_policy(&self) -> BusyKeyPolicy {
        self.busy_key_policy
    }

    /// Timeout of each administrative command (`CLUSTER SETSLOT`, `GETKEYSINSLOT`, ...; 1 ms to 1
    /// hour); default 5 s.
    pub fn admin_timeout(&self) -> Duration {
        self.admin_timeout
    }

    /// How long to wait for the cluster to agree: a new node known by every node, a replica's link up,
    /// a slot's owner seen everywhere (1 ms to 1 hour); default 30 s.
    pub fn join_timeout(&self) -> Duration {
        self.join_timeout
    }

    /// The bounds [`Rebalancer::validate_distribution`](crate::Rebalancer::validate_distribution)
    /// judges slots, keys and memory by; default [`DistributionThresholds::default`].
    pub fn distribution_thresholds(&self) -> &DistributionThresholds {
        &self.distribution_thresholds
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |field: &'static str, value: String, allowed: &str| {
            Err(Error::InvalidConfig {
                field,
                value,
                allowed: allowed.to_string(),
            })
        };
        if !(1..=MAX_KEYS_PER_BATCH).contains(&self.keys_per_batch) {
            return invalid(
                "keys_per_batch",
                self.keys_per_batch.to_string(),
                "use 1 to 100000 keys per MIGRATE",
            );
        }
        if self.bytes_per_batch < 1024 {
            return invalid(
                "bytes_per_batch",
                self.bytes_per_batch.to_string(),
                "use at least 1024 bytes (a batch always carries at least one key)",
            );
        }
        let hour = Duration::from_secs(3600);
        for (field, value) in [
            ("migrate_timeout", self.migrate_timeout),
            ("admin_timeout", self.admin_timeout),
            ("join_timeout", self.join_timeout),
        ] {
            if !(Duration::from_millis(1)..=hour).contains(&value) {
                return invalid(field, format!("{value:?}"), "use 1 ms to 1 hour");
            }
        }
        if !(1..=64).contains(&self.batches_in_flight) {
            return invalid(
                "batches_in_flight",
                self.batches_in_flight.to_string(),
                "use 1 to 64 MIGRATE commands in flight",
            );
        }
        if !(1..=256).contains(&self.concurrent_slots) {
            return invalid(
                "concurrent_slots",
                self.concurrent_slots.to_string(),
                "use 1 to 256 slots moving at once",
            );
        }
        if !(0.0..=100.0).contains(&self.threshold_percent) {
            return invalid(
                "threshold_percent",
                self.threshold_percent.to_string(),
                "use 0 to 100 (percent of a primary's share)",
            );
        }
        Ok(())
    }
}

/// Builds a [`RebalanceConfig`]; every setter is named like the field it sets, and
/// [`build`](RebalanceConfigBuilder::build) checks them all.
#[derive(Debug, Clone)]
pub struct RebalanceConfigBuilder {
    config: RebalanceConfig,
}

impl RebalanceConfigBuilder {
    /// Sets [`RebalanceConfig::keys_per_batch`].
    pub fn keys_per_batch(mut self, keys: usize) -> Self {
        self.config.keys_per_batch = keys;
        self
    }

    /// Sets [`RebalanceConfig::bytes_per_batch`].
    pub fn bytes_per_batch(mut self, bytes: u64) -> Self {
        self.config.bytes_per_batch = bytes;
        self
    }

    /// Sets [`RebalanceConfig::migrate_timeout`].
    pub fn migrate_timeout(mut self, timeout: Duration) -> Self {
        self.config.migrate_timeout = timeout;
        self
    }

    /// Sets [`RebalanceConfig::batches_in_flight`].
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.config.batches_in_flight = batches;
        self
    }

    /// Sets [`RebalanceConfig::concurrent_slots`].
    pub fn concurrent_slots(mut self, slots: usize) -> Self {
        self.config.concurrent_slots = slots;
        self
    }

    /// Sets [`RebalanceConfig::threshold_percent`].
    pub fn threshold_percent(mut self, percent: f64) -> Self {
        self.config.threshold_percent = percent;
        self
    }

    /// Sets [`RebalanceConfig::busy_key_policy`].
    pub fn busy_key_policy(mut self, policy: BusyKeyPolicy) -> Self {
        self.config.busy_key_policy = policy;
        self
    }

    /// Sets [`RebalanceConfig::admin_timeout`].
    pub fn admin_timeout(mut self, timeout: Duration) -> Self {
        self.config.admin_timeout = timeout;
        self
    }

    /// Sets [`RebalanceConfig::join_timeout`].
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.config.join_timeout = timeout;
        self
    }

    /// Sets [`RebalanceConfig::distribution_thresholds`].
    pub fn distribution_thresholds(mut self, thresholds: DistributionThresholds) -> Self {
        self.config.distribution_thresholds = thresholds;
        self
    }

    /// Checks every setting and returns the configuration, or [`Error::InvalidConfig`] naming the
    /// field, the value and what is accepted.
    pub fn build(self) -> Result<RebalanceConfig, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<RebalanceConfig, Error>) -> Option<&'static str> {
        match result {
            Ok(_) => None,
            Err(Error::InvalidConfig { field, .. }) => Some(field),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = RebalanceConfig::builder().build().unwrap();
        assert_eq!(config.keys_per_batch(), 100);
        assert_eq!(config.bytes_per_batch(), 8 * 1024 * 1024);
        assert_eq!(config.threshold_percent(), 2.0);
        assert_eq!(config.busy_key_policy(), BusyKeyPolicy::KeepTarget);
    }

    #[test]
    fn every_setting_is_checked_at_build() {
        let b = RebalanceConfig::builder;
        assert_eq!(field_of(b().keys_per_batch(0).build()), Some("keys_per_batch"));
        assert_eq!(
            field_of(b().keys_per_batch(100_001).build()),
            Some("keys_per_batch")
        );
        assert_eq!(field_of(b().keys_per_batch(100_000).build()), None);
        assert_eq!(field_of(b().keys_per_batch(1).build()), None);
        assert_eq!(field_of(b().bytes_per_batch(0).build()), Some("bytes_per_batch"));
        assert_eq!(field_of(b().bytes_per_batch(u64::MAX).build()), None);
        assert_eq!(
            field_of(b().migrate_timeout(Duration::ZERO).build()),
            Some("migrate_timeout")
        );
        assert_eq!(
            field_of(b().admin_timeout(Duration::MAX).build()),
            Some("admin_timeout")
        );
        assert_eq!(
            field_of(b().join_timeout(Duration::from_secs(3601)).build()),
            Some("join_timeout")
        );
        assert_eq!(
            field_of(b().batches_in_flight(0).build()),
            Some("batches_in_flight")
        );
        assert_eq!(
            field_of(b().concurrent_slots(0).build()),
            Some("concurrent_slots")
        );
        assert_eq!(
            field_of(b().concurrent_slots(257).build()),
            Some("concurrent_slots")
        );
        assert_eq!(
            field_of(b().threshold_percent(f64::NAN).build()),
            Some("threshold_percent")
        );
        assert_eq!(
            field_of(b().threshold_percent(-1.0).build()),
            Some("threshold_percent")
        );
        assert_eq!(field_of(b().threshold_percent(0.0).build()), None);
    }
}
