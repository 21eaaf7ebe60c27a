//! `kubectl sip`: plan a SIPCluster before creating or changing it, see the host inventory at a
//! glance, and read a cluster's story. Read-only (get and list, nothing else), from the user's
//! kubeconfig; the plan runs the operator's own scheduling code on the live hosts and ledgers.
//!
//! Exit codes for scripts: 0 done (a plan the pool satisfies), 1 an error (bad usage, a file
//! or the API server), 2 a plan the pool cannot satisfy.

mod cli;
mod hosts;
mod inventory;
mod overrides;
mod plan;
mod why;

pub use cli::{Cli, run};
pub use hosts::{HostRow, Standing, rows};
pub use inventory::Inventory;
pub use overrides::apply as apply_overrides;
pub use plan::{Plan, plan};

/// What the plugin ends with: the exit code scripts see.
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_UNSCHEDULABLE: i32 = 2;

#[cfg(test)]
mod tests;
