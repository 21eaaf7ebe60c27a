//! Gathering's pure core: from a snapshot of the hosts and the ledgers, decide which hosts
//! each role keeps, adds and releases. No API calls: the controller reads, this decides.
//!
//! Rules (ARCHITECTURE.md, "Which hosts are eligible"): a candidate matches the role's
//! selector and is free (not claimed by another SIPCluster by label or ledger, not deleting,
//! paused, errored or unhealthy, and has networkData); with a topology key its label must be
//! present and non-empty and its domain unused by the role; one host never serves two roles;
//! claims are all or nothing.

mod adopt;
mod choose;
mod claims;
mod decision;
mod host;
mod labels;
mod scan;
mod scope;

pub use adopt::{ADOPTED, outside_ledger};
pub use choose::{Inputs, schedule};
pub use claims::{claims_of_others, holder};
pub use decision::{
    Counts, Decision, LostReason, Pick, Release, ReleaseReason, RoleDecision, Shortfall,
};
pub use host::{ClusterKey, HostKey, HostView, free_by_itself};
pub use labels::Labels;
pub use scope::{ClaimScope, ScopeError};

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
