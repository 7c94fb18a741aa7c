//! The crate's one error type.

use std::time::Duration;

use crate::envelope::EnvelopeProblem;
use crate::version::Version;

/// Why a consistency call failed.
///
/// Expected outcomes are values, not errors: a write that lost to a newer version is
/// `Ok(WriteOutcome::Stale { .. })`, a key that is not there is `Ok(None)`, and an audit returns a
/// report of what it found and what it could not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis call failed; the cluster client's error says which node and what to check.
    #[error("redis call failed: {0}")]
    Client(#[from] cluster_client::Error),
    /// A stored value starts with the envelope's magic bytes but is not a valid envelope.
    #[error(
        "the value of key {key} starts like a versioned envelope but {problem}; \
         overwrite it with a versioned set, or read it with a plain get"
    )]
    Envelope {
        /// The key, printable (non-printable bytes escaped, long keys cut).
        key: String,
        /// What is wrong with it.
        problem: EnvelopeProblem,
    },
    /// The last-write-wins script answered in a shape this crate does not know.
    #[error(
        "unexpected reply from the versioned-write script for key {key}: {detail}; \
         check that the nodes run Redis 7 and that nothing else replaced the script"
    )]
    ScriptReply {
        /// The key, printable.
        key: String,
        /// What was unexpected.
        detail: String,
    },
    /// A plain value to copy starts with the envelope's magic bytes, so it would later be misread.
    #[error(
        "the unversioned value of key {key} starts with the envelope's magic bytes (FF 4C 57 57) and \
         would be misread as versioned; rewrite it through a versioned set instead"
    )]
    AmbiguousPlainValue {
        /// The key, printable.
        key: String,
    },
    /// A journal-based check was asked of a handle that keeps no write journal.
    #[error(
        "this handle keeps no write journal, so it cannot tell which writes a failover lost; \
         build it with ConsistencyConfig::journal(Some(JournalConfig::default()))"
    )]
    NoJournal,
    /// A setting is out of range.
    #[error("invalid consistency setting: {0}")]
    Config(String),
    /// A version lies further ahead of this host's wall clock than `max_clock_drift` allows: stored
    /// by a writer whose clock is wrong, or passed by a caller. Nothing was written and the process
    /// clock did not adopt it, so this process's other writes are unaffected.
    #[error(
        "version {version} of key {key} is {ahead_by:?} ahead of this host's clock, more than \
         max_clock_drift ({max_drift:?}) allows, so nothing was written and the clock did not adopt it; \
         fix the clock of the host that issued that version (or pass a version from next_version()), \
         then remove the key with a plain DEL or rewrite it under a current version"
    )]
    ClockSkew {
        /// The key, printable.
        key: String,
        /// The version refused.
        version: Version,
        /// How far its clock value lies ahead of this host's wall clock.
        ahead_by: Duration,
        /// The configured bound.
        max_drift: Duration,
    },
    /// A duration (a setting or a per-call option) is outside the range this crate accepts: zero
    /// often means "forever" to Redis, and a huge one overflows deadlines.
    #[error("{setting} is {value:?}, outside {min:?}..={max:?}; {hint}")]
    DurationOutOfRange {
        /// The setting or option (for example `WriteOptions::wait timeout`).
        setting: &'static str,
        /// The value given.
        value: Duration,
        /// The smallest accepted value.
        min: Duration,
        /// The largest accepted value.
        max: Duration,
        /// What to set instead.
        hint: &'static str,
    },
    /// Tombstones would expire before the journal forgets the writes they delete, so a failover
    /// repair could bring a deleted key back.
    #[error(
        "tombstone_ttl ({tombstone_ttl:?}) is shorter than journal max_age ({journal_max_age:?}); \
         raise tombstone_ttl or lower journal max_age so that deletes outlive the journal's memory of writes"
    )]
    TombstoneShorterThanJournal {
        /// `ConsistencyConfig::tombstone_ttl`.
        tombstone_ttl: Duration,
        /// `JournalConfig::max_age`.
        journal_max_age: Duration,
    },
}

pub(crate) use cluster_client::printable_key;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &[u8], want: &str) {
        assert_eq!(printable_key(key), want);
    }

    #[test]
    fn keys_print_safely() {
        check(b"user:1", "user:1");
        check(b"bin\xFF\x00", "bin\\xff\\x00");
        check(&[b'k'; 100], &format!("{}… (100 bytes)", "k".repeat(80)));
    }

    #[test]
    fn envelope_errors_say_what_to_do() {
        let error = Error::Envelope {
            key: printable_key(b"k"),
            problem: EnvelopeProblem::Truncated { len: 7 },
        };
        let text = error.to_string();
        assert!(
            text.contains("key k") && text.contains("7 bytes") && text.contains("versioned set"),
            "{text}"
        );
    }
}
