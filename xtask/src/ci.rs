//! `cargo xtask ci`: everything CI checks, as one local command.
//!
//! The steps: `cargo fmt --check`; clippy on every target with warnings denied (which includes clippy's
//! `incompatible_msrv` lint: it reads each crate's `rust-version` and flags any use of a std API newer
//! than that); the doc build with rustdoc warnings denied; the feature combinations that matter (for
//! every workspace crate that declares features, found through `cargo metadata` so a crate that gains
//! features later is covered without editing this file: clippy with `--no-default-features` and with
//! `--all-features`); a build on the MSRV toolchain when one matching `rust-version` is installed; and
//! the workspace tests (unless `--no-tests`). Every step runs even when an earlier one failed, so one
//! run reports every problem; a table of steps and wall times comes last, and the command exits
//! non-zero if any step failed.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Options of `cargo xtask ci`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CiArgs {
    /// Skip `cargo test --workspace`, for a CI job that runs the tests on its own (`cargo xtask test`).
    #[arg(long)]
    no_tests: bool,
}

/// One command of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// What the table calls it.
    name: String,
    /// Arguments of `cargo`, starting with `+toolchain` for a toolchain other than the current one.
    args: Vec<String>,
    /// `RUSTDOCFLAGS` for the doc build; `None` leaves the caller's environment alone.
    rustdocflags: Option<&'static str>,
}

impl Step {
    fn new(name: impl Into<String>, args: &[&str]) -> Self {
        Self {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            rustdocflags: None,
        }
    }
}

/// How a step ended.
#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    /// Not run, and why; not a failure.
    Skipped(String),
}

/// The part of `cargo metadata --no-deps` this command reads: the workspace's packages.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    /// Feature name to what it enables; an optional dependency shows up as a feature of its own.
    #[serde(default)]
    features: std::collections::BTreeMap<String, Vec<String>>,
    rust_version: Option<String>,
}

pub(crate) fn ci(args: &CiArgs) -> Result<()> {
    let metadata = metadata()?;
    let steps = vec![
        Step::new("fmt", &["fmt", "--all", "--", "--check"]),
        Step::new(
            "clippy (incl. incompatible_msrv)",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
                "-D",
                "clippy::incompatible_msrv",
            ],
        ),
        Step {
            rustdocflags: Some("-D warnings"),
            ..Step::new("doc", &["doc", "--workspace", "--no-deps"])
        },
    ];
    let features = feature_steps(&metadata);
    // Steps in the order they run; a step that cannot run here is reported in its place, not failed.
    let mut plan: Vec<(String, Result<Step, Outcome>)> =
        steps.into_iter().map(|s| (s.name.clone(), Ok(s))).collect();
    if features.is_empty() {
        plan.push((
            "features".into(),
            Err(Outcome::Skipped("no workspace crate declares features".into())),
        ));
    }
    plan.extend(features.into_iter().map(|s| (s.name.clone(), Ok(s))));
    plan.push(match msrv_step(&metadata) {
        Ok(step) => (step.name.clone(), Ok(step)),
        Err(outcome) => ("msrv".into(), Err(outcome)),
    });
    let mut results: Vec<(String, Outcome, Duration)> = Vec::new();
    for (name, step) in plan {
        let started = Instant::now();
        let outcome = match step {
            Ok(step) => run(&step),
            Err(outcome) => outcome,
        };
        results.push((name, outcome, started.elapsed()));
    }
    if args.no_tests {
        results.push((
            "test".into(),
            Outcome::Skipped("--no-tests".into()),
            Duration::ZERO,
        ));
    } else {
        let started = Instant::now();
        let outcome = match crate::prerequisites::ensure_all() {
            Ok(()) => run(&Step::new("test", &["test", "--workspace"])),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        results.push(("test".into(), outcome, started.elapsed()));
    }
    print_table(&results);
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, outcome, _)| matches!(outcome, Outcome::Failed(_)))
        .map(|(name, _, _)| name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} ci steps failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The workspace's packages, from `cargo metadata`.
fn metadata() -> Result<Metadata> {
    let output = Command::new(crate::cargo_binary())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(crate::workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading the output of cargo metadata")
}

/// Clippy with no default features and with all features, for every crate that declares a feature
/// (an empty `default` alone is not one: both builds would be the default build).
fn feature_steps(metadata: &Metadata) -> Vec<Step> {
    let mut steps = Vec::new();
    for package in &metadata.packages {
        if !package.features.keys().any(|f| f != "default") {
            continue;
        }
        for (label, flag) in [
            ("no default features", "--no-default-features"),
            ("all features", "--all-features"),
        ] {
            steps.push(Step::new(
                format!("features: {} ({label})", package.name),
                &[
                    "clippy",
                    "--package",
                    &package.name,
                    "--all-targets",
                    flag,
                    "--",
                    "-D",
                    "warnings",
                ],
            ));
        }
    }
    steps
}

/// A check of the workspace on the toolchain its `rust-version` names, when rustup has one installed;
/// otherwise why not (only the stable toolchain may be present: then the clippy step's
/// `incompatible_msrv` lint is the MSRV check).
fn msrv_step(metadata: &Metadata) -> Result<Step, Outcome> {
    let undeclared: Vec<&str> = metadata
        .packages
        .iter()
        .filter(|p| p.rust_version.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if !undeclared.is_empty() {
        return Err(Outcome::Failed(format!(
            "{} declare no rust-version, so the incompatible_msrv lint checks nothing for them; add \
             `rust-version.workspace = true`",
            undeclared.join(", ")
        )));
    }
    let versions: BTreeSet<&str> = metadata
        .packages
        .iter()
        .filter_map(|p| p.rust_version.as_deref())
        .collect();
    let [version] = versions.into_iter().collect::<Vec<_>>()[..] else {
        return Err(Outcome::Skipped(
            "the crates declare different rust-versions; only the incompatible_msrv lint checks them".into(),
        ));
    };
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    match matching_toolchain(&toolchains, version) {
        Some(toolchain) => Ok(Step::new(
            format!("msrv {version}: cargo check"),
            &[&format!("+{toolchain}"), "check", "--workspace", "--all-targets"],
        )),
        None => Err(Outcome::Skipped(format!(
            "no {version} toolchain installed; checked by clippy's incompatible_msrv lint only"
        ))),
    }
}

/// The installed toolchain (a line of `rustup toolchain list`) for `rust_version` (`1.89` or
/// `1.89.0`): `1.89.0-x86_64-unknown-linux-gnu` matches `1.89`, `1.890...` does not.
fn matching_toolchain(list: &str, rust_version: &str) -> Option<String> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .find(|name| {
            name.strip_prefix(rust_version)
                .is_some_and(|rest| rest.starts_with(['-', '.']) || rest.is_empty())
        })
        .map(str::to_owned)
}

fn run(step: &Step) -> Outcome {
    println!("\n$ cargo {}", step.args.join(" "));
    // `cargo +toolchain` is understood by rustup's cargo proxy only, not by the cargo running us.
    let program = if step.args.first().is_some_and(|a| a.starts_with('+')) {
        "cargo".to_owned()
    } else {
        crate::cargo_binary()
    };
    let mut command = Command::new(program);
    command.args(&step.args).current_dir(crate::workspace_root());
    if let Some(flags) = step.rustdocflags {
        command.env("RUSTDOCFLAGS", flags);
    }
    match command.status() {
        Ok(status) if status.success() => Outcome::Passed,
        Ok(status) => Outcome::Failed(status.to_string()),
        Err(e) => Outcome::Failed(format!("could not run cargo: {e}")),
    }
}

fn print_table(results: &[(String, Outcome, Duration)]) {
    println!("\n{:<52} {:<7} {:>9}", "step", "result", "wall time");
    for (name, outcome, took) in results {
        let (result, note) = match outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::Failed(why) => ("FAILED", format!("  {why}")),
            Outcome::Skipped(why) => ("skipped", format!("  {why}")),
        };
        println!("{name:<52} {result:<7} {:>7.1} s{note}", took.as_secs_f64());
    }
    let total: Duration = results.iter().map(|(_, _, took)| *took).sum();
    println!("{:<52} {:<7} {:>7.1} s", "total", "", total.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(json: &str) -> Metadata {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn feature_steps_cover_every_crate_with_features() {
        let metadata = metadata(
            r#"{"packages": [
                {"name": "plain", "features": {}, "rust_version": "1.89"},
                {"name": "empty-default", "features": {"default": []}, "rust_version": "1.89"},
                {"name": "facade", "features": {"default": ["lz4"], "lz4": ["dep:lz4_flex"]}, "rust_version": "1.89"}
            ]}"#,
        );
        let steps = feature_steps(&metadata);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "features: facade (no default features)",
                "features: facade (all features)"
            ]
        );
        assert!(steps[0].args.contains(&"--no-default-features".to_owned()));
        assert!(steps[1].args.contains(&"--all-features".to_owned()));
        assert!(
            steps
                .iter()
                .all(|s| s.args.ends_with(&["-D".into(), "warnings".into()]))
        );
    }

    #[test]
    fn msrv_step_needs_a_declared_rust_version() {
        let metadata = metadata(r#"{"packages": [{"name": "a", "features": {}, "rust_version": null}]}"#);
        assert!(matches!(msrv_step(&metadata), Err(Outcome::Failed(why)) if why.contains("a declare")));
    }

    #[test]
    fn toolchains_match_the_rust_version_exactly() {
        fn check(list: &str, version: &str, expected: Option<&str>) {
            assert_eq!(
                matching_toolchain(list, version).as_deref(),
                expected,
                "{version} in {list:?}"
            );
        }
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        check(list, "1.89", None);
        check(list, "1.95", Some("1.95.0-x86_64-unknown-linux-gnu"));
        check(list, "1.95.0", Some("1.95.0-x86_64-unknown-linux-gnu"));
        check("1.890.0-x86_64-unknown-linux-gnu\n", "1.89", None);
        check(
            "1.89-x86_64-unknown-linux-gnu\n",
            "1.89",
            Some("1.89-x86_64-unknown-linux-gnu"),
        );
        check("", "1.89", None);
    }
}
