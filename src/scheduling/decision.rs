//! What Gathering decided: per role, the hosts to keep, add and release, or why it cannot.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::{HostRecord, HostState, NodeRole};

use super::host::HostKey;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub roles: BTreeMap<NodeRole, RoleDecision>,
    /// Hosts labeled for the cluster that its ledger lacked (left by the predecessor), as
    /// they enter the ledger; the roles' decisions keep or release them like members.
    pub adopted: Vec<HostRecord>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoleDecision {
    pub wanted: u32,
    /// Members that stay, in ledger order.
    pub keep: Vec<HostKey>,
    /// Hosts to claim. Always empty when any role has a shortfall: claims are all or nothing.
    pub add: Vec<Pick>,
    /// Members to let go, with why.
    pub release: Vec<Release>,
    /// Set when the pool cannot supply what the role wants.
    pub shortfall: Option<Shortfall>,
}

/// A host chosen for a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub key: HostKey,
    pub uid: Option<String>,
    /// The host's value of the role's topology key.
    pub domain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub key: HostKey,
    pub reason: ReleaseReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The host carries the `sip.airshipit.org/release` annotation and the role shrank.
    Requested,
    /// The role wants fewer hosts than it has.
    Surplus,
    /// The host can no longer serve; a replacement is chosen.
    Lost(LostReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    Deleted,
    /// A host of the same name exists, but it is not the machine that was chosen.
    Recreated,
    BeingDeleted,
    Errored,
    Unhealthy,
    NoLongerMatches,
    TopologyLabelMissing,
    /// Two members ended up in one failure domain (someone relabeled a host).
    DomainShared,
    /// Labeled for, or listed by, another SIPCluster.
    ClaimedElsewhere,
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseReason::Requested => "release requested by annotation",
            ReleaseReason::Surplus => "more hosts than wanted",
            ReleaseReason::Lost(LostReason::Deleted) => "host deleted",
            ReleaseReason::Lost(LostReason::Recreated) => "host re-created under the same name",
            ReleaseReason::Lost(LostReason::BeingDeleted) => "host being deleted",
            ReleaseReason::Lost(LostReason::Errored) => "host in error",
            ReleaseReason::Lost(LostReason::Unhealthy) => "host marked unhealthy",
            ReleaseReason::Lost(LostReason::NoLongerMatches) => {
                "host no longer matches the role's selector"
            }
            ReleaseReason::Lost(LostReason::TopologyLabelMissing) => "host lost its topology label",
            ReleaseReason::Lost(LostReason::DomainShared) => {
                "another member is in the same topology domain"
            }
            ReleaseReason::Lost(LostReason::ClaimedElsewhere) => {
                "host claimed by another SIPCluster"
            }
        })
    }
}

/// Why a role cannot get the hosts it wants, with the counts a person needs to act.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shortfall {
    pub role: Option<NodeRole>,
    pub wanted: u32,
    /// Members kept.
    pub have: u32,
    /// Hosts that could be added (one per free domain).
    pub addable: u32,
    /// The topology key, if the role spreads.
    pub topology_key: Option<String>,
    /// The selector could not be used (only possible for objects that bypassed admission).
    pub invalid_selector: Option<String>,
    pub counts: Counts,
}

/// Hosts matching the role's selector, by what excludes them. A host is counted under the
/// first exclusion that applies, in the order of the fields. Serialized for `kubectl sip plan
/// -o json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub matching: u32,
    /// Members of this role already.
    pub members: u32,
    pub claimed_elsewhere: u32,
    /// Held by another consumer (`spec.consumerRef`).
    pub held_by_consumer: u32,
    /// In a namespace this cluster's namespace may not claim from (`--claimable-hosts`).
    pub out_of_scope: u32,
    /// Deleting, paused, errored or unhealthy.
    pub unavailable: u32,
    /// Marked unusable in the ledger, or being released.
    pub unusable: u32,
    pub no_network_data: u32,
    pub no_topology_label: u32,
    /// Serving, or chosen for, the other role.
    pub other_role: u32,
    /// Eligible, but their domain is already used.
    pub blocked_by_topology: u32,
    /// Eligible, one per free domain.
    pub free: u32,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = self.role.map_or("?", NodeRole::as_str);
        if let Some(err) = &self.invalid_selector {
            return write!(
                f,
                "{role}: the label selector is invalid ({err}); fix spec.nodes.{role}.labelSelector"
            );
        }
        let c = &self.counts;
        write!(
            f,
            "{role}: wanted {}, have {}, can add {}; of {} hosts matching the selector: {} claimed by other SIPClusters, {} held by another consumer (spec.consumerRef), {} deleting/paused/errored/unhealthy, {} unusable, {} without networkData",
            self.wanted,
            self.have,
            self.addable,
            c.matching,
            c.claimed_elsewhere,
            c.held_by_consumer,
            c.unavailable,
            c.unusable,
            c.no_network_data,
        )?;
        if let Some(key) = &self.topology_key {
            write!(
                f,
                ", {} without label {key}, {} blocked by topology (their {key} is already used)",
                c.no_topology_label, c.blocked_by_topology
            )?;
        }
        write!(f, ", {} serving the other role", c.other_role)?;
        if c.out_of_scope > 0 {
            write!(
                f,
                ", {} in namespaces this SIPCluster's may not claim from (the operator's --claimable-hosts)",
                c.out_of_scope
            )?;
        }
        write!(
            f,
            "; add matching hosts{} or lower spec.nodes.{role}.count",
            if self.topology_key.is_some() {
                " in unused domains"
            } else {
                ""
            }
        )
    }
}

impl Decision {
    /// True when every role gets what it wants.
    pub fn is_schedulable(&self) -> bool {
        self.roles.values().all(|r| r.shortfall.is_none())
    }

    pub fn shortfalls(&self) -> impl Iterator<Item = &Shortfall> {
        self.roles.values().filter_map(|r| r.shortfall.as_ref())
    }

    /// True when the ledger already is what the spec asks for.
    pub fn changes_nothing(&self) -> bool {
        self.adopted.is_empty()
            && self
                .roles
                .values()
                .all(|r| r.add.is_empty() && r.release.is_empty())
    }

    /// The ledger after this decision: adopted hosts appended, added hosts appended as
    /// `Chosen`, released members turned `Releasing` (their labels go before they leave),
    /// everything else untouched.
    pub fn apply_to(&self, ledger: &[HostRecord]) -> Vec<HostRecord> {
        let mut out: Vec<HostRecord> = ledger.to_vec();
        out.extend(self.adopted.iter().cloned());
        for (role, decision) in &self.roles {
            for release in &decision.release {
                if let Some(record) = out
                    .iter_mut()
                    .find(|r| r.role == *role && HostKey::of_record(r) == release.key)
                {
                    record.state = HostState::Releasing;
                    record.reason = Some(release.reason.to_string());
                }
            }
            for pick in &decision.add {
                // A host chosen again after being marked unusable replaces its old record.
                out.retain(|r| HostKey::of_record(r) != pick.key);
                out.push(HostRecord {
                    name: pick.key.name().to_string(),
                    namespace: pick.key.namespace().to_string(),
                    uid: pick.uid.clone(),
                    role: *role,
                    state: HostState::Chosen,
                    reason: None,
                    topology_domain: pick.domain.clone(),
                    addresses: BTreeMap::new(),
                    bmc_address: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shortfall(out_of_scope: u32) -> Shortfall {
        Shortfall {
            role: Some(NodeRole::Worker),
            wanted: 2,
            counts: Counts {
                matching: 3,
                out_of_scope,
                ..Counts::default()
            },
            ..Shortfall::default()
        }
    }

    #[test]
    fn the_reason_names_the_claim_rules_only_when_they_kept_a_host_out() {
        let rules = "the operator's --claimable-hosts";
        assert!(!shortfall(0).to_string().contains(rules));
        assert!(shortfall(1).to_string().contains(&format!(
            "1 in namespaces this SIPCluster's may not claim from ({rules})"
        )));
    }

    #[test]
    fn adopting_a_host_is_a_change_even_when_no_role_adds_or_releases() {
        let record = HostRecord {
            name: "wk-1".into(),
            namespace: "metal3".into(),
            uid: None,
            role: NodeRole::Worker,
            state: HostState::Chosen,
            reason: None,
            topology_domain: None,
            addresses: BTreeMap::new(),
            bmc_address: None,
        };
        let mut d = Decision {
            roles: [(NodeRole::Worker, RoleDecision::default())].into(),
            ..Decision::default()
        };
        assert!(d.changes_nothing());
        d.adopted.push(record);
        assert!(!d.changes_nothing());
    }

    #[test]
    fn adding_alone_or_releasing_alone_is_a_change() {
        let key = HostKey::new("metal3", "wk-1");
        let adds = RoleDecision {
            add: vec![Pick {
                key: key.clone(),
                uid: None,
                domain: None,
            }],
            ..RoleDecision::default()
        };
        let releases = RoleDecision {
            release: vec![Release {
                key,
                reason: ReleaseReason::Surplus,
            }],
            ..RoleDecision::default()
        };
        for role in [adds, releases] {
            let d = Decision {
                roles: [(NodeRole::Worker, role)].into(),
                ..Decision::default()
            };
            assert!(!d.changes_nothing(), "{d:?}");
        }
    }
}
