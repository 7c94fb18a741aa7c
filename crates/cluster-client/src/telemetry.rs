//! The metric names this crate records, their descriptions, and the histogram buckets of its latency.
//!
//! Every series of the product starts with `rcc_` (Redis cluster cache), so that it never collides
//! with redis_exporter's `redis_*` series when both are scraped by one Prometheus. The client's own
//! series start with `rcc_client_` and carry a `node` label holding the node's `host:port`.

/// Duration of single-key calls per node (a histogram, label `node`).
pub const COMMAND_DURATION_METRIC: &str = "rcc_client_command_duration_seconds";
/// Commands completed per node, a batch counting once (label `node`).
pub const COMMANDS_METRIC: &str = "rcc_client_commands_total";
/// Calls that failed on the connection per node (label `node`).
pub const ERRORS_METRIC: &str = "rcc_client_errors_total";
/// `MOVED` and `ASK` redirects received per node (label `node`).
pub const REDIRECTS_METRIC: &str = "rcc_client_redirects_total";
/// Memory of the read-your-writes key set of replica reads.
pub const RECENT_WRITES_BYTES_METRIC: &str = "rcc_client_recent_writes_bytes";

/// Every metric this crate records: name, kind (`counter`, `gauge` or `histogram`), description.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        COMMAND_DURATION_METRIC,
        "histogram",
        "Duration of single-key calls per node (label node); batches and node-addressed commands are \
         counted in rcc_client_commands_total but not timed.",
    ),
    (
        COMMANDS_METRIC,
        "counter",
        "Commands completed per node, successfully or with a server error; a batch counts once.",
    ),
    (
        ERRORS_METRIC,
        "counter",
        "Calls that failed on the connection (timeouts, resets) per node.",
    ),
    (
        REDIRECTS_METRIC,
        "counter",
        "MOVED and ASK redirects received per node.",
    ),
    (
        RECENT_WRITES_BYTES_METRIC,
        "gauge",
        "Memory of the read-your-writes key set of replica reads (budget about 6.4 MB).",
    ),
];

/// Upper bounds, in seconds, of the buckets an exporter should give the `_duration_seconds`
/// histograms: from 100 µs (a loopback call) to 10 s (a call near the longest timeout), about three
/// per decade, so that `histogram_quantile` over them is within a factor of about 2 at every scale.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Describes every metric this crate records (unit and help) to the installed `metrics` recorder.
/// Applications that install a recorder call it once; it is idempotent.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for &(name, kind, help) in METRICS {
        let unit = unit_of(name);
        match kind {
            "histogram" => describe_histogram!(name, unit, help),
            "counter" => describe_counter!(name, unit, help),
            _ => describe_gauge!(name, unit, help),
        }
    }
}

/// The unit a metric's name says it has (`_seconds`, `_bytes`, else a count).
fn unit_of(name: &str) -> metrics::Unit {
    if name.ends_with("_seconds") {
        metrics::Unit::Seconds
    } else if name.ends_with("_bytes") {
        metrics::Unit::Bytes
    } else {
        metrics::Unit::Count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_product_prefix_and_kinds_match_suffixes() {
        for &(name, kind, help) in METRICS {
            assert!(name.starts_with("rcc_client_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help text");
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        }
    }

    #[test]
    fn buckets_rise() {
        assert!(DURATION_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }
}
