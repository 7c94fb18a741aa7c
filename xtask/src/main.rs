//! Project automation: a local cluster for development, tests, CI, load and failover drills.
//!
//! Run `cargo xtask` for the list of commands.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod chaos;
mod ci;
mod cluster;
mod demo;
mod fred_baseline;
mod load;
mod plot;
mod prerequisites;
mod redis_rs_baseline;
mod results;
mod scale;
mod scale_bench;

/// Developer and operator tasks for the Redis Cluster cache workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// The main job: a local cluster, a warm-up, a live load through the cache, a health summary.
    Demo(demo::DemoArgs),
    /// Start a local Redis Cluster of real redis-server processes that keeps running in the background.
    ClusterUp(cluster::UpArgs),
    /// Stop the cluster started by `cluster-up` (by PID) and remove its files.
    ClusterDown,
    /// Show each node of the running local cluster: role, slots, link, memory, keys.
    ClusterStatus,
    /// Grow, shrink or rebalance the cluster from `cluster-up` online: `--add-primaries N` (from its
    /// spare nodes), `--remove-primary ADDR`, or `--rebalance [--weights addr=w,...]`.
    ClusterScale(scale::ScaleArgs),
    /// Load the cluster through cluster-client, the cache, fred and redis-rs (each as its users build it
    /// and at its best settings) and redis-benchmark (plain and -P 16); print ratios, write results.json.
    Load(load::LoadArgs),
    /// Failover drills under load, through the cache and through fred's and redis-rs's cluster clients
    /// side by side.
    Chaos(chaos::ChaosArgs),
    /// Time to move 1,000 slots holding 1 M keys of 100 B: ours against `redis-cli --cluster rebalance`
    /// and `reshard --cluster-pipeline 100`, same data, fresh cluster per trial; writes docs/RESULTS.md.
    ScaleBench(scale_bench::ScaleBenchArgs),
    /// Run every test in the workspace (installs redis-server first when it is missing).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// What CI checks: fmt, clippy and docs with warnings denied, each crate's features, MSRV, tests.
    ///
    /// Steps: `cargo fmt --check`; clippy on all targets with `-D warnings` (this includes clippy's
    /// `incompatible_msrv` lint, which reads `rust-version` and flags std APIs newer than it); `cargo doc
    /// --workspace --no-deps` with RUSTDOCFLAGS="-D warnings"; for every crate that declares features (read
    /// from `cargo metadata`), clippy with `--no-default-features` and with `--all-features`; the MSRV:
    /// `cargo +<toolchain> check --workspace` when rustup has a toolchain matching `rust-version`, else
    /// only the lint checks it (say so in the table); and `cargo test --workspace` unless `--no-tests`.
    /// Every step runs even after a failure; a table of steps and wall times comes last, and the exit
    /// status is non-zero if any step failed.
    Ci(ci::CiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Demo(args) => in_release().and_then(|()| demo::demo(&args)),
        Task::ClusterUp(args) => cluster::up(&args),
        Task::ClusterDown => cluster::down(),
        Task::ClusterStatus => cluster::status(),
        Task::ClusterScale(args) => scale::scale(&args),
        Task::Load(args) => in_release().and_then(|()| load::load(&args)),
        Task::Chaos(args) => in_release().and_then(|()| chaos::chaos(&args)),
        Task::ScaleBench(args) => in_release().and_then(|()| scale_bench::scale_bench(&args)),
        Task::Test { args } => test(&args),
        Task::Ci(args) => ci::ci(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Measurements in a debug build would be meaningless: re-runs this command from a release build and
/// exits with its status. Returns `Ok(())` when already running in release.
fn in_release() -> Result<()> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("Building xtask in release mode for measurements (the first build takes a few minutes)...");
    let status = Command::new(cargo_binary())
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(&args)
        .current_dir(workspace_root())
        .status()
        .context("running the release build of xtask")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// The workspace root (the parent of `xtask/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// The cargo that runs this command (so its toolchain builds everything), or `cargo` from `PATH`.
fn cargo_binary() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = cargo_binary();
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    prerequisites::ensure_all()?;
    let mut args = vec!["test", "--workspace"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args)
}
