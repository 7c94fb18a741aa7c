//! `cargo xtask chaos <drill>`: failover drills (being written).

use anyhow::{Result, bail};

/// Options of `cargo xtask chaos`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChaosArgs {
    /// The drill to run, or `all`.
    pub(crate) drill: String,
}

pub(crate) fn chaos(args: &ChaosArgs) -> Result<()> {
    bail!("the chaos drill {:?} is not implemented yet", args.drill)
}
