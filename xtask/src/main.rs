//! Project automation: a local cluster for development, tests, CI, load and failover drills.
//!
//! Run `cargo xtask` for the list of commands.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod chaos;
mod cluster;
mod demo;
mod fred_baseline;
mod load;
mod plot;
mod prerequisites;

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
    /// Load the cluster through cluster-client, fred's cluster client and redis-benchmark; print ratios.
    Load(load::LoadArgs),
    /// Failover drills under load, through the cache and through fred's cluster client side by side.
    Chaos(chaos::ChaosArgs),
    /// Run every test in the workspace (installs redis-server first when it is missing).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// What CI runs: format check, clippy with warnings denied, all tests, and the doc build.
    Ci,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Demo(args) => in_release().and_then(|()| demo::demo(&args)),
        Task::ClusterUp(args) => cluster::up(&args),
        Task::ClusterDown => cluster::down(),
        Task::ClusterStatus => cluster::status(),
        Task::Load(args) => in_release().and_then(|()| load::load(&args)),
        Task::Chaos(args) => in_release().and_then(|()| chaos::chaos(&args)),
        Task::Test { args } => test(&args),
        Task::Ci => ci(),
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
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

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
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

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test(&[])?;
    // SAFETY of the environment: RUSTDOCFLAGS only affects the child cargo.
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(workspace_root())
        .status()
        .context("running cargo doc")?;
    if !status.success() {
        bail!("`cargo doc --workspace --no-deps` failed with warnings denied ({status})");
    }
    Ok(())
}
