//! Making sure the system packages the tests need are installed.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// A system binary the tests run, and the Debian package that provides it.
struct Prerequisite {
    binary: &'static str,
    package: &'static str,
    why: &'static str,
}

const PREREQUISITES: &[Prerequisite] = &[
    Prerequisite {
        binary: "redis-server",
        package: "redis-server",
        why: "every Redis test starts real nodes",
    },
    Prerequisite {
        binary: "redis-sentinel",
        package: "redis-sentinel",
        why: "the sentinel-mode tests start real sentinels",
    },
    Prerequisite {
        binary: "nutcracker",
        package: "nutcracker",
        why: "the ketama test compares key placement with a real twemproxy",
    },
];

/// Everything the test suite needs.
pub(crate) fn ensure_all() -> Result<()> {
    ensure(|_| true)
}

/// redis-server and redis-sentinel, for `cluster-up --sentinel`.
pub(crate) fn ensure_sentinel() -> Result<()> {
    ensure(|p| p.binary == "redis-server" || p.binary == "redis-sentinel")
}

/// Only redis-server, for commands that start a cluster.
pub(crate) fn ensure_redis() -> Result<()> {
    ensure(|p| p.binary == "redis-server")
}

/// Installs every missing prerequisite with apt-get when running as root, or stops with the command to run.
fn ensure(wanted: impl Fn(&Prerequisite) -> bool) -> Result<()> {
    let missing: Vec<&Prerequisite> = PREREQUISITES
        .iter()
        .filter(|p| wanted(p) && !on_path(p.binary))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
    let command = format!("apt-get install -y {}", packages.join(" "));
    for p in &missing {
        eprintln!("{} is not installed ({}).", p.binary, p.why);
    }
    if !is_root() || !on_path("apt-get") {
        bail!("install the missing packages first: `sudo {command}` (Debian/Ubuntu), then run this again");
    }
    eprintln!("installing with `{command}` ...");
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&packages);
    run("apt-get", &args)?;
    if let Some(p) = missing.iter().find(|p| !on_path(p.binary)) {
        bail!("`{command}` finished but {} is still not on PATH", p.binary);
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub(crate) fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
