//! A node's role, however the server words it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's role: a primary serves slots (or is a standalone server) and accepts writes; a replica
/// copies a primary.
///
/// Redis still writes `master` and `slave` in `INFO`, `ROLE` and `CLUSTER NODES`; here they have the
/// names the rest of the workspace uses. Serializes as `"primary"` / `"replica"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves slots (or is a standalone server) and accepts writes.
    #[default]
    Primary,
    /// Replicates a primary.
    Replica,
}

impl Role {
    /// The role a server reports: `master` or `primary`, `slave` or `replica` (the words of `INFO`'s
    /// `role:` field, of `ROLE` and of `CLUSTER NODES` flags). `None` for any other word (`sentinel`).
    ///
    /// ```
    /// use replies::Role;
    /// assert_eq!(Role::from_server("slave"), Some(Role::Replica));
    /// assert_eq!(Role::from_server("master"), Some(Role::Primary));
    /// assert_eq!(Role::from_server("sentinel"), None);
    /// ```
    pub fn from_server(word: &str) -> Option<Role> {
        match word.trim() {
            "master" | "primary" => Some(Role::Primary),
            "slave" | "replica" => Some(Role::Replica),
            _ => None,
        }
    }

    /// `primary` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_words_map_to_roles() {
        for (word, want) in [
            ("master", Some(Role::Primary)),
            ("primary", Some(Role::Primary)),
            ("slave", Some(Role::Replica)),
            (" replica\r", Some(Role::Replica)),
            ("sentinel", None),
            ("", None),
        ] {
            assert_eq!(Role::from_server(word), want, "{word:?}");
        }
        assert_eq!(Role::Replica.to_string(), "replica");
        assert_eq!(Role::default(), Role::Primary);
    }
}
