//! What a warm-up writes: entries of key, value (or `DUMP` payload), TTL and priority.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

/// How urgently an entry should be in the cache. Every entry of a higher priority is written before
/// the first entry of a lower one (the spec's `preloadCriticalData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Written last.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Written after the critical entries.
    High,
    /// Written first.
    Critical,
}

impl Priority {
    /// The priority's name, as JSON-lines files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is stored under an entry's key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// A string value, written with `SET` (or a versioned set when the warm-up writes through
    /// `consistency`).
    Bytes(Bytes),
    /// A `DUMP` serialization of a value of any type (string, hash, list, set, sorted set, stream),
    /// written with `RESTORE … REPLACE` as it is, never wrapped in a versioned envelope.
    Dump(Bytes),
}

impl Payload {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) | Payload::Dump(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One key to warm: its payload, time to live and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The key.
    pub key: Bytes,
    /// The value, or a `DUMP` payload.
    pub payload: Payload,
    /// Time to live (millisecond precision); `None` keeps the key until it is deleted or evicted.
    pub ttl: Option<Duration>,
    /// Write order: higher priorities first.
    pub priority: Priority,
}

impl Entry {
    /// A string entry with no TTL and [`Priority::Normal`].
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            payload: Payload::Bytes(value.into()),
            ttl: None,
            priority: Priority::Normal,
        }
    }

    /// An entry holding a `DUMP` payload (any data type), restored with `RESTORE … REPLACE`.
    pub fn from_dump(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            payload: Payload::Dump(payload.into()),
            ttl: None,
            priority: Priority::Normal,
        }
    }

    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Entry {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Entry {
        self.priority = priority;
        self
    }

    /// Key and payload bytes: what the entry costs on the wire, roughly.
    pub fn size(&self) -> usize {
        self.key.len() + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_critical_first() {
        let mut all = vec![
            Priority::Normal,
            Priority::Critical,
            Priority::Low,
            Priority::High,
        ];
        all.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            all,
            [
                Priority::Critical,
                Priority::High,
                Priority::Normal,
                Priority::Low
            ]
        );
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn entries_build_and_measure() {
        let check = |entry: Entry, size: usize, ttl: Option<Duration>, priority: Priority| {
            assert_eq!(
                (entry.size(), entry.ttl, entry.priority),
                (size, ttl, priority),
                "{entry:?}"
            );
        };
        check(Entry::new("k", "value"), 6, None, Priority::Normal);
        check(
            Entry::new("key", "")
                .ttl(Duration::from_secs(5))
                .priority(Priority::Critical),
            3,
            Some(Duration::from_secs(5)),
            Priority::Critical,
        );
        check(Entry::from_dump("k", vec![0u8; 10]), 11, None, Priority::Normal);
    }
}
