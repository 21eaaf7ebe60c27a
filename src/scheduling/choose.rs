//! Gathering's decision: keep the members that still fit, release what must go, and add one
//! host per free failure domain until each role has what it wants, or nothing at all.
//!
//! Deterministic: the result depends on the inputs' content, never on their order.
//! Linear in hosts: each host is classified once (ledger, claims, availability, both
//! selectors), then each role scans the compact classification.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use foldhash::fast::RandomState as FastHash;
use kube::core::{Selector, SelectorExt};

use crate::api::{HostRecord, NodeRole, NodeSet, SIPClusterSpec};

use super::adopt;
use super::decision::{Decision, LostReason, Release, ReleaseReason, RoleDecision, Shortfall};
use super::host::{ClusterKey, HostKey, HostView};
use super::scan::RoleScan;

/// Everything Gathering decides from: one consistent snapshot. `S` is the hasher of the
/// claims set, so a caller can pass a fast one; `H` lets a caller pass hosts it shares
/// (`Arc<HostView>`) rather than copies.
pub struct Inputs<'a, S = std::hash::RandomState, H = HostView> {
    pub cluster: &'a ClusterKey,
    pub spec: &'a SIPClusterSpec,
    /// This cluster's ledger.
    pub ledger: &'a [HostRecord],
    /// Every host the operator can see.
    pub hosts: &'a [H],
    /// Hosts claimed in the ledgers of other SIPClusters (labels are read from the hosts).
    pub claimed_elsewhere: &'a HashSet<HostKey, S>,
    /// The namespaces whose hosts this cluster may claim (`None`: any; `--claimable-hosts`).
    pub claimable: Option<&'a std::collections::BTreeSet<String>>,
}

pub(super) struct RoleSpec<'a> {
    pub(super) role: NodeRole,
    pub(super) wanted: u32,
    pub(super) selector: Result<Selector, String>,
    pub(super) topology_key: Option<&'a str>,
}

impl RoleSpec<'_> {
    fn matches(&self, host: &HostView) -> bool {
        self.selector
            .as_ref()
            .is_ok_and(|s| s.matches(&host.labels))
    }
}

/// What a host is to this cluster, decided once per host. Ordered as `Counts` counts.
pub(super) enum Standing<'a> {
    InLedger(&'a HostRecord),
    ClaimedElsewhere,
    OutOfScope,
    HeldByConsumer,
    Unavailable,
    NoNetworkData,
    Free,
}

pub(super) struct Classified<'a> {
    pub(super) host: &'a HostView,
    pub(super) standing: Standing<'a>,
    /// Whether each role's selector matches, indexed like `NodeRole::ALL`.
    pub(super) matches: [bool; 2],
    /// The host's value of each role's topology key (`None`: missing, empty or no key). Read
    /// here, while the host's labels are in cache, rather than again in each role's pass.
    pub(super) domains: [Option<&'a str>; 2],
}

/// Below this many hosts one thread classifies faster than several start.
const PARALLEL_FROM: usize = 20_000;

pub(super) fn fast_map<K, V>(capacity: usize) -> HashMap<K, V, FastHash> {
    HashMap::with_capacity_and_hasher(capacity, FastHash::default())
}

pub fn schedule<S, H>(inputs: &Inputs<'_, S, H>) -> Decision
where
    S: BuildHasher + Sync,
    H: Borrow<HostView> + Sync,
{
    // Hosts labeled for this cluster that its ledger lacks are reviewed as members (kept while
    // they fit, released otherwise) and enter the ledger with the decision.
    let strays = adopt::strays(inputs);
    if !strays.is_empty() {
        let ledger: Vec<HostRecord> = inputs.ledger.iter().chain(&strays).cloned().collect();
        let mut decision = schedule(&Inputs {
            ledger: &ledger,
            ..*inputs
        });
        decision.adopted = strays;
        return decision;
    }
    let roles: [RoleSpec<'_>; 2] =
        NodeRole::ALL.map(|role| role_spec(role, inputs.spec.nodes.get(&role)));

    let mut in_ledger = fast_map(inputs.ledger.len());
    for record in inputs.ledger {
        in_ledger.insert(HostKey::of_record(record), record);
    }
    // Each host's ledger record, looked up once (and not at all for an empty ledger).
    let ledger_hits: Vec<Option<&HostRecord>> = if in_ledger.is_empty() {
        Vec::new()
    } else {
        inputs
            .hosts
            .iter()
            .map(|h| in_ledger.get(&h.borrow().key).copied())
            .collect()
    };
    let ledger_hosts: HashMap<&HostKey, &HostView, FastHash> = ledger_hits
        .iter()
        .zip(inputs.hosts)
        .filter(|(hit, _)| hit.is_some())
        .map(|(_, h)| (&h.borrow().key, h.borrow()))
        .collect();

    // 1. Members: keep those that still fit, release the rest and any surplus.
    let mut decision = Decision::default();
    let mut occupied: [HashSet<String, FastHash>; 2] = Default::default();
    for (i, spec) in roles.iter().enumerate() {
        let (role_decision, domains) = review_members(inputs, spec, &ledger_hosts);
        occupied[i] = domains;
        decision.roles.insert(spec.role, role_decision);
    }
    let needs = roles.each_ref().map(|spec| {
        let have = decision.roles[&spec.role].keep.len() as u32;
        spec.wanted.saturating_sub(have)
    });
    if needs == [0, 0] && roles.iter().all(|r| r.selector.is_ok()) {
        // Nothing to add, so no candidate to look for and no shortfall to explain.
        return decision;
    }

    // A host neither role's selector matches counts nowhere: it is dropped here, before its
    // standing or domains are looked up.
    let classify_range = |range: std::ops::Range<usize>| -> Vec<Classified<'_>> {
        inputs.hosts[range.clone()]
            .iter()
            .zip(range)
            .filter_map(|(host, i)| {
                let host: &HostView = host.borrow();
                let matches = [roles[0].matches(host), roles[1].matches(host)];
                if matches == [false, false] {
                    return None;
                }
                let hit = ledger_hits.get(i).copied().flatten();
                let domain = |r: usize| {
                    let spec = &roles[r];
                    matches[r]
                        .then_some(spec.topology_key)
                        .flatten()
                        .and_then(|k| host.domain(k))
                };
                Some(Classified {
                    host,
                    standing: classify(inputs, hit, host),
                    matches,
                    domains: [domain(0), domain(1)],
                })
            })
            .collect()
    };
    // Classifying is most of the cost and each host is independent: large inventories are
    // split across the cores, in order, so the result is the same as one pass.
    let n = inputs.hosts.len();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get().min(4));
    let classified: Vec<Vec<Classified<'_>>> = if n < PARALLEL_FROM || threads < 2 {
        vec![classify_range(0..n)]
    } else {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    let range = start..(start + chunk).min(n);
                    scope.spawn(|| classify_range(range))
                })
                .collect();
            parts
                .into_iter()
                .map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };

    // 2. Additions, role by role; a host chosen for one role is gone for the next.
    let mut taken: HashSet<HostKey, FastHash> = HashSet::default();
    for (i, spec) in roles.iter().enumerate() {
        let other_wanted = roles[1 - i].wanted > 0;
        let role_decision = decision.roles.get_mut(&spec.role).expect("inserted above");
        let have = role_decision.keep.len() as u32;
        let need = needs[i];
        let scan = RoleScan {
            spec,
            index: i,
            other_wanted,
            occupied: &occupied[i],
            taken: &taken,
        };
        let (picks, counts) = scan.candidates(&classified, need as usize);
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

fn classify<'a, S: BuildHasher, H>(
    inputs: &Inputs<'_, S, H>,
    in_ledger: Option<&'a HostRecord>,
    host: &HostView,
) -> Standing<'a> {
    if let Some(record) = in_ledger {
        Standing::InLedger(record)
    } else if host.labeled_for_other(inputs.cluster) || inputs.claimed_elsewhere.contains(&host.key)
    {
        Standing::ClaimedElsewhere
    } else if inputs
        .claimable
        .is_some_and(|c| !c.contains(host.key.namespace()))
    {
        // A member keeps its host (above); a new choice stays in the namespaces allowed.
        Standing::OutOfScope
    } else if host.consumer.is_some() {
        // Held by someone else (a Metal3Machine, a provisioning image): a member keeps its
        // host (above), a new choice never takes one.
        Standing::HeldByConsumer
    } else if host.unavailable() {
        Standing::Unavailable
    } else if !host.has_network_data {
        Standing::NoNetworkData
    } else {
        Standing::Free
    }
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
fn review_members<S: BuildHasher, H>(
    inputs: &Inputs<'_, S, H>,
    spec: &RoleSpec<'_>,
    hosts: &HashMap<&HostKey, &HostView, FastHash>,
) -> (RoleDecision, HashSet<String, FastHash>) {
    let mut decision = RoleDecision {
        wanted: spec.wanted,
        ..Default::default()
    };
    let mut domains = HashSet::default();
    let mut kept: Vec<(HostKey, bool)> = Vec::new();

    for record in inputs
        .ledger
        .iter()
        .filter(|r| r.role == spec.role && r.state.is_member())
    {
        let key = HostKey::of_record(record);
        let host = hosts.get(&key).copied();
        let lost = match host {
            None => Some(LostReason::Deleted),
            Some(host) => member_lost(inputs, spec, record, host, &domains),
        };
        match (lost, host) {
            (None, Some(host)) => {
                if let Some(domain) = spec.topology_key.and_then(|k| host.domain(k)) {
                    domains.insert(domain.to_string());
                }
                kept.push((key, host.release_requested));
            }
            (reason, _) => decision.release.push(Release {
                key,
                reason: ReleaseReason::Lost(reason.unwrap_or(LostReason::Deleted)),
            }),
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

fn member_lost<S: BuildHasher, H>(
    inputs: &Inputs<'_, S, H>,
    spec: &RoleSpec<'_>,
    record: &HostRecord,
    host: &HostView,
    domains: &HashSet<String, FastHash>,
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
