//! The crate's one error type.

use crate::envelope::EnvelopeProblem;

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
