//! `docs/alerts.yml` against the crate: every anomaly has a Prometheus rule of the same kind and
//! severity, and every metric a rule reads is one this crate exports.

use std::collections::BTreeSet;

use health::{AlertKind, METRICS};
use serde_norway::Value;

const ALERTS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerts.yml");

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

#[test]
fn every_series_a_rule_reads_is_exported() {
    let exported: BTreeSet<&str> = METRICS
        .iter()
        .map(|(name, _, _)| *name)
        .chain(PROMETHEUS_SERIES.iter().copied())
        .collect();
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
        read.contains("redis_cluster_state") && read.contains("redis_cache_slots_covered"),
        "{read:?}"
    );
}
