//! Trends: a ring buffer of one compact sample per round, sized for 24 hours within a byte budget,
//! with min/avg/max over any recent window.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::snapshot::{Snapshot, unix_ms};
use crate::summary::HealthSummary;

/// How long trends are kept by default.
pub const TREND_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The most memory a trend ring's samples may take: 8 MiB, about 60,000 samples (24 hours at a
/// 1.5 s interval). At the default 30 s interval 24 hours take 2,880 samples (about 400 KB); a
/// shorter interval keeps fewer hours instead of more memory (see [`TrendRing::for_retention`]).
pub const TREND_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// The most samples a ring keeps: [`TREND_BUDGET_BYTES`] worth.
pub const TREND_MAX_SAMPLES: usize = TREND_BUDGET_BYTES / std::mem::size_of::<TrendSample>();

/// The cluster-wide figures of one round, as kept for trends (about 100 bytes, so that 24 hours at a
/// 30 s interval, 2,880 samples, take about 300 KB rather than thousands of full snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendSample {
    /// The snapshot's time.
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// Sum of `instantaneous_ops_per_sec` over reachable nodes.
    pub ops_per_sec: f64,
    /// Cluster p50 latency, seconds (see [`HealthSummary::latency_p50`]).
    pub latency_p50_seconds: Option<f64>,
    /// Cluster p99 latency, seconds.
    pub latency_p99_seconds: Option<f64>,
    /// `used_memory` summed over reachable nodes.
    pub used_memory_bytes: f64,
    /// The highest `used_memory / maxmemory` of any node with a limit.
    pub max_memory_ratio: Option<f64>,
    /// Nodes that answered.
    pub nodes_connected: f64,
    /// Slots served (cluster mode).
    pub slots_covered: Option<f64>,
    /// Keys on reachable primaries.
    pub keys: f64,
    /// The largest replication lag of any replica, bytes.
    pub max_replication_lag_bytes: f64,
    /// Active alerts.
    pub active_alerts: f64,
    /// How long the collection round took, seconds.
    pub round_seconds: f64,
}

impl TrendSample {
    /// The sample of one snapshot and its summary.
    pub fn of(snapshot: &Snapshot, summary: &HealthSummary) -> TrendSample {
        TrendSample {
            at: snapshot.taken_at,
            ops_per_sec: summary.ops_per_sec as f64,
            latency_p50_seconds: summary.latency_p50.map(|d| d.as_secs_f64()),
            latency_p99_seconds: summary.latency_p99.map(|d| d.as_secs_f64()),
            used_memory_bytes: summary.memory.iter().map(|m| m.used_bytes as f64).sum(),
            max_memory_ratio: summary
                .memory
                .iter()
                .filter_map(|m| m.used_ratio)
                .reduce(f64::max),
            nodes_connected: summary.nodes_connected as f64,
            slots_covered: summary.slots_covered.map(f64::from),
            keys: summary.keys as f64,
            max_replication_lag_bytes: summary.replication.max_lag_bytes as f64,
            active_alerts: summary.active_alerts.len() as f64,
            round_seconds: snapshot.round_duration.as_secs_f64(),
        }
    }

    /// The value of `metric` in this sample, if it was measured.
    pub fn value(&self, metric: TrendMetric) -> Option<f64> {
        match metric {
            TrendMetric::OpsPerSec => Some(self.ops_per_sec),
            TrendMetric::LatencyP50 => self.latency_p50_seconds,
            TrendMetric::LatencyP99 => self.latency_p99_seconds,
            TrendMetric::UsedMemory => Some(self.used_memory_bytes),
            TrendMetric::MaxMemoryRatio => self.max_memory_ratio,
            TrendMetric::NodesConnected => Some(self.nodes_connected),
            TrendMetric::SlotsCovered => self.slots_covered,
            TrendMetric::Keys => Some(self.keys),
            TrendMetric::MaxReplicationLag => Some(self.max_replication_lag_bytes),
            TrendMetric::ActiveAlerts => Some(self.active_alerts),
            TrendMetric::RoundDuration => Some(self.round_seconds),
        }
    }
}

/// A figure whose trend can be asked for; see the [`TrendSample`] field of the same name for its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrendMetric {
    /// Operations per second (all nodes).
    OpsPerSec,
    /// p50 latency, seconds.
    LatencyP50,
    /// p99 latency, seconds.
    LatencyP99,
    /// Memory used, bytes (all nodes).
    UsedMemory,
    /// Highest memory use as a share of `maxmemory`.
    MaxMemoryRatio,
    /// Nodes that answered.
    NodesConnected,
    /// Slots served.
    SlotsCovered,
    /// Keys on primaries.
    Keys,
    /// Largest replication lag, bytes.
    MaxReplicationLag,
    /// Active alerts.
    ActiveAlerts,
    /// Collection round duration, seconds.
    RoundDuration,
}

/// Minimum, mean and maximum of one metric over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Smallest value.
    pub min: f64,
    /// Mean value.
    pub avg: f64,
    /// Largest value.
    pub max: f64,
    /// Samples in the window that had a value.
    pub samples: usize,
}

/// A fixed-capacity ring of [`TrendSample`]s: the newest pushes out the oldest. Its capacity is at
/// most [`TREND_MAX_SAMPLES`], and its memory grows with the samples pushed (nothing is reserved up
/// front), up to [`TREND_BUDGET_BYTES`].
///
/// ```
/// use std::time::Duration;
/// use health::{TrendRing, TrendMetric, TREND_MAX_SAMPLES};
///
/// let ring = TrendRing::for_retention(Duration::from_secs(24 * 3600), Duration::from_secs(30));
/// assert_eq!(ring.capacity(), 2_880);
/// assert!(ring.window(TrendMetric::OpsPerSec, Duration::from_secs(3600)).is_none());
///
/// // 24 hours every 100 ms would be 864,000 samples: the budget keeps fewer hours instead.
/// let fast = TrendRing::for_retention(Duration::from_secs(24 * 3600), Duration::from_millis(100));
/// assert_eq!(fast.capacity(), TREND_MAX_SAMPLES);
/// assert_eq!(fast.heap_bytes(), 0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TrendRing {
    capacity: usize,
    samples: VecDeque<TrendSample>,
}

impl TrendRing {
    /// A ring of `capacity` samples (at least 1, at most [`TREND_MAX_SAMPLES`]). Memory is taken as
    /// samples arrive, not reserved up front.
    pub fn new(capacity: usize) -> TrendRing {
        TrendRing {
            capacity: capacity.clamp(1, TREND_MAX_SAMPLES),
            samples: VecDeque::new(),
        }
    }

    /// A ring holding `retention` worth of samples taken every `interval` (rounded up), within the
    /// budget: when that would take more than [`TREND_MAX_SAMPLES`], the ring keeps that many and
    /// the retention shrinks (to [`TrendRing::retention`] for this interval), with a warning.
    pub fn for_retention(retention: Duration, interval: Duration) -> TrendRing {
        let interval_ms = interval.as_millis().max(1);
        let wanted = retention.as_millis().div_ceil(interval_ms);
        let ring = TrendRing::new(usize::try_from(wanted).unwrap_or(usize::MAX));
        if wanted > ring.capacity as u128 {
            let kept = Duration::from_millis(
                u64::try_from(interval_ms.saturating_mul(ring.capacity as u128)).unwrap_or(u64::MAX),
            );
            tracing::warn!(
                ?retention,
                ?interval,
                ?kept,
                samples = ring.capacity,
                budget_bytes = TREND_BUDGET_BYTES,
                "trend retention shortened to fit the trend budget; lengthen the health interval to keep more"
            );
        }
        ring
    }

    /// How much history the ring holds when full, if samples come every `interval`.
    pub fn retention(&self, interval: Duration) -> Duration {
        interval.saturating_mul(u32::try_from(self.capacity).unwrap_or(u32::MAX))
    }

    /// Bytes the ring's samples take now (what the `rcc_health_trend_bytes` gauge reports).
    pub fn heap_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<TrendSample>()
    }

    /// How many samples it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many samples it holds.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds the newest sample, dropping the oldest when full.
    pub fn push(&mut self, sample: TrendSample) {
        if self.samples.len() >= self.capacity {
            self.samples.pop_front();
        } else if self.samples.len() == self.samples.capacity() {
            // Grow by doubling, but never past the capacity: `VecDeque` alone would round up to the
            // next power of two, past the budget.
            let wanted = (self.samples.len() * 2).max(4).min(self.capacity);
            self.samples.reserve_exact(wanted - self.samples.len());
        }
        self.samples.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &TrendSample> + ExactSizeIterator {
        self.samples.iter()
    }

    /// Min, mean and max of `metric` over the samples no older than `window` before the newest one.
    /// `None` when no sample in the window has a value.
    pub fn window(&self, metric: TrendMetric, window: Duration) -> Option<WindowStats> {
        let newest = self.samples.back()?.at;
        let since = newest.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut stats: Option<WindowStats> = None;
        let mut sum = 0.0;
        for value in self
            .samples
            .iter()
            .rev()
            .take_while(|s| s.at >= since)
            .filter_map(|s| s.value(metric))
        {
            sum += value;
            stats = Some(match stats {
                None => WindowStats {
                    min: value,
                    avg: 0.0,
                    max: value,
                    samples: 1,
                },
                Some(s) => WindowStats {
                    min: s.min.min(value),
                    max: s.max.max(value),
                    samples: s.samples + 1,
                    ..s
                },
            });
        }
        stats.map(|s| WindowStats {
            avg: sum / s.samples as f64,
            ..s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: u64, ops: f64, p99: Option<f64>) -> TrendSample {
        TrendSample {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            ops_per_sec: ops,
            latency_p50_seconds: None,
            latency_p99_seconds: p99,
            used_memory_bytes: 0.0,
            max_memory_ratio: None,
            nodes_connected: 6.0,
            slots_covered: Some(16_384.0),
            keys: 0.0,
            max_replication_lag_bytes: 0.0,
            active_alerts: 0.0,
            round_seconds: 0.01,
        }
    }

    fn check(
        ring: &TrendRing,
        metric: TrendMetric,
        window_secs: u64,
        expected: Option<(f64, f64, f64, usize)>,
    ) {
        let got = ring
            .window(metric, Duration::from_secs(window_secs))
            .map(|s| (s.min, s.avg, s.max, s.samples));
        assert_eq!(got, expected, "{metric:?} over {window_secs}s");
    }

    #[test]
    fn windows_give_min_avg_max_of_the_recent_samples() {
        let mut ring = TrendRing::new(10);
        for (i, ops) in [10.0, 40.0, 20.0, 30.0].into_iter().enumerate() {
            ring.push(sample(i as u64 * 30, ops, (i % 2 == 0).then_some(ops / 1000.0)));
        }
        check(&ring, TrendMetric::OpsPerSec, 0, Some((30.0, 30.0, 30.0, 1)));
        check(&ring, TrendMetric::OpsPerSec, 30, Some((20.0, 25.0, 30.0, 2)));
        check(&ring, TrendMetric::OpsPerSec, 89, Some((20.0, 30.0, 40.0, 3)));
        check(&ring, TrendMetric::OpsPerSec, 90, Some((10.0, 25.0, 40.0, 4)));
        check(&ring, TrendMetric::OpsPerSec, 86_400, Some((10.0, 25.0, 40.0, 4)));
        check(&ring, TrendMetric::LatencyP99, 90, Some((0.01, 0.015, 0.02, 2)));
        check(&ring, TrendMetric::LatencyP99, 0, None);
        check(&TrendRing::new(3), TrendMetric::OpsPerSec, 90, None);
    }

    #[test]
    fn the_ring_drops_the_oldest_sample_when_full() {
        let mut ring = TrendRing::new(3);
        for i in 0..5 {
            ring.push(sample(i, i as f64, None));
        }
        assert_eq!(ring.len(), 3);
        let kept: Vec<f64> = ring.samples().map(|s| s.ops_per_sec).collect();
        assert_eq!(kept, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn retention_sizes_the_ring() {
        let cases = [
            (86_400, 30_000, 2_880),
            (86_400, 10_000, 8_640),
            (60, 7_000, 9),
            (60, 0, 60_000),
            // 24 hours every 100 ms (864,000 samples) is cut to the budget.
            (86_400, 100, TREND_MAX_SAMPLES),
            (0, 1_000, 1),
        ];
        for (retention_secs, interval_ms, capacity) in cases {
            let ring = TrendRing::for_retention(
                Duration::from_secs(retention_secs),
                Duration::from_millis(interval_ms),
            );
            assert_eq!(ring.capacity(), capacity, "{retention_secs}s at {interval_ms}ms");
        }
    }

    #[test]
    fn a_one_millisecond_interval_stays_within_the_budget() {
        let ring = TrendRing::for_retention(TREND_RETENTION, Duration::from_millis(1));
        assert!(ring.capacity() <= 100_000, "capacity {}", ring.capacity());
        assert_eq!(ring.capacity(), TREND_MAX_SAMPLES);
        assert_eq!(ring.heap_bytes(), 0, "nothing reserved up front");
        assert_eq!(
            ring.retention(Duration::from_millis(1)),
            Duration::from_millis(TREND_MAX_SAMPLES as u64)
        );
    }

    #[test]
    fn extreme_retentions_and_intervals_are_bounded() {
        for (retention, interval) in [
            (Duration::MAX, Duration::from_millis(1)),
            (Duration::MAX, Duration::ZERO),
            (Duration::MAX, Duration::MAX),
            (Duration::ZERO, Duration::MAX),
            (TREND_RETENTION, Duration::MAX),
            (TREND_RETENTION, Duration::from_nanos(1)),
        ] {
            let ring = TrendRing::for_retention(retention, interval);
            assert!(
                (1..=TREND_MAX_SAMPLES).contains(&ring.capacity()),
                "{retention:?} at {interval:?}: {}",
                ring.capacity()
            );
            let _ = ring.retention(interval);
        }
        assert_eq!(TrendRing::new(usize::MAX).capacity(), TREND_MAX_SAMPLES);
    }

    #[test]
    fn pushing_past_the_budget_keeps_the_bytes_within_it() {
        let mut ring = TrendRing::for_retention(TREND_RETENTION, Duration::from_millis(1));
        let mut peak = 0;
        for i in 0..TREND_MAX_SAMPLES as u64 + 1_000 {
            ring.push(sample(i, i as f64, None));
            peak = peak.max(ring.heap_bytes());
        }
        assert_eq!(ring.len(), TREND_MAX_SAMPLES);
        assert!(
            peak <= TREND_BUDGET_BYTES,
            "{peak} bytes over the {TREND_BUDGET_BYTES} budget"
        );
        let newest = ring.samples().next_back().map(|s| s.ops_per_sec);
        assert_eq!(newest, Some((TREND_MAX_SAMPLES + 999) as f64));
        let oldest = ring.samples().next().map(|s| s.ops_per_sec);
        assert_eq!(oldest, Some(1_000.0), "the oldest were dropped");
    }

    proptest::proptest! {
        #[test]
        fn window_stats_are_ordered_and_count_the_window(values in proptest::collection::vec(0.0f64..1e9, 1..50), window in 0u64..2_000) {
            let mut ring = TrendRing::new(32);
            for (i, v) in values.iter().enumerate() {
                ring.push(sample(i as u64 * 30, *v, None));
            }
            let stats = ring.window(TrendMetric::OpsPerSec, Duration::from_secs(window)).expect("the newest is in every window");
            proptest::prop_assert!(stats.min <= stats.avg + 1e-6 && stats.avg <= stats.max + 1e-6);
            let kept = values.len().min(32);
            let expected = kept.min(window as usize / 30 + 1);
            proptest::prop_assert_eq!(stats.samples, expected);
        }
    }
}
