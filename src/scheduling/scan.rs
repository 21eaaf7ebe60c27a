//! One role's scan for new hosts: one per free failure domain, the best domains kept in a
//! bounded ranking, with the counts that explain a shortfall.

use std::collections::{BTreeMap, HashSet};

use foldhash::fast::RandomState as FastHash;

use super::choose::{Classified, RoleSpec, Standing};
use super::decision::{Counts, Pick};
use super::host::{HostKey, HostView};

/// A failure domain: a value of the topology label, or the host itself when the role does not
/// spread (hosts of the same name may live in different namespaces).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Domain<'a> {
    Label(&'a str),
    Host(&'a HostKey),
}

/// One role's pass over the classified hosts.
pub(super) struct RoleScan<'s, 'a> {
    pub(super) spec: &'s RoleSpec<'a>,
    /// The role's index in `NodeRole::ALL`, for `Classified::matches`.
    pub(super) index: usize,
    pub(super) other_wanted: bool,
    pub(super) occupied: &'s HashSet<String, FastHash>,
    pub(super) taken: &'s HashSet<HostKey, FastHash>,
}

impl RoleScan<'_, '_> {
    /// Up to `need` hosts, one per free domain, and the counts that explain a shortfall.
    /// Prefers hosts the other role could not use, then domain and name order.
    pub(super) fn candidates<'a>(
        &self,
        classified: &[Vec<Classified<'a>>],
        need: usize,
    ) -> (Vec<Pick>, Counts) {
        let spec = self.spec;
        let mut counts = Counts::default();
        // The best `need` free domains, ranked by (contested by the other role, domain), each
        // with its best host (smallest key). Bounded, so most hosts cost one comparison with
        // the current worst. Exact: once full, the worst only improves, so nothing evicted or
        // skipped could rank later; and when the role is short the map never fills, so its
        // size is the number of free domains.
        let mut best: BTreeMap<(bool, Domain<'a>), &'a HostView> = BTreeMap::new();
        let mut eligible = 0u32;

        for c in classified.iter().flatten() {
            if !c.matches[self.index] {
                continue;
            }
            counts.matching += 1;
            let host = c.host;
            match c.standing {
                Standing::InLedger(record) => {
                    if !record.state.is_member() {
                        counts.unusable += 1;
                    } else if record.role == spec.role {
                        counts.members += 1;
                    } else {
                        counts.other_role += 1;
                    }
                    continue;
                }
                Standing::ClaimedElsewhere => {
                    counts.claimed_elsewhere += 1;
                    continue;
                }
                Standing::OutOfScope => {
                    counts.out_of_scope += 1;
                    continue;
                }
                Standing::HeldByConsumer => {
                    counts.held_by_consumer += 1;
                    continue;
                }
                Standing::Unavailable => {
                    counts.unavailable += 1;
                    continue;
                }
                Standing::NoNetworkData => {
                    counts.no_network_data += 1;
                    continue;
                }
                Standing::Free => {}
            }
            let domain = match (spec.topology_key, c.domains[self.index]) {
                (Some(_), Some(d)) => Domain::Label(d),
                (Some(_), None) => {
                    counts.no_topology_label += 1;
                    continue;
                }
                (None, _) => Domain::Host(&host.key),
            };
            if !self.taken.is_empty() && self.taken.contains(&host.key) {
                counts.other_role += 1;
                continue;
            }
            eligible += 1;
            // Hashing a domain costs a read of its name: skip it when nothing is occupied.
            let occupied = |d: &str| !self.occupied.is_empty() && self.occupied.contains(d);
            if matches!(domain, Domain::Label(d) if occupied(d)) {
                continue;
            }
            let contested = self.other_wanted && c.matches[1 - self.index];
            offer(&mut best, need, (contested, domain), host);
        }

        let free = best.len();
        counts.free = free as u32;
        counts.blocked_by_topology = eligible - counts.free;
        let ordered: Vec<(bool, Domain<'a>, &HostView)> =
            best.into_iter().map(|((c, d), h)| (c, d, h)).collect();

        let picks = ordered
            .into_iter()
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
}

/// Offers a host to the bounded ranking of the best `capacity` domains.
fn offer<'a>(
    best: &mut BTreeMap<(bool, Domain<'a>), &'a HostView>,
    capacity: usize,
    rank: (bool, Domain<'a>),
    host: &'a HostView,
) {
    if capacity == 0 {
        return;
    }
    if best.len() == capacity
        && best
            .last_key_value()
            .is_some_and(|(worst, _)| rank > *worst)
    {
        return;
    }
    let (contested, domain) = rank;
    // A domain ranks by its best host: an uncontested host displaces a contested entry, and a
    // contested host never joins a domain that has an uncontested one.
    if contested {
        if best.contains_key(&(false, domain)) {
            return;
        }
    } else {
        best.remove(&(true, domain));
    }
    match best.get_mut(&rank) {
        Some(current) if current.key <= host.key => {}
        Some(current) => *current = host,
        None => {
            best.insert(rank, host);
            if best.len() > capacity {
                best.pop_last();
            }
        }
    }
}
