//! How evenly keys spread over shards: counts, coefficient of variation, max/mean, chi-square, verdict.

use crate::{Error, Sharder};

/// Limits a key distribution must stay within to be called balanced.
///
/// Loads are compared *relative to weight*: a shard's load is its key count divided by the count
/// its weight entitles it to, so a shard of weight 2 holding twice the keys of a shard of weight 1
/// is perfectly balanced.
///
/// ```
/// let mut limits = sharding::DistributionThresholds::default();
/// limits.min_chi_square_p_value = Some(0.001); // Also test the hash itself, not only the spread.
/// assert_eq!(limits.max_coefficient_of_variation, 0.10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DistributionThresholds {
    /// Highest coefficient of variation (standard deviation / mean) of the shards' loads. Default 0.10.
    pub max_coefficient_of_variation: f64,
    /// Highest load of the busiest shard relative to the mean load. Default 1.25.
    pub max_over_mean: f64,
    /// Lowest p-value of the chi-square test of the counts against the weights, or `None` not to test.
    /// Default `None`: a ketama ring's shares differ from its weights by design (160 points per node
    /// give each node a few percent more or less), which any large sample detects.
    pub min_chi_square_p_value: Option<f64>,
    /// Fewest keys every weighted shard must expect before a verdict is given (the chi-square test is
    /// not valid below about 5). Default 5.
    pub min_expected_keys_per_shard: f64,
}

impl Default for DistributionThresholds {
    fn default() -> DistributionThresholds {
        DistributionThresholds {
            max_coefficient_of_variation: 0.10,
            max_over_mean: 1.25,
            min_chi_square_p_value: None,
            min_expected_keys_per_shard: 5.0,
        }
    }
}

/// Key counts per shard and what they say about balance.
///
/// Statistics cover the shards with a positive weight; shards of weight 0 are listed but left out
/// (and any key on one is a violation), and keys without an owner are counted apart.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DistributionReport {
    /// Every shard, in shard order.
    pub shards: Vec<ShardLoad>,
    /// All keys counted, including those on zero-weight shards but not unassigned ones.
    pub total_keys: u64,
    /// Keys whose slot had no owner.
    pub unassigned_keys: u64,
    /// Standard deviation of the loads over their mean (0 = perfectly even).
    pub coefficient_of_variation: f64,
    /// The highest load over the mean load (1 = perfectly even).
    pub max_over_mean: f64,
    /// Pearson's chi-square statistic of the counts against the weights.
    pub chi_square: f64,
    /// Degrees of freedom of the test: weighted shards minus 1.
    pub degrees_of_freedom: usize,
    /// Chance of a chi-square at least this large if keys followed the weights exactly (1 = no evidence
    /// of skew, near 0 = skewed).
    pub p_value: f64,
    /// The judgement against the thresholds.
    pub verdict: Verdict,
}

/// One shard's part of a [`DistributionReport`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShardLoad {
    /// The shard's name.
    pub shard: String,
    /// Keys counted on it.
    pub keys: u64,
    /// Its weight (relative share it should get).
    pub weight: f64,
    /// Keys it should hold given its weight.
    pub expected_keys: f64,
}

impl ShardLoad {
    /// Keys held over keys expected (1 = exactly its share); 0 for a shard expecting none.
    pub fn load(&self) -> f64 {
        if self.expected_keys > 0.0 {
            self.keys as f64 / self.expected_keys
        } else {
            0.0
        }
    }
}

/// Whether a distribution is balanced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every threshold holds.
    Balanced,
    /// At least one threshold is crossed.
    Skewed(Vec<Violation>),
    /// The sample is too small to judge; check again with at least `needed` keys.
    TooFewKeys {
        /// Keys counted on weighted shards.
        keys: u64,
        /// Keys needed for every weighted shard to expect the minimum.
        needed: u64,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Balanced`].
    pub fn is_balanced(&self) -> bool {
        matches!(self, Verdict::Balanced)
    }
}

/// A threshold a distribution crossed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// The loads vary more than allowed.
    CoefficientOfVariation {
        /// The measured coefficient of variation.
        value: f64,
        /// The threshold.
        limit: f64,
    },
    /// The busiest shard is busier than allowed.
    MaxOverMean {
        /// The busiest shard.
        shard: String,
        /// Its load over the mean load.
        value: f64,
        /// The threshold.
        limit: f64,
    },
    /// The counts do not follow the weights.
    ChiSquare {
        /// The test's p-value.
        p_value: f64,
        /// The threshold.
        limit: f64,
    },
    /// Keys sit on a shard that should get none.
    KeysOnZeroWeightShard {
        /// The shard.
        shard: String,
        /// How many keys it holds.
        keys: u64,
    },
}

/// Counts where `sharder` puts each key of a sample and judges the spread against `thresholds`.
///
/// Fails only if the sharder has no shard with a positive weight (an empty slot table).
///
/// ```
/// use sharding::{DistributionThresholds, KetamaRing, check_distribution};
///
/// let ring = KetamaRing::new((1..=6).map(|i| (format!("10.0.0.{i}:6379"), 1)))?;
/// let keys: Vec<String> = (0..60_000).map(|i| format!("session:{i}")).collect();
/// let report = check_distribution(&ring, &keys, &DistributionThresholds::default())?;
/// assert!(report.verdict.is_balanced(), "{report:?}");
/// assert!(report.max_over_mean < 1.25);
/// # Ok::<(), sharding::Error>(())
/// ```
pub fn check_distribution<S, K>(
    sharder: &S,
    keys: &[K],
    thresholds: &DistributionThresholds,
) -> Result<DistributionReport, Error>
where
    S: Sharder + ?Sized,
    K: AsRef<[u8]>,
{
    let shard_count = sharder.shard_count();
    let mut counts = vec![0u64; shard_count];
    let mut unassigned = 0u64;
    for key in keys {
        match sharder.shard_of(key.as_ref()) {
            Some(shard) if shard < shard_count => counts[shard] += 1,
            _ => unassigned += 1,
        }
    }
    let shards = counts.into_iter().enumerate().map(|(shard, keys)| {
        let name = sharder.shard_name(shard).unwrap_or_default().to_string();
        (name, keys, sharder.shard_weight(shard))
    });
    report(shards, unassigned, thresholds)
}

impl DistributionReport {
    /// Judges counts taken elsewhere (e.g. `DBSIZE` of each node) as `(shard, keys, weight)`.
    ///
    /// Fails if the list is empty, a weight is negative or not finite, or every weight is 0.
    ///
    /// ```
    /// use sharding::{DistributionReport, DistributionThresholds, Verdict};
    ///
    /// let counts = [("a".to_string(), 1_000, 1.0), ("b".to_string(), 1_020, 1.0), ("c".to_string(), 2_900, 1.0)];
    /// let report = DistributionReport::from_counts(counts, &DistributionThresholds::default())?;
    /// assert!(matches!(report.verdict, Verdict::Skewed(_)));
    /// # Ok::<(), sharding::Error>(())
    /// ```
    pub fn from_counts(
        counts: impl IntoIterator<Item = (String, u64, f64)>,
        thresholds: &DistributionThresholds,
    ) -> Result<DistributionReport, Error> {
        report(counts.into_iter(), 0, thresholds)
    }
}

fn report(
    shards: impl Iterator<Item = (String, u64, f64)>,
    unassigned_keys: u64,
    thresholds: &DistributionThresholds,
) -> Result<DistributionReport, Error> {
    let mut loads = Vec::new();
    for (shard, keys, weight) in shards {
        if !weight.is_finite() || weight < 0.0 {
            return Err(Error::InvalidShardWeight { shard, weight });
        }
        loads.push(ShardLoad {
            shard,
            keys,
            weight,
            expected_keys: 0.0,
        });
    }
    if loads.is_empty() {
        return Err(Error::NoShards);
    }
    let total_weight: f64 = loads.iter().map(|s| s.weight).sum();
    if total_weight <= 0.0 {
        return Err(Error::NoWeight);
    }
    let total_keys: u64 = loads.iter().map(|s| s.keys).sum();
    let weighted_keys: u64 = loads.iter().filter(|s| s.weight > 0.0).map(|s| s.keys).sum();
    for shard in &mut loads {
        shard.expected_keys = weighted_keys as f64 * shard.weight / total_weight;
    }

    let weighted: Vec<&ShardLoad> = loads.iter().filter(|s| s.weight > 0.0).collect();
    let shard_loads: Vec<f64> = weighted.iter().map(|s| s.load()).collect();
    let mean = shard_loads.iter().sum::<f64>() / shard_loads.len() as f64;
    let variance = shard_loads.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / shard_loads.len() as f64;
    let (coefficient_of_variation, max_over_mean, busiest) = if mean > 0.0 {
        let (busiest, max) =
            weighted
                .iter()
                .zip(&shard_loads)
                .fold(("", f64::MIN), |(name, max), (s, &l)| {
                    if l > max {
                        (s.shard.as_str(), l)
                    } else {
                        (name, max)
                    }
                });
        (variance.sqrt() / mean, max / mean, busiest)
    } else {
        (0.0, 0.0, "")
    };
    let chi_square: f64 = weighted
        .iter()
        .filter(|s| s.expected_keys > 0.0)
        .map(|s| (s.keys as f64 - s.expected_keys).powi(2) / s.expected_keys)
        .sum();
    let degrees_of_freedom = weighted.len() - 1;
    let p_value = chi_square_p_value(chi_square, degrees_of_freedom);

    let min_weight = weighted.iter().map(|s| s.weight).fold(f64::INFINITY, f64::min);
    let needed = (thresholds.min_expected_keys_per_shard * total_weight / min_weight).ceil();
    let verdict = if (weighted_keys as f64) < needed {
        Verdict::TooFewKeys {
            keys: weighted_keys,
            needed: needed as u64,
        }
    } else {
        let mut violations = Vec::new();
        for shard in loads.iter().filter(|s| s.weight == 0.0 && s.keys > 0) {
            violations.push(Violation::KeysOnZeroWeightShard {
                shard: shard.shard.clone(),
                keys: shard.keys,
            });
        }
        if coefficient_of_variation > thresholds.max_coefficient_of_variation {
            violations.push(Violation::CoefficientOfVariation {
                value: coefficient_of_variation,
                limit: thresholds.max_coefficient_of_variation,
            });
        }
        if max_over_mean > thresholds.max_over_mean {
            violations.push(Violation::MaxOverMean {
                shard: busiest.to_string(),
                value: max_over_mean,
                limit: thresholds.max_over_mean,
            });
        }
        if let Some(limit) = thresholds.min_chi_square_p_value.filter(|&limit| p_value < limit) {
            violations.push(Violation::ChiSquare { p_value, limit });
        }
        if violations.is_empty() {
            Verdict::Balanced
        } else {
            Verdict::Skewed(violations)
        }
    };

    Ok(DistributionReport {
        shards: loads,
        total_keys,
        unassigned_keys,
        coefficient_of_variation,
        max_over_mean,
        chi_square,
        degrees_of_freedom,
        p_value,
        verdict,
    })
}

/// Upper tail of the chi-square distribution: `Q(df / 2, x / 2)`, the regularized upper incomplete
/// gamma function (series below `a + 1`, continued fraction above, as in Numerical Recipes §6.2).
fn chi_square_p_value(x: f64, degrees_of_freedom: usize) -> f64 {
    if degrees_of_freedom == 0 || x <= 0.0 {
        return 1.0;
    }
    let a = degrees_of_freedom as f64 / 2.0;
    let x = x / 2.0;
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Modified Lentz's method for the continued fraction.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, accurate to about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, &c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KetamaRing, SlotTable};

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn p_values_match_the_chi_square_distribution() {
        // With 2 degrees of freedom the upper tail is exactly exp(-x/2).
        for x in [0.1, 1.0, 2.0, 3.0, 5.0, 10.0, 40.0] {
            assert!(
                close(chi_square_p_value(x, 2), (-x / 2.0).exp(), 1e-12),
                "x = {x}"
            );
        }
        // Printed critical values at the 5% and 1% levels.
        fn check(x: f64, df: usize, p: f64) {
            assert!(
                close(chi_square_p_value(x, df), p, 1e-4),
                "x = {x}, df = {df}: {}",
                chi_square_p_value(x, df)
            );
        }
        check(3.841, 1, 0.05);
        check(6.635, 1, 0.01);
        check(11.070, 5, 0.05);
        check(18.307, 10, 0.05);
        check(124.342, 100, 0.05);
        assert_eq!(chi_square_p_value(0.0, 3), 1.0);
        assert_eq!(chi_square_p_value(5.0, 0), 1.0);
        // ln Γ(n) = ln (n-1)!
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-12));
    }

    fn counts(list: &[(&str, u64, f64)]) -> Vec<(String, u64, f64)> {
        list.iter().map(|(s, k, w)| (s.to_string(), *k, *w)).collect()
    }

    fn check(list: &[(&str, u64, f64)], thresholds: DistributionThresholds, expected: &str) {
        let got = match DistributionReport::from_counts(counts(list), &thresholds) {
            Ok(report) => match report.verdict {
                Verdict::Balanced => "balanced".to_string(),
                Verdict::Skewed(violations) => violations
                    .iter()
                    .map(|v| match v {
                        Violation::CoefficientOfVariation { .. } => "cv".to_string(),
                        Violation::MaxOverMean { shard, .. } => format!("max:{shard}"),
                        Violation::ChiSquare { .. } => "chi".to_string(),
                        Violation::KeysOnZeroWeightShard { shard, .. } => format!("zero:{shard}"),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Verdict::TooFewKeys { needed, .. } => format!("few:{needed}"),
            },
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(got, expected, "{list:?}");
    }

    #[test]
    fn verdicts_follow_thresholds() {
        let default = DistributionThresholds::default();
        let mut strict_chi = default;
        strict_chi.min_chi_square_p_value = Some(0.01);
        check(
            &[("a", 1000, 1.0), ("b", 1010, 1.0), ("c", 990, 1.0)],
            default,
            "balanced",
        );
        check(&[("a", 1000, 1.0), ("b", 2000, 2.0)], default, "balanced");
        check(
            &[("a", 1000, 1.0), ("b", 1000, 1.0), ("c", 1600, 1.0)],
            default,
            "cv,max:c",
        );
        check(
            &[("a", 1000, 1.0), ("b", 1100, 1.0), ("c", 900, 1.0)],
            default,
            "balanced",
        );
        check(
            &[("a", 1000, 1.0), ("b", 1100, 1.0), ("c", 900, 1.0)],
            strict_chi,
            "chi",
        );
        check(&[("a", 1, 1.0), ("b", 2, 1.0)], default, "few:10");
        check(&[("a", 5, 1.0), ("b", 10, 3.0)], default, "few:20");
        check(
            &[("a", 100, 1.0), ("b", 100, 1.0), ("gone", 3, 0.0)],
            default,
            "zero:gone",
        );
        check(
            &[],
            default,
            "error: no shards to check; give at least one shard with its key count and weight",
        );
        check(&[("a", 1, 0.0)], default, &format!("error: {}", Error::NoWeight));
        check(
            &[("a", 1, f64::NAN)],
            default,
            &format!(
                "error: {}",
                Error::InvalidShardWeight {
                    shard: "a".into(),
                    weight: f64::NAN
                }
            ),
        );
        check(
            &[("a", 1, -1.0)],
            default,
            &format!(
                "error: {}",
                Error::InvalidShardWeight {
                    shard: "a".into(),
                    weight: -1.0
                }
            ),
        );
    }

    #[test]
    fn statistics_are_relative_to_weights() {
        let report = DistributionReport::from_counts(
            counts(&[("a", 100, 1.0), ("b", 300, 2.0)]),
            &DistributionThresholds::default(),
        )
        .unwrap();
        // a expects 133.3 and holds 100 (load 0.75); b expects 266.7 and holds 300 (load 1.125).
        assert!(close(report.shards[0].expected_keys, 400.0 / 3.0, 1e-9));
        assert!(close(report.max_over_mean, 1.125 / 0.9375, 1e-9));
        assert!(close(report.coefficient_of_variation, 0.1875 / 0.9375, 1e-9));
        let chi = (100.0f64 - 400.0 / 3.0).powi(2) / (400.0 / 3.0)
            + (300.0f64 - 800.0 / 3.0).powi(2) / (800.0 / 3.0);
        assert!(close(report.chi_square, chi, 1e-9));
        assert_eq!(report.degrees_of_freedom, 1);
    }

    #[test]
    fn sharders_report_unassigned_keys_and_slot_weights() {
        let table = SlotTable::from_ranges([(0..=8191, "a")]).unwrap();
        let keys: Vec<String> = (0..4000).map(|i| format!("k{i}")).collect();
        let report = check_distribution(&table, &keys, &DistributionThresholds::default()).unwrap();
        assert_eq!(report.total_keys + report.unassigned_keys, 4000);
        assert!(
            report.unassigned_keys > 1500 && report.unassigned_keys < 2500,
            "{report:?}"
        );
        assert_eq!(report.shards[0].weight, 8192.0);
        assert_eq!(
            check_distribution(&SlotTable::empty(), &keys, &DistributionThresholds::default()),
            Err(Error::NoShards)
        );

        let ring = KetamaRing::new([("a:1".to_string(), 1), ("b:1".to_string(), 3)]).unwrap();
        let report = check_distribution(&ring, &keys, &DistributionThresholds::default()).unwrap();
        assert_eq!(
            report.shards.iter().map(|s| s.weight).collect::<Vec<_>>(),
            [1.0, 3.0]
        );
    }
}
