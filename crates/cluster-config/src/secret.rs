//! The password type: a string that never prints itself.

use std::fmt;

/// What a redacted secret is replaced with in Debug, Display, serialization and errors.
pub(crate) const REDACTED: &str = "[redacted]";

/// A password for Redis `AUTH`.
///
/// `Debug`, `Display` and `Serialize` print `[redacted]`; the only way to the text is
/// [`Password::expose`], which a client sending `AUTH` and an explicit
/// [`SecretExport::Reveal`] rendering call.
///
/// ```
/// use cluster_config::Password;
///
/// let password = Password::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "[redacted] [redacted]");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for code that must send it (a client's `AUTH`) or write it out
    /// deliberately.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Whether a rendering of a [`ClusterConfig`](crate::ClusterConfig) writes the password or
/// `[redacted]`.
///
/// A rendering made with `Redact` is safe to log; loading it back is refused with a message saying
/// the password is the redaction placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretExport {
    /// Write `[redacted]` in place of the password.
    Redact,
    /// Write the password itself, for a file or environment that must authenticate.
    Reveal,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) {
        let secret = Password::new(password);
        for shown in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{:?}", Some(&secret)),
        ] {
            assert!(!shown.contains(password), "{shown} shows the password");
            assert!(shown.contains(REDACTED), "{shown} does not say it is redacted");
        }
        assert_eq!(secret.expose(), password);
    }

    #[test]
    fn never_prints_itself() {
        check("canary-3f9c1e");
        check("with \"quotes\" and \\ backslashes");
        check("ünïcødé ✓");
    }
}
