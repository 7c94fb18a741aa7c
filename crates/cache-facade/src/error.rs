/// Why a cache call failed. Misses, stale writes and loader results are values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster client failed (node down, timeout, over-limit key or value, ...).
    #[error(transparent)]
    Client(#[from] cluster_client::Error),
    /// A versioned read or write failed. Every consistency error, including variants added later
    /// (the enum is non-exhaustive), passes through unchanged with its own message.
    #[error(transparent)]
    Consistency(#[from] consistency::Error),
    /// A warm-up could not run.
    #[cfg(feature = "warmup")]
    #[error(transparent)]
    Warmup(#[from] warmup::Error),
    /// Health collection could not start.
    #[cfg(feature = "health")]
    #[error(transparent)]
    Health(#[from] health::Error),
    /// The near cache could not be built (tracking already enabled on this client).
    #[error(transparent)]
    Near(#[from] near_cache::Error),
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] cluster_config::Error),
    /// The value could not be encoded with the configured codec.
    #[error("could not encode the value for key {key:?} as {codec}: {detail}")]
    Encode {
        /// The key, printable (binary bytes escaped, long keys cut).
        key: String,
        /// The codec.
        codec: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The stored bytes are not a value of the requested type; the key was left as it is.
    #[error(
        "the value under key {key:?} is not a {wanted} ({detail}); it was left untouched — delete it or read it \
         with the type it was written with"
    )]
    Decode {
        /// The key, printable (binary bytes escaped, long keys cut).
        key: String,
        /// The Rust type asked for.
        wanted: &'static str,
        /// What did not match.
        detail: String,
    },
    /// The loader of `get_or_load` failed; nothing was cached.
    #[error("the loader for key {key:?} failed: {source}")]
    Loader {
        /// The key, printable (binary bytes escaped, long keys cut).
        key: String,
        /// The loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process holds the key's load lease and it was neither filled nor free to take over
    /// before the wait (twice [`crate::CacheConfig::lease`]) ran out.
    #[error(
        "waited {waited:?} for another process to load key {key:?}, but its lease was neither filled nor \
         expired in time; check that process, or raise CacheConfig::lease above its loader's time"
    )]
    LeaseWait {
        /// The key, printable (binary bytes escaped, long keys cut).
        key: String,
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The facade's settings are out of range.
    #[error("invalid cache setting: {0}")]
    Settings(String),
}

impl Error {
    /// Whether Redis could not be reached (so a fail-safe loader may answer instead).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Client(e) => e.is_transient(),
            Error::Consistency(consistency::Error::Client(e)) => e.is_transient(),
            _ => false,
        }
    }
}
