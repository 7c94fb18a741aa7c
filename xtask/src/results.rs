//! Sections of `docs/RESULTS.md` that belong to one command each, between HTML comment markers, so
//! that a command rewrites its own section and keeps everyone else's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A command's section: its begin and end markers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section {
    pub(crate) begin: &'static str,
    pub(crate) end: &'static str,
}

/// `cargo xtask scale-bench`'s section.
pub(crate) const SCALE_BENCH: Section = Section {
    begin: "<!-- scale-bench: begin -->",
    end: "<!-- scale-bench: end -->",
};

/// `cargo xtask chaos scale-out`'s section.
pub(crate) const SCALE_OUT: Section = Section {
    begin: "<!-- chaos scale-out: begin -->",
    end: "<!-- chaos scale-out: end -->",
};

/// The Sentinel failover drill's section (from `tests/sentinel.rs` of cluster-client), kept by the
/// commands that rewrite the file.
pub(crate) const SENTINEL: Section = Section {
    begin: "<!-- sentinel: begin -->",
    end: "<!-- sentinel: end -->",
};

/// `cargo xtask load`'s comparison with the peers as their users build them (written by hand from a
/// run), kept by the commands that rewrite the file.
pub(crate) const BASELINES: Section = Section {
    begin: "<!-- load baselines: begin -->",
    end: "<!-- load baselines: end -->",
};

/// The TLS load figures (`cargo xtask load --tls`), kept by the commands that rewrite the file.
pub(crate) const TLS: Section = Section {
    begin: "<!-- tls: begin -->",
    end: "<!-- tls: end -->",
};

/// The near cache's load, store and memory figures (written by hand from runs of `xtask load`, the
/// `near_store` bench and the `near_figures` example), kept by the commands that rewrite the file.
pub(crate) const NEAR_FIGURES: Section = Section {
    begin: "<!-- near cache figures: begin -->",
    end: "<!-- near cache figures: end -->",
};

/// `cargo xtask chaos near-cache`'s section.
pub(crate) const NEAR_CACHE: Section = Section {
    begin: "<!-- chaos near-cache: begin -->",
    end: "<!-- chaos near-cache: end -->",
};

impl Section {
    /// `body` between this section's markers, with a final newline.
    pub(crate) fn wrap(self, body: &str) -> String {
        format!("{}\n{}\n{}\n", self.begin, body.trim_end(), self.end)
    }

    /// This section of `text`, markers included, if it has one.
    pub(crate) fn find(self, text: &str) -> Option<&str> {
        let begin = text.find(self.begin)?;
        let end = text[begin..].find(self.end)? + begin + self.end.len();
        Some(&text[begin..end])
    }

    /// `text` with this section replaced by `section` (markers included), or with `section` appended
    /// when `text` has none.
    pub(crate) fn replace(self, text: &str, section: &str) -> String {
        match (text.find(self.begin), text.find(self.end)) {
            (Some(begin), Some(end)) if end > begin => {
                let after = &text[end + self.end.len()..];
                let after = after.strip_prefix('\n').unwrap_or(after);
                format!("{}{section}{after}", &text[..begin])
            }
            _ if text.is_empty() => section.to_string(),
            _ => format!("{}\n\n{section}", text.trim_end()),
        }
    }

    /// Writes `body` as this section of the file at `path` (relative to the workspace root unless
    /// absolute), keeping the rest of the file.
    pub(crate) fn write(self, path: &Path, body: &str) -> Result<PathBuf> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            crate::workspace_root().join(path)
        };
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, self.replace(&old, &self.wrap(body)))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// `text` with every section of `sections` that `old` has carried over (replaced, or appended).
pub(crate) fn keep_sections(text: &str, old: &str, sections: &[Section]) -> String {
    let mut text = text.to_string();
    for section in sections {
        if let Some(kept) = section.find(old) {
            text = section.replace(&text, &format!("{kept}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_appended_and_kept() {
        let s = SCALE_BENCH;
        let new = s.wrap("new");
        assert_eq!(s.replace("", &new), new);
        assert_eq!(s.replace("# R\n", &new), format!("# R\n\n{new}"));
        let old = format!("# R\n\n{}\n## N\n", s.wrap("old"));
        let replaced = s.replace(&old, &new);
        assert_eq!(replaced, format!("# R\n\n{new}\n## N\n"));
        assert_eq!(s.find(&replaced), Some(new.trim_end()));
        assert_eq!(SCALE_OUT.find(&replaced), None);
        let kept = keep_sections("# Fresh\n", &replaced, &[SCALE_OUT, SCALE_BENCH]);
        assert_eq!(kept, format!("# Fresh\n\n{new}"));
    }
}
