//! `docs/alerts.yml` against the crate: every anomaly has a Prometheus rule of the same kind and
//! severity, every metric a rule reads is one the product exports, every selector is scoped by the
//! cache's job, `promtool check rules` accepts the file (when promtool is installed), and the docs
//! name only alerts that exist.

use std::collections::BTreeSet;

use health::{AlertKind, METRICS};
use regex::Regex;
use serde_norway::Value;

const ALERTS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerts.yml");

/// The job of the cache's own scrape in docker/prometheus.yml; every selector of a rule names it.
const JOB_MATCHER: &str = r#"job="redis-cluster-cache""#;

/// Series that come from Prometheus itself, not from this crate.
const PROMETHEUS_SERIES: &[&str] = &["up"];

struct Rule {
    alert: String,
    expr: String,
    severity: String,
    kind: Option<String>,
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(ALERTS_FILE).unwrap_or_else(|e| panic!("reading {ALERTS_FILE}: {e}"));
    let doc: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{ALERTS_FILE} is not YAML: {e}"));
    let groups = doc["groups"].as_sequence().expect("a `groups` list");
    let text_of = |v: &Value, what: &str| {
        v.as_str()
            .unwrap_or_else(|| panic!("{what} is not text: {v:?}"))
            .to_string()
    };
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("each group has `rules`").iter())
        .map(|r| Rule {
            alert: text_of(&r["alert"], "alert"),
            expr: text_of(&r["expr"], "expr"),
            severity: text_of(&r["labels"]["severity"], "labels.severity"),
            kind: r["labels"]["kind"].as_str().map(str::to_string),
        })
        .collect()
}

/// Identifiers in a PromQL expression that name series: label matchers (`{...}`), ranges (`[...]`),
/// grouping labels (`on (...)`, `by (...)`), keywords and function names are left out.
fn series_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (...)` rather than by their `(`.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    const GROUPING: &[&str] = &["on", "ignoring", "by", "without", "group_left", "group_right"];
    // Words and single punctuation characters, with `{...}` and `[...]` dropped.
    let mut tokens: Vec<String> = Vec::new();
    let mut skip_until = None;
    let mut word = String::new();
    for c in expr.chars() {
        if let Some(close) = skip_until {
            if c == close {
                skip_until = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        match c {
            '{' => skip_until = Some('}'),
            '"' => skip_until = Some('"'),
            '[' => skip_until = Some(']'),
            c if c.is_whitespace() => {}
            c => tokens.push(c.to_string()),
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        if GROUPING.contains(&token) && next == Some("(") {
            // Skip the label list.
            while i < tokens.len() && tokens[i] != ")" {
                i += 1;
            }
        } else if token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !KEYWORDS.contains(&token)
            && next != Some("(")
        {
            names.insert(token.to_string());
        }
        i += 1;
    }
    names
}

#[test]
fn every_anomaly_has_a_rule_of_the_same_kind_and_severity() {
    let rules = rules();
    for kind in AlertKind::ALL {
        let matching: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.kind.as_deref() == Some(kind.as_str()))
            .collect();
        let [rule] = matching.as_slice() else {
            panic!(
                "{ALERTS_FILE}: expected one rule with kind {kind}, found {}",
                matching.len()
            )
        };
        assert_eq!(
            rule.severity,
            kind.severity().as_str(),
            "{}: severity",
            rule.alert
        );
    }
    let kinds: BTreeSet<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
    for rule in &rules {
        if let Some(kind) = &rule.kind {
            assert!(
                kinds.contains(kind.as_str()),
                "{}: unknown kind {kind}",
                rule.alert
            );
        }
        assert!(
            ["warning", "critical"].contains(&rule.severity.as_str()),
            "{}: severity {}",
            rule.alert,
            rule.severity
        );
    }
}

/// Every series name the product exports: health's, and cluster-client's (a histogram as its
/// `_bucket`, `_sum` and `_count` series).
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = METRICS
        .iter()
        .map(|(name, _, _)| name.to_string())
        .chain(PROMETHEUS_SERIES.iter().map(|s| s.to_string()))
        .collect();
    for (name, kind, _) in cluster_client::METRICS {
        if *kind == "histogram" {
            names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        } else {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn every_selector_is_scoped_by_the_cache_job_and_uses_the_product_prefix() {
    for rule in rules() {
        for name in series_names(&rule.expr) {
            assert!(
                name.starts_with("rcc_") || PROMETHEUS_SERIES.contains(&name.as_str()),
                "{} reads {name}, which is not one of the product's rcc_ series",
                rule.alert
            );
            let selector = Regex::new(&format!(r"\b{name}\b(\{{[^}}]*\}})?")).expect("a valid pattern");
            for found in selector.captures_iter(&rule.expr) {
                let matchers = found.get(1).map_or("", |m| m.as_str());
                assert!(
                    matchers.contains(JOB_MATCHER),
                    "{}: the selector {:?} is not scoped by {JOB_MATCHER}",
                    rule.alert,
                    &found[0]
                );
            }
        }
    }
}

#[test]
fn promtool_accepts_the_rules_when_it_is_installed() {
    // promtool comes with the Debian package `prometheus` (.ci/run installs it); without it this
    // test checks nothing more than the YAML the other tests parse.
    let Ok(output) = std::process::Command::new("promtool")
        .args(["check", "rules", ALERTS_FILE])
        .output()
    else {
        eprintln!("promtool is not installed (apt-get install prometheus); the rules were not checked by it");
        return;
    };
    assert!(
        output.status.success(),
        "promtool check rules {ALERTS_FILE}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_unit_tests_fire_one_alert_per_fact_when_it_is_installed() {
    // tests/promtool/alerts_test.yml replays the compose stack's defects: redis_exporter's series
    // beside ours, two cache processes exporting one cluster, several signals of one lagging replica.
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/promtool/alerts_test.yml");
    let Ok(output) = std::process::Command::new("promtool")
        .args(["test", "rules", tests])
        .output()
    else {
        eprintln!("promtool is not installed (apt-get install prometheus); the rule unit tests did not run");
        return;
    };
    assert!(
        output.status.success(),
        "promtool test rules {tests}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Markdown files a user reads: the root ones, `docs/`, `docker/` and every crate's README.
fn doc_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("REDIS_CLUSTER_QUICK_START.md")];
    for dir in ["docs", "docker"] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("reading {dir}: {e}"));
        files.extend(
            entries
                .map(|e| e.expect("a directory entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "md")),
        );
    }
    for entry in std::fs::read_dir(root.join("crates")).expect("reading crates/") {
        let readme = entry.expect("a directory entry").path().join("README.md");
        if readme.exists() {
            files.push(readme);
        }
    }
    files
}

#[test]
fn the_docs_name_only_alerts_that_exist() {
    let rule_names: BTreeSet<String> = rules().into_iter().map(|r| r.alert).collect();
    let kinds: BTreeSet<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
    // A Prometheus alert name, or an anomaly kind written next to the word alert.
    let prometheus = Regex::new(r"\bRedisCache[A-Z][A-Za-z]*\b").expect("a valid pattern");
    let kind = Regex::new(r"`([a-z][a-z0-9_]*)` alert|alerts? `([a-z][a-z0-9_]*)`").expect("a valid pattern");
    let mut unknown = Vec::new();
    let mut seen = 0;
    for file in doc_files() {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for found in prometheus.find_iter(&text) {
            seen += 1;
            if !rule_names.contains(found.as_str()) {
                unknown.push(format!("{}: {}", file.display(), found.as_str()));
            }
        }
        for found in kind.captures_iter(&text) {
            seen += 1;
            let name = found.get(1).or(found.get(2)).expect("one group matched").as_str();
            if !kinds.contains(name) {
                unknown.push(format!("{}: `{name}`", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the docs name alerts that exist neither in docs/alerts.yml nor in health::AlertKind: {unknown:#?}"
    );
    assert!(seen > 0, "no alert named in the docs: the scan itself is broken");
    // The scanner itself, on the two mistakes it was written for.
    assert!(kind.is_match("watch the `master_without_replica` alert"));
    assert!(kind.is_match("health alert `key_count_drop`"));
}

#[test]
fn every_series_a_rule_reads_is_exported() {
    let exported = exported();
    let mut read = BTreeSet::new();
    for rule in rules() {
        let names = series_names(&rule.expr);
        assert!(
            !names.is_empty(),
            "{}: no series found in {:?}",
            rule.alert,
            rule.expr
        );
        for name in names {
            assert!(
                exported.contains(name.as_str()),
                "{} reads {name}, which nothing exports: {}",
                rule.alert,
                rule.expr
            );
            read.insert(name);
        }
    }
    // The scanner itself: it must see through functions, matchers, grouping and ranges.
    assert_eq!(
        series_names(r#"sum by (node) (rate(a_total{role="x"}[5m] offset 1m)) > 3 * b and on (node) c == 1"#),
        ["a_total", "b", "c"].into_iter().map(String::from).collect()
    );
    assert!(
        read.contains("rcc_node_cluster_state_ok")
            && read.contains("rcc_slots_covered")
            && read.contains("rcc_client_command_duration_seconds_bucket"),
        "{read:?}"
    );
}
