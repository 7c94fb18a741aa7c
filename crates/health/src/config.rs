//! The health loop's settings, their builder and their validation (the nodes to poll are in
//! `ClusterConfig`).

use std::time::Duration;

use cluster_config::ClusterConfig;

use crate::error::Error;
use crate::rules::Thresholds;
use crate::trends::TREND_RETENTION;

/// The shortest interval between rounds: each polls every node (PING, INFO, CLUSTER INFO/NODES), and
/// `REDIS_HEALTH_INTERVAL_MS` has the same minimum.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest interval between rounds: `u32::MAX` milliseconds (about 49.7 days), the bound of every
/// duration setting (a longer one would overflow the loop's deadline arithmetic).
pub const MAX_INTERVAL: Duration = Duration::from_millis(u32::MAX as u64);

/// How the health loop runs (the nodes it polls are in [`ClusterConfig`]).
///
/// Start from [`HealthConfig::from_config`] (what a `ClusterConfig` asks for) or from the defaults
/// ([`HealthConfig::builder`], [`HealthConfig::default`]); change a field with the builder's setter of
/// the same name, which [`build`](HealthConfigBuilder::build) checks once. Read a field with the method
/// of the same name.
///
/// ```
/// use std::time::Duration;
/// use cluster_config::ClusterConfig;
/// use health::HealthConfig;
///
/// let cluster = ClusterConfig::builder().nodes(["10.0.0.1:7000"]).build()?;
/// let config = HealthConfig::from_config(&cluster)
///     .to_builder()
///     .interval(Duration::from_secs(5))
///     .record_metrics(false)
///     .build()?;
/// assert_eq!(config.interval(), Duration::from_secs(5));
/// assert!(HealthConfig::builder().node_timeout(Duration::ZERO).build().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub(crate) interval: Duration,
    pub(crate) at_risk_interval: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) thresholds: Thresholds,
    pub(crate) retention: Duration,
    pub(crate) record_metrics: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(30),
            at_risk_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            retention: TREND_RETENTION,
            record_metrics: true,
        }
    }
}

impl HealthConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> HealthConfigBuilder {
        HealthConfigBuilder {
            config: HealthConfig::default(),
        }
    }

    /// A builder starting from this configuration, to derive a changed copy (for instance of
    /// [`HealthConfig::from_config`]).
    pub fn to_builder(&self) -> HealthConfigBuilder {
        HealthConfigBuilder { config: self.clone() }
    }

    /// The settings a configuration asks for: its health interval and metrics switch, and a node
    /// timeout of the configured command timeout capped at 1 s and at half the interval. Always valid,
    /// as `ClusterConfig` keeps its health interval within [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use cluster_config::ClusterConfig;
    ///
    /// let config = ClusterConfig::builder().nodes(["10.0.0.1:7000"]).health_interval(Duration::from_secs(10)).build()?;
    /// let health = health::HealthConfig::from_config(&config);
    /// assert_eq!(health.interval(), Duration::from_secs(10));
    /// assert!(health.node_timeout() <= Duration::from_secs(1));
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn from_config(config: &ClusterConfig) -> HealthConfig {
        HealthConfig {
            interval: config.health_interval(),
            at_risk_interval: config.health_interval().min(Duration::from_secs(1)),
            // Below the interval, so that a round always ends before the next one is due.
            node_timeout: config
                .timeouts()
                .command
                .min(Duration::from_secs(1))
                .min(config.health_interval() / 2),
            record_metrics: config.metrics().enabled,
            ..HealthConfig::default()
        }
    }

    /// Time between collection rounds, from [`MIN_INTERVAL`] to [`MAX_INTERVAL`]. Default 30 s
    /// (`REDIS_HEALTH_INTERVAL_MS`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Time between rounds while slots are at risk: a node that serves slots is down, some slots are
    /// not served, a node is flagged PFAIL, or a node reports `cluster_state:fail`. A failover and the
    /// recovery then show within about this time instead of at the next regular round. Above zero and
    /// at most the interval; default 1 s; equal to the interval turns it off.
    pub fn at_risk_interval(&self) -> Duration {
        self.at_risk_interval
    }

    /// How long one node may take to answer a whole round (connect, PING, INFO, CLUSTER INFO/NODES)
    /// before it counts as down. Above zero and below the interval. Default 1 s.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// The anomaly rules' bounds (each checked by [`Thresholds::validate`]).
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// How much history the trend ring keeps. Default 24 h (2,880 rounds at 30 s). The ring keeps
    /// at most [`TREND_MAX_SAMPLES`](crate::TREND_MAX_SAMPLES) rounds (its byte budget), so a short
    /// interval keeps less than this, with a warning.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Whether each round updates the `metrics` recorder (`REDIS_CLUSTER_METRICS`). Default on.
    pub fn record_metrics(&self) -> bool {
        self.record_metrics
    }

    /// Checks every value, naming the first field out of range. [`HealthConfigBuilder::build`] calls
    /// it, and so does the checker, for a configuration made by [`HealthConfig::from_config`]: that one
    /// is valid only as long as `ClusterConfig` keeps its ranges, which this crate does not control.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&self.interval) {
            return Err(Error::Invalid {
                name: "interval",
                problem: format!(
                    "{:?} is out of range; use {MIN_INTERVAL:?} to {MAX_INTERVAL:?} (REDIS_HEALTH_INTERVAL_MS): \
                     each round polls every node",
                    self.interval
                ),
            });
        }
        if self.node_timeout.is_zero() || self.node_timeout >= self.interval {
            return Err(Error::Invalid {
                name: "node_timeout",
                problem: format!(
                    "{:?} must be above zero and below the interval ({:?}), so that a round ends before the next",
                    self.node_timeout, self.interval
                ),
            });
        }
        if self.at_risk_interval.is_zero() || self.at_risk_interval > self.interval {
            return Err(Error::Invalid {
                name: "at_risk_interval",
                problem: format!(
                    "{:?} must be above zero and at most the interval ({:?})",
                    self.at_risk_interval, self.interval
                ),
            });
        }
        self.thresholds.validate()
    }
}

/// Builds a [`HealthConfig`]: one setter per field, named like it (see the field's getter on
/// [`HealthConfig`] for its meaning, default and range); [`build`](Self::build) checks the values.
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HealthConfigBuilder {
    config: HealthConfig,
}

impl HealthConfigBuilder {
    /// Sets the time between collection rounds ([`MIN_INTERVAL`] to [`MAX_INTERVAL`]).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// Sets the time between rounds while slots are at risk (above zero, at most the interval).
    pub fn at_risk_interval(mut self, interval: Duration) -> Self {
        self.config.at_risk_interval = interval;
        self
    }

    /// Sets how long one node may take to answer a round (above zero, below the interval).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.config.node_timeout = timeout;
        self
    }

    /// Sets the anomaly rules' bounds.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.config.thresholds = thresholds;
        self
    }

    /// Sets how much history the trend ring keeps (within its byte budget).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// Sets whether each round updates the `metrics` recorder.
    pub fn record_metrics(mut self, record_metrics: bool) -> Self {
        self.config.record_metrics = record_metrics;
        self
    }

    /// Checks every value and returns the configuration, or an [`Error::Invalid`] naming the field,
    /// what is wrong and what to use.
    pub fn build(self) -> Result<HealthConfig, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the defaults after `change`; `field` is the field the error must name, or `None` for
    /// valid.
    fn check(change: impl FnOnce(HealthConfigBuilder) -> HealthConfigBuilder, field: Option<&str>) {
        match (change(HealthConfig::builder()).build(), field) {
            (Ok(_), None) => {}
            (Err(e), Some(field)) => assert!(e.to_string().contains(field), "{e}"),
            (Ok(_), Some(field)) => panic!("expected an error naming {field}"),
            (Err(e), None) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn settings_are_validated_by_build() {
        let default_interval = HealthConfig::default().interval;
        check(|b| b, None);
        check(|b| b.node_timeout(Duration::ZERO), Some("node_timeout"));
        check(|b| b.node_timeout(default_interval), Some("node_timeout"));
        check(
            |b| {
                b.thresholds(Thresholds {
                    memory_used_max_ratio: 2.0,
                    ..Thresholds::default()
                })
            },
            Some("memory_used_max_ratio"),
        );
        check(|b| b.interval(Duration::from_millis(200)), Some("node_timeout"));
        check(|b| b.at_risk_interval(Duration::ZERO), Some("at_risk_interval"));
        check(
            |b| {
                b.interval(Duration::from_millis(1))
                    .at_risk_interval(Duration::from_millis(1))
                    .node_timeout(Duration::from_nanos(1))
            },
            Some("interval"),
        );
        check(|b| b.interval(Duration::MAX), Some("interval"));
        check(
            |b| b.at_risk_interval(default_interval + Duration::from_millis(1)),
            Some("at_risk_interval"),
        );
        check(
            |b| {
                b.interval(Duration::from_millis(200))
                    .at_risk_interval(Duration::from_millis(200))
                    .node_timeout(Duration::from_millis(100))
            },
            None,
        );
    }

    #[test]
    fn settings_from_a_config_are_always_valid() {
        for interval_ms in [100, 500, 1_000, 1_999, 30_000, 86_400_000, u64::from(u32::MAX)] {
            let config = ClusterConfig::builder()
                .nodes(["127.0.0.1:1"])
                .health_interval(Duration::from_millis(interval_ms))
                .build()
                .expect("valid config");
            let health = HealthConfig::from_config(&config);
            assert_eq!(health.interval, Duration::from_millis(interval_ms));
            if let Err(e) = health.to_builder().build() {
                panic!("interval {interval_ms} ms: {e}");
            }
            if let Err(e) = crate::HealthChecker::new(&config, health) {
                panic!("interval {interval_ms} ms: {e}");
            }
        }
    }
}
