//! The metric names this crate records and their descriptions (the product's `rcc_` prefix, then
//! `warmup_`).

use crate::progress::{Phase, Progress};

/// Bytes a warm-up holds to roll back (a gauge).
pub const UNDO_BYTES_METRIC: &str = "rcc_warmup_undo_bytes";
/// Entries of the current (or last) warm-up by state, label `state`: `planned`, `written`, `skipped`,
/// `failed`, `rejected`, `validated` (a gauge, set at every progress report).
pub const ENTRIES_METRIC: &str = "rcc_warmup_entries";
/// Key and value bytes the current (or last) warm-up wrote (a gauge).
pub const WRITTEN_BYTES_METRIC: &str = "rcc_warmup_written_bytes";
/// The phase of the current (or last) warm-up: 1 for the label `phase` it is in, 0 for the others.
pub const PHASE_METRIC: &str = "rcc_warmup_phase";

/// Every metric this crate records: name, kind, description.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        UNDO_BYTES_METRIC,
        "gauge",
        "Bytes a warm-up holds to roll back: previous values, keys and digests, at most its undo budget.",
    ),
    (
        ENTRIES_METRIC,
        "gauge",
        "Entries of the current or last warm-up per state (label state: planned, written, skipped, \
         failed, rejected, validated).",
    ),
    (
        WRITTEN_BYTES_METRIC,
        "gauge",
        "Key and value bytes the current or last warm-up wrote.",
    ),
    (
        PHASE_METRIC,
        "gauge",
        "1 for the phase the current or last warm-up is in (label phase: starting, writing, validating, \
         rolling_back, done), 0 for the others.",
    ),
];

/// The `phase` label of each [`Phase`].
const PHASES: [&str; 5] = ["starting", "writing", "validating", "rolling_back", "done"];

fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Writing(_) => "writing",
        Phase::Validating => "validating",
        Phase::RollingBack => "rolling_back",
        Phase::Done => "done",
    }
}

/// Describes every metric of this crate (unit and help) to the installed `metrics` recorder.
/// Applications that install a recorder call it once; it is idempotent.
pub fn describe_metrics() {
    for &(name, _, help) in METRICS {
        let unit = if name.ends_with("_bytes") {
            metrics::Unit::Bytes
        } else {
            metrics::Unit::Count
        };
        metrics::describe_gauge!(name, unit, help);
    }
}

/// Records a progress report in the installed recorder (nothing when none is installed).
pub(crate) fn record_progress(progress: &Progress) {
    for (state, value) in [
        ("planned", progress.planned),
        ("written", progress.written),
        ("skipped", progress.skipped),
        ("failed", progress.failed),
        ("rejected", progress.rejected),
        ("validated", progress.validated),
    ] {
        metrics::gauge!(ENTRIES_METRIC, "state" => state).set(value as f64);
    }
    metrics::gauge!(WRITTEN_BYTES_METRIC).set(progress.bytes_written as f64);
    let current = phase_label(progress.phase);
    for phase in PHASES {
        metrics::gauge!(PHASE_METRIC, "phase" => phase).set(if phase == current { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_a_listed_label() {
        for phase in [
            Phase::Starting,
            Phase::Writing(crate::Priority::Normal),
            Phase::Validating,
            Phase::RollingBack,
            Phase::Done,
        ] {
            assert!(PHASES.contains(&phase_label(phase)), "{phase:?}");
        }
        assert!(METRICS.iter().all(|(name, _, _)| name.starts_with("rcc_warmup_")));
    }
}
