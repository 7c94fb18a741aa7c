//! Periodic consistency monitoring: an audit every interval, its last report kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::audit::AuditOptions;
use crate::error::Error;
use crate::report::AuditReport;
use crate::versioned::Versioned;

#[derive(Debug, Default)]
struct Shared {
    latest: Mutex<Option<AuditReport>>,
    runs: AtomicU64,
}

/// A running monitor; dropping it stops the task (an audit in progress is abandoned).
#[derive(Debug)]
pub struct Monitor {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    interval: Duration,
}

impl Monitor {
    /// The report of the last finished audit.
    pub fn latest(&self) -> Option<AuditReport> {
        self.shared
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Audits finished so far.
    pub fn runs(&self) -> u64 {
        self.shared.runs.load(Ordering::Relaxed)
    }

    /// The time between the end of one audit and the start of the next.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Versioned {
    /// Runs [`Versioned::audit`] with `options` now and then `interval` after each audit ends (the
    /// spec's `startConsistencyMonitoring`). Set [`AuditOptions::max_keys`] and
    /// [`AuditOptions::max_keys_per_second`] to keep each run light; in resolve mode every repair
    /// lands in the sync history. Fails if `interval` is zero.
    pub fn spawn_monitor(&self, interval: Duration, options: AuditOptions) -> Result<Monitor, Error> {
        if interval.is_zero() {
            return Err(Error::Config(
                "monitor interval is 0; use at least a few seconds (e.g. 60 s)".into(),
            ));
        }
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let versioned = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match versioned.audit(&options, |_| {}).await {
                    Ok(report) => {
                        if report.counts.bad() > 0 || report.error_count > 0 {
                            tracing::warn!(%report, "consistency audit found problems");
                        } else {
                            tracing::debug!(%report, "consistency audit");
                        }
                        *state.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
                        state.runs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "consistency audit failed"),
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Monitor {
            task,
            shared,
            interval,
        })
    }
}
