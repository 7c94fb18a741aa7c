//! Figures of a drill, the per-drill table printed to the terminal, and the markdown of `RESULTS.md`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One measured figure, for our client and for the two peers (fred's and redis-rs's cluster clients),
/// with a target for ours. A peer's value is `-` where the figure is ours only or the peer did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Figure {
    pub(super) name: String,
    pub(super) ours: String,
    pub(super) fred: String,
    pub(super) redis_rs: String,
    /// What ours must reach; empty for figures shown for information.
    pub(super) target: String,
    /// `None` for information, else whether ours reached the target.
    pub(super) pass: Option<bool>,
}

impl Figure {
    /// A figure shown for information, without a target.
    pub(super) fn info(
        name: &str,
        ours: impl ToString,
        fred: impl ToString,
        redis_rs: impl ToString,
    ) -> Figure {
        Figure {
            name: name.to_string(),
            ours: ours.to_string(),
            fred: fred.to_string(),
            redis_rs: redis_rs.to_string(),
            target: String::new(),
            pass: None,
        }
    }

    /// A figure whose value for our client is checked against `target`.
    pub(super) fn target(
        name: &str,
        ours: impl ToString,
        fred: impl ToString,
        redis_rs: impl ToString,
        target: &str,
        pass: bool,
    ) -> Figure {
        Figure {
            name: name.to_string(),
            ours: ours.to_string(),
            fred: fred.to_string(),
            redis_rs: redis_rs.to_string(),
            target: target.to_string(),
            pass: Some(pass),
        }
    }
}

/// What one drill measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DrillReport {
    /// The drill's command-line name.
    pub(super) drill: String,
    pub(super) figures: Vec<Figure>,
    /// Error kinds, caveats and other remarks printed under the table.
    pub(super) notes: Vec<String>,
}

impl DrillReport {
    pub(super) fn new(drill: &str) -> DrillReport {
        DrillReport {
            drill: drill.to_string(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A report for a drill that could not finish: one failed target that says why.
    pub(super) fn aborted(drill: &str, error: &anyhow::Error) -> DrillReport {
        let mut report = DrillReport::new(drill);
        report.figures.push(Figure::target(
            "drill completed",
            format!("no: {error:#}"),
            "-",
            "-",
            "completes",
            false,
        ));
        report
    }

    /// Targets missed.
    pub(super) fn missed(&self) -> usize {
        self.figures.iter().filter(|f| f.pass == Some(false)).count()
    }

    /// Whether redis-rs has a value in any figure (the safety run, for one, has no redis-rs load).
    fn has_redis_rs(&self) -> bool {
        self.figures.iter().any(|f| f.redis_rs != "-")
    }

    /// The table for the terminal.
    pub(super) fn render(&self) -> String {
        let with_redis_rs = self.has_redis_rs();
        let columns = |name: &str, ours: &str, fred: &str, redis_rs: &str, target: &str, pass: &str| {
            let mut cells = vec![name.to_string(), ours.to_string(), fred.to_string()];
            if with_redis_rs {
                cells.push(redis_rs.to_string());
            }
            cells.extend([target.to_string(), pass.to_string()]);
            cells
        };
        let headers = columns("figure", "ours", "fred", "redis-rs", "target", "");
        let rows: Vec<Vec<String>> = self
            .figures
            .iter()
            .map(|f| columns(&f.name, &f.ours, &f.fred, &f.redis_rs, &f.target, verdict(f.pass)))
            .collect();
        // The last two columns (target, verdict) are text.
        let text_from = headers.len() - 2;
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = width.saturating_sub(cell.chars().count());
                // Text columns align left, figures right.
                if i == 0 || i >= text_from {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
                out.push_str("  ");
            }
            out.trim_end().to_string()
        };
        let mut out = format!("\n== chaos {} ==\n", self.drill);
        out.push_str(&line(&headers));
        out.push('\n');
        for row in &rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        let _ = writeln!(
            out,
            "{}",
            match self.missed() {
                0 => "PASS: every target reached".to_string(),
                n => format!("FAIL: {n} target(s) missed"),
            }
        );
        out
    }
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "",
    }
}

/// Joins the figures of several runs of one drill into one list: each value becomes `a / b / c` (a text
/// without figures that every run shares, such as "(same cluster)", appears once), and a target passes
/// only if it passed in every run. Runs must list the same figures in the same order (a run that
/// stopped early contributes what it has).
pub(super) fn merge_runs(runs: &[Vec<Figure>]) -> Vec<Figure> {
    let Some(longest) = runs.iter().map(Vec::len).max() else {
        return Vec::new();
    };
    (0..longest)
        .map(|i| {
            let present: Vec<&Figure> = runs.iter().filter_map(|run| run.get(i)).collect();
            let first = present[0];
            let join = |value: fn(&Figure) -> &str| {
                let values: Vec<&str> = present.iter().map(|f| value(f)).collect();
                let same = values.iter().all(|v| *v == values[0]);
                if same && !values[0].chars().any(|c| c.is_ascii_digit()) {
                    values[0].to_string()
                } else {
                    values.join(" / ")
                }
            };
            Figure {
                name: first.name.clone(),
                ours: join(|f| &f.ours),
                fred: join(|f| &f.fred),
                redis_rs: join(|f| &f.redis_rs),
                target: first.target.clone(),
                pass: present
                    .iter()
                    .map(|f| f.pass)
                    .reduce(|a, b| match (a, b) {
                        (Some(a), Some(b)) => Some(a && b),
                        (a, b) => a.or(b),
                    })
                    .flatten(),
            }
        })
        .collect()
}

/// The text of `docs/RESULTS.md`.
pub(super) fn markdown(reports: &[DrillReport], command: &str, date: &str, machine: &str) -> String {
    let missed: usize = reports.iter().map(DrillReport::missed).sum();
    let mut out = String::from("# Chaos drill results\n\n");
    let _ = writeln!(out, "Produced by `{command}` on {date}, {machine}.\n");
    out.push_str(
        "Each drill starts its own local 3 primaries + 3 replicas cluster (`cluster-node-timeout` 2000 ms, \
         command timeout 1 s) and runs three loads side by side, the same traffic on keys of their own \
         during the same faults: **ours** goes through `cache_facade::Cache` (cluster-client underneath), \
         **fred** through fred's own cluster client built from the same `ClusterConfig`, **redis-rs** \
         through the `redis` crate's async cluster client built as its users build it for a cache with \
         failover in mind: `redis::cluster::ClusterClient::builder(nodes)` with its documented \
         `response_timeout` and `connection_timeout` set to the command timeout (1 s; without a response \
         timeout redis-rs waits for a reply for ever), every other setting at its default (16 retries, \
         reads from primaries), one connection shared by every task. Targets apply to ours only; fred's \
         and redis-rs's figures are baselines measured in the same run, and `-` marks a figure that is \
         ours only. Values of repeated runs are separated by ` / `.\n\n",
    );
    let _ = writeln!(
        out,
        "Overall: **{}**.\n",
        match missed {
            0 => "every target reached".to_string(),
            n => format!("{n} target(s) missed"),
        }
    );
    out.push_str(
        "| drill | figure | ours | fred | redis-rs | target | pass |\n|---|---|---|---|---|---|---|\n",
    );
    for report in reports {
        for f in &report.figures {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&report.drill),
                cell(&f.name),
                cell(&f.ours),
                cell(&f.fred),
                cell(&f.redis_rs),
                cell(&f.target),
                verdict(f.pass)
            );
        }
    }
    let noted: Vec<&DrillReport> = reports.iter().filter(|r| !r.notes.is_empty()).collect();
    if !noted.is_empty() {
        out.push_str("\n## Notes\n");
        for report in noted {
            let _ = writeln!(out, "\n### {}\n", report.drill);
            for note in &report.notes {
                let _ = writeln!(out, "- {}", note.replace('\n', " "));
            }
        }
    }
    out
}

/// A table cell: pipes escaped, line breaks flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(super) fn utc_date(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let minute_of_day = (seconds % 86_400) / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check_date(seconds: u64, want: &str) {
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(seconds)),
            want,
            "{seconds}"
        );
    }

    #[test]
    fn dates_match_the_calendar() {
        check_date(0, "1970-01-01 00:00 UTC");
        check_date(951_782_400, "2000-02-29 00:00 UTC");
        check_date(1_709_210_096, "2024-02-29 12:34 UTC");
        check_date(1_735_689_599, "2024-12-31 23:59 UTC");
        check_date(4_102_444_800, "2100-01-01 00:00 UTC");
    }

    fn figure(ours: &str, pass: Option<bool>) -> Figure {
        Figure {
            name: "f".into(),
            ours: ours.into(),
            fred: "-".into(),
            redis_rs: "-".into(),
            target: "t".into(),
            pass,
        }
    }

    fn check_merge(runs: &[Vec<Figure>], want_ours: &str, want_fred: &str, want_pass: Option<bool>) {
        let merged = merge_runs(runs);
        assert_eq!(merged.len(), 1, "{runs:?}");
        assert_eq!(
            (merged[0].ours.as_str(), merged[0].fred.as_str(), merged[0].pass),
            (want_ours, want_fred, want_pass),
            "{runs:?}"
        );
    }

    #[test]
    fn runs_merge_values_and_verdicts() {
        check_merge(
            &[vec![figure("1", Some(true))], vec![figure("2", Some(true))]],
            "1 / 2",
            "-",
            Some(true),
        );
        check_merge(
            &[vec![figure("1", Some(true))], vec![figure("9", Some(false))]],
            "1 / 9",
            "-",
            Some(false),
        );
        check_merge(
            &[vec![figure("a", None)], vec![figure("b", None)]],
            "a / b",
            "-",
            None,
        );
        check_merge(&[vec![figure("a", None)]], "a", "-", None);
        check_merge(
            &[vec![figure("a", None)], vec![figure("a", None)]],
            "a",
            "-",
            None,
        );
        check_merge(
            &[vec![figure("0", None)], vec![figure("0", None)]],
            "0 / 0",
            "-",
            None,
        );
        assert!(merge_runs(&[]).is_empty());
    }

    #[test]
    fn markdown_escapes_cells_and_counts_misses() {
        let mut report = DrillReport::new("kill-master");
        report
            .figures
            .push(Figure::target("failed | healthy", "3", "1829", "40", "0", false));
        report.figures.push(Figure::info("ops", "10", "9", "8"));
        report.notes.push("ours errors: 3× timeout".into());
        let text = markdown(
            &[report.clone()],
            "cargo xtask chaos all",
            "2024-01-02 03:04 UTC",
            "2 CPUs",
        );
        assert!(
            text.contains("| kill-master | failed \\| healthy | 3 | 1829 | 40 | 0 | FAIL |"),
            "{text}"
        );
        assert!(
            text.contains("| kill-master | ops | 10 | 9 | 8 |  |  |"),
            "{text}"
        );
        assert!(text.contains("1 target(s) missed"), "{text}");
        assert!(
            text.contains("`cargo xtask chaos all` on 2024-01-02 03:04 UTC"),
            "{text}"
        );
        assert!(text.contains("- ours errors: 3× timeout"), "{text}");
        assert_eq!(report.missed(), 1);
        let table = report.render();
        assert!(table.contains("FAIL: 1 target(s) missed"), "{table}");
        assert!(table.contains("redis-rs"), "{table}");
        let two_peers = DrillReport {
            figures: vec![Figure::info("ops", "10", "9", "-")],
            ..report
        };
        assert!(
            !two_peers.render().contains("redis-rs"),
            "a column of dashes only is left out"
        );
    }
}
