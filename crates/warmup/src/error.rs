//! The crate's one error type.

/// Why a warm-up could not run.
///
/// Per-key outcomes are not errors: a key that failed to write, an unreadable input line, an entry
/// over the size limit or a bad read-back is listed in the [`Report`](crate::Report), and the rest of
/// the warm-up goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid warm-up setting: {0}")]
    Config(String),
    /// The source could not be opened, so nothing was written.
    #[error("cannot open the warm-up source {name}: {message}; check that it exists and is readable")]
    SourceOpen {
        /// The source, e.g. a file path.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The Redis source could not be listed before the warm-up started.
    #[error("cannot read the source deployment: {0}")]
    SourceRedis(cluster_client::Error),
}

pub(crate) use cluster_client::printable_key;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_safely() {
        let check = |key: &[u8], want: &str| assert_eq!(printable_key(key), want);
        check(b"user:1", "user:1");
        check(b"bin\xFF\x00", "bin\\xff\\x00");
        check(&[b'k'; 100], &format!("{}… (100 bytes)", "k".repeat(80)));
    }

    #[test]
    fn messages_say_what_to_do() {
        let error = Error::SourceOpen {
            name: "/tmp/missing.jsonl".into(),
            message: "No such file or directory".into(),
        };
        let text = error.to_string();
        assert!(
            text.contains("/tmp/missing.jsonl") && text.contains("check that it exists"),
            "{text}"
        );
    }
}
