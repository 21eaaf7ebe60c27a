//! Gathering's decision: keep the members that still fit, release what must go, and add one
//! host per free failure domain until each role has what it wants, or nothing at all.
//!
//! Deterministic: the result depends on the inputs' content, never on their order.

use std::collections::{BTreeMap, HashMap, HashSet};

use kube::core::{Selector, SelectorExt};

use crate::api::{HostRecord, NodeRole, NodeSet, SIPClusterSpec};

use super::decision::{
    Counts, Decision, LostReason, Pick, Release, ReleaseReason, RoleDecision, Shortfall,
};
use super::host::{ClusterKey, HostKey, HostView};

/// Everything Gathering decides from: one consistent snapshot.
pub struct Inputs<'a> {
    pub cluster: &'a ClusterKey,
    pub spec: &'a SIPClusterSpec,
    /// This cluster's ledger.
    pub ledger: &'a [HostRecord],
    /// Every host the operator can see.
    pub hosts: &'a [HostView],
    /// Hosts claimed in the ledgers of other SIPClusters (labels are read from the hosts).
    pub claimed_elsewhere: &'a HashSet<HostKey>,
}

struct RoleSpec<'a> {
    role: NodeRole,
    wanted: u32,
    selector: Result<Selector, String>,
    topology_key: Option<&'a str>,
}

impl RoleSpec<'_> {
    fn matches(&self, host: &HostView) -> bool {
        self.selector
            .as_ref()
            .is_ok_and(|s| s.matches(&host.labels))
    }
}

pub fn schedule(inputs: &Inputs<'_>) -> Decision {
    let roles: Vec<RoleSpec<'_>> = NodeRole::ALL
        .iter()
        .map(|&role| role_spec(role, inputs.spec.nodes.get(&role)))
        .collect();
    let hosts: HashMap<&HostKey, &HostView> = inputs.hosts.iter().map(|h| (&h.key, h)).collect();

    let mut decision = Decision::default();
    // Hosts this cluster holds in any role or state: never candidates.
    let in_ledger: HashMap<HostKey, &HostRecord> = inputs
        .ledger
        .iter()
        .map(|r| (HostKey::of_record(r), r))
        .collect();

    // 1. Members: keep those that still fit, release the rest and any surplus.
    let mut occupied: BTreeMap<NodeRole, HashSet<String>> = BTreeMap::new();
    for spec in &roles {
        let (role_decision, domains) = review_members(inputs, spec, &hosts);
        occupied.insert(spec.role, domains);
        decision.roles.insert(spec.role, role_decision);
    }

    // 2. Additions, role by role; a host chosen for one role is gone for the next.
    let mut taken: HashSet<HostKey> = HashSet::new();
    for (i, spec) in roles.iter().enumerate() {
        let other = &roles[1 - i];
        let role_decision = decision.roles.get_mut(&spec.role).expect("inserted above");
        let have = role_decision.keep.len() as u32;
        let need = spec.wanted.saturating_sub(have);
        let (picks, counts) = candidates(
            inputs,
            spec,
            other,
            &in_ledger,
            &occupied[&spec.role],
            &taken,
            need as usize,
        );
        let addable = picks.len() as u32;
        if let Err(err) = &spec.selector {
            role_decision.shortfall = Some(Shortfall {
                role: Some(spec.role),
                wanted: spec.wanted,
                invalid_selector: Some(err.clone()),
                ..Default::default()
            });
        } else if addable < need {
            role_decision.shortfall = Some(Shortfall {
                role: Some(spec.role),
                wanted: spec.wanted,
                have,
                addable,
                topology_key: spec.topology_key.map(str::to_string),
                invalid_selector: None,
                counts,
            });
        } else {
            taken.extend(picks.iter().map(|p| p.key.clone()));
            role_decision.add = picks;
        }
    }

    if !decision.is_schedulable() {
        for role_decision in decision.roles.values_mut() {
            role_decision.add.clear();
        }
    }
    decision
}

fn role_spec(role: NodeRole, set: Option<&NodeSet>) -> RoleSpec<'_> {
    match set {
        None => RoleSpec {
            role,
            wanted: 0,
            selector: Ok(Selector::default()),
            topology_key: None,
        },
        Some(set) => RoleSpec {
            role,
            wanted: set.wanted(),
            selector: Selector::try_from(set.label_selector.clone()).map_err(|e| e.to_string()),
            topology_key: set.topology_key(),
        },
    }
}

/// Decides which members of a role stay. Returns the decision (keep and release filled) and
/// the domains the kept members occupy.
fn review_members(
    inputs: &Inputs<'_>,
    spec: &RoleSpec<'_>,
    hosts: &HashMap<&HostKey, &HostView>,
) -> (RoleDecision, HashSet<String>) {
    let mut decision = RoleDecision {
        wanted: spec.wanted,
        ..Default::default()
    };
    let mut domains = HashSet::new();
    let mut kept: Vec<(HostKey, bool)> = Vec::new();

    for record in inputs
        .ledger
        .iter()
        .filter(|r| r.role == spec.role && r.state.is_member())
    {
        let key = HostKey::of_record(record);
        let lost = match hosts.get(&key) {
            None => Some(LostReason::Deleted),
            Some(host) => member_lost(inputs, spec, record, host, &domains),
        };
        match lost {
            Some(reason) => decision.release.push(Release {
                key,
                reason: ReleaseReason::Lost(reason),
            }),
            None => {
                let host = hosts[&key];
                if let Some(domain) = spec.topology_key.and_then(|k| host.domain(k)) {
                    domains.insert(domain.to_string());
                }
                kept.push((key, host.release_requested));
            }
        }
    }

    // Shrink: hosts annotated for release first, then the most recently chosen (the standby
    // end of the ledger), so active members stay.
    let surplus = kept.len().saturating_sub(spec.wanted as usize);
    if surplus > 0 {
        let mut release: Vec<usize> = kept
            .iter()
            .enumerate()
            .filter(|(_, (_, requested))| *requested)
            .map(|(i, _)| i)
            .take(surplus)
            .collect();
        let rest = surplus - release.len();
        release.extend((0..kept.len()).rev().filter(|i| !kept[*i].1).take(rest));
        release.sort_unstable();
        let mut surplus_releases = Vec::with_capacity(release.len());
        for &i in release.iter().rev() {
            let (key, requested) = kept.remove(i);
            if let Some(domain) = spec.topology_key.and_then(|k| hosts[&key].domain(k)) {
                domains.remove(domain);
            }
            surplus_releases.push(Release {
                key,
                reason: if requested {
                    ReleaseReason::Requested
                } else {
                    ReleaseReason::Surplus
                },
            });
        }
        // Removed back to front; report in ledger order.
        decision.release.extend(surplus_releases.into_iter().rev());
    }
    decision.keep = kept.into_iter().map(|(k, _)| k).collect();
    (decision, domains)
}

fn member_lost(
    inputs: &Inputs<'_>,
    spec: &RoleSpec<'_>,
    record: &HostRecord,
    host: &HostView,
    domains: &HashSet<String>,
) -> Option<LostReason> {
    if record.uid.is_some() && host.uid.is_some() && record.uid != host.uid {
        return Some(LostReason::Recreated);
    }
    if host.deleting {
        return Some(LostReason::BeingDeleted);
    }
    if host.errored {
        return Some(LostReason::Errored);
    }
    if host.unhealthy {
        return Some(LostReason::Unhealthy);
    }
    if host.labeled_for_other(inputs.cluster) || inputs.claimed_elsewhere.contains(&host.key) {
        return Some(LostReason::ClaimedElsewhere);
    }
    if !spec.matches(host) {
        return Some(LostReason::NoLongerMatches);
    }
    if let Some(key) = spec.topology_key {
        match host.domain(key) {
            None => return Some(LostReason::TopologyLabelMissing),
            Some(d) if domains.contains(d) => return Some(LostReason::DomainShared),
            Some(_) => {}
        }
    }
    None
}

/// A failure domain: a value of the topology label, or the host itself when the role does not
/// spread (hosts of the same name may live in different namespaces).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Domain<'a> {
    Label(&'a str),
    Host(&'a HostKey),
}

/// Up to `need` hosts for a role, one per free domain, and the counts that explain a
/// shortfall. Prefers hosts the other role could not use, then domain and name order.
fn candidates<'a>(
    inputs: &Inputs<'a>,
    spec: &RoleSpec<'_>,
    other: &RoleSpec<'_>,
    in_ledger: &HashMap<HostKey, &HostRecord>,
    occupied: &HashSet<String>,
    taken: &HashSet<HostKey>,
    need: usize,
) -> (Vec<Pick>, Counts) {
    let mut counts = Counts::default();
    // Best host per free domain: the smallest (contested by the other role, key).
    let mut best: BTreeMap<Domain<'a>, (bool, &'a HostView)> = BTreeMap::new();
    let mut eligible = 0u32;

    for host in inputs.hosts {
        if !spec.matches(host) {
            continue;
        }
        counts.matching += 1;
        if let Some(record) = in_ledger.get(&host.key) {
            if record.role == spec.role && record.state.is_member() {
                counts.members += 1;
            } else if record.state.is_member() {
                counts.other_role += 1;
            } else {
                counts.unusable += 1;
            }
            continue;
        }
        if host.labeled_for_other(inputs.cluster) || inputs.claimed_elsewhere.contains(&host.key) {
            counts.claimed_elsewhere += 1;
            continue;
        }
        if host.unavailable() {
            counts.unavailable += 1;
            continue;
        }
        if !host.has_network_data {
            counts.no_network_data += 1;
            continue;
        }
        let domain = match spec.topology_key {
            Some(key) => match host.domain(key) {
                Some(d) => Domain::Label(d),
                None => {
                    counts.no_topology_label += 1;
                    continue;
                }
            },
            None => Domain::Host(&host.key),
        };
        if taken.contains(&host.key) {
            counts.other_role += 1;
            continue;
        }
        eligible += 1;
        if matches!(domain, Domain::Label(d) if occupied.contains(d)) {
            continue;
        }
        let contested = other.wanted > 0 && other.matches(host);
        match best.get(&domain) {
            Some((c, h)) if (*c, &h.key) <= (contested, &host.key) => {}
            _ => {
                best.insert(domain, (contested, host));
            }
        }
    }

    let mut ordered: Vec<(bool, Domain<'a>, &HostView)> =
        best.into_iter().map(|(d, (c, h))| (c, d, h)).collect();
    ordered.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    counts.free = ordered.len() as u32;
    counts.blocked_by_topology = eligible - counts.free;

    let picks = ordered
        .into_iter()
        .take(need)
        .map(|(_, domain, host)| Pick {
            key: host.key.clone(),
            uid: host.uid.clone(),
            domain: match domain {
                Domain::Label(d) => Some(d.to_string()),
                Domain::Host(_) => None,
            },
        })
        .collect();
    (picks, counts)
}
