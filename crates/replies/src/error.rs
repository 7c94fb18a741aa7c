//! The one error of this crate: a reply that is not what its command answers.

/// A reply that could not be read.
///
/// Only `CLUSTER NODES` can fail: an `INFO`-style reply always parses (an unreadable line is skipped and
/// a missing field reads as absent), because every line of it stands alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a `CLUSTER NODES` reply is malformed.
    #[error(
        "unreadable CLUSTER NODES line {line:?}: {detail}; is this really the reply of CLUSTER NODES \
         (a node in cluster mode, Redis 7.0 or later)?"
    )]
    ClusterNodes {
        /// The start of the line (at most 120 characters).
        line: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn cluster_nodes(line: &str, detail: impl Into<String>) -> Error {
        Error::ClusterNodes {
            line: line.chars().take(120).collect(),
            detail: detail.into(),
        }
    }
}
