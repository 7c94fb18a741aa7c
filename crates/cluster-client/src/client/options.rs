//! Per-call and per-`SET` options: the deadline, waiting for a failover, where reads go, and a `SET`'s
//! time to live and condition.

use std::time::Duration;

#[cfg(doc)]
use crate::{ClusterClient, Error};

/// Where a read may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Always the primary.
    Primary,
    /// A replica whose lag is under the configured bound, unless this client wrote the key within that
    /// window (read-your-writes); otherwise the primary.
    Replica,
}

/// Per-call options; set them with [`ClusterClient::with_options`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The call's deadline, redirects and retries included (default: the configured command timeout).
    /// From [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); a call with a
    /// timeout outside fails with [`Error::InvalidDuration`] before anything is sent.
    pub timeout: Option<Duration>,
    /// When the key's shard has no reachable primary, wait (up to the deadline) for a promotion instead
    /// of failing fast.
    pub wait_for_failover: bool,
    /// Where reads go (default: the configured replica-read mode).
    pub read_from: Option<ReadFrom>,
}

impl CallOptions {
    /// Options with a deadline.
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
            ..CallOptions::default()
        }
    }

    /// Sets whether to wait for a failover to finish.
    pub fn wait_for_failover(mut self, wait: bool) -> CallOptions {
        self.wait_for_failover = wait;
        self
    }

    /// Sets where reads go.
    pub fn read_from(mut self, read_from: ReadFrom) -> CallOptions {
        self.read_from = Some(read_from);
        self
    }
}

/// The condition of a `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// Options of [`ClusterClient::set`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Time to live (millisecond precision, at least 1 ms: shorter ones round up); `None` keeps the
    /// key until deleted or evicted. Above [`MAX_TTL`](crate::MAX_TTL) the set fails with
    /// [`Error::InvalidDuration`].
    pub ttl: Option<Duration>,
    /// Write only if the key is absent / present.
    pub condition: Option<SetCondition>,
}

impl SetOptions {
    /// A set with a time to live.
    pub fn ttl(ttl: Duration) -> SetOptions {
        SetOptions {
            ttl: Some(ttl),
            condition: None,
        }
    }

    /// Adds a condition.
    pub fn condition(mut self, condition: SetCondition) -> SetOptions {
        self.condition = Some(condition);
        self
    }
}
