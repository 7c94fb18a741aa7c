/// A Lua script, sent by SHA1 (`EVALSHA`) and loaded on a node only when that node answers `NOSCRIPT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    source: String,
    sha: fred::bytes_utils::Str,
}

impl Script {
    /// Wraps Lua source; its SHA1 is computed once, here.
    pub fn new(source: impl Into<String>) -> Script {
        let source = source.into();
        let sha = fred::util::sha1_hash(&source).into();
        Script { source, sha }
    }

    /// The Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The hex SHA1 of the source, as `SCRIPT LOAD` returns it.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// The SHA as fred's shared string (cloned per call without copying).
    pub(crate) fn sha_str(&self) -> fred::bytes_utils::Str {
        self.sha.clone()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha_matches_redis() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this SHA.
        assert_eq!(
            super::Script::new("return 1").sha(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
