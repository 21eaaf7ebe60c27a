//! `kubectl sip plan`: what Gathering would decide for a SIPCluster on the hosts and ledgers as
//! they are now: the operator's own `scheduling::schedule`, given what the operator gives it.
//! Deterministic, so when nothing changes in between, the operator then claims exactly this.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;

use crate::api::{NodeRole, SIPCluster};
use crate::scheduling::{
    ClusterKey, Counts, Decision, HostKey, HostView, Inputs, claims_of_others, holder, schedule,
};

use super::Inventory;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub cluster: String,
    pub schedulable: bool,
    pub roles: Vec<RolePlan>,
    /// Hosts labeled for the cluster that its ledger lacks (left by the predecessor).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolePlan {
    pub role: NodeRole,
    pub wanted: u32,
    pub keep: Vec<HostLine>,
    pub add: Vec<HostLine>,
    pub release: Vec<HostLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<Blocked>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostLine {
    /// `namespace/name`.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub reason: String,
}

/// Why a role cannot have what it wants: the operator's `Unschedulable` reason and its counts,
/// and who holds the matching hosts it cannot take.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub message: String,
    pub have: u32,
    pub addable: u32,
    pub counts: Counts,
    pub held: Vec<Held>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Held {
    pub host: String,
    /// `SIPCluster ns/name (ledger)`, `SIPCluster ns/name (labels)` or the consumer.
    pub by: String,
}

/// The plan for `cluster` (its ledger is its status, empty for a new one), with the hosts of
/// `inventory` and the claims of every other SIPCluster in it. `claimable`: what the
/// operator's `--claimable-hosts` gives the cluster's namespace.
pub fn plan(
    inventory: &Inventory,
    cluster: &SIPCluster,
    claimable: Option<&BTreeSet<String>>,
) -> Plan {
    let key = ClusterKey::new(cluster.namespace().unwrap_or_default(), cluster.name_any());
    let holders: BTreeMap<HostKey, ClusterKey> = claims_of_others(&inventory.clusters, &key)
        .map(|(record, c)| (HostKey::of_record(record), holder(c)))
        .collect();
    let claimed: HashSet<HostKey> = holders.keys().cloned().collect();
    let hosts = inventory.views();
    let ledger = cluster
        .status
        .as_ref()
        .map(|s| s.hosts.as_slice())
        .unwrap_or_default();
    let decision = schedule(&Inputs {
        cluster: &key,
        spec: &cluster.spec,
        ledger,
        hosts: &hosts,
        claimed_elsewhere: &claimed,
        claimable,
    });
    let domains: BTreeMap<HostKey, Option<String>> = ledger
        .iter()
        .map(|r| (HostKey::of_record(r), r.topology_domain.clone()))
        .collect();
    let held = Holders {
        cluster: &key,
        hosts: &hosts,
        ledgers: &holders,
    };
    Plan {
        cluster: key.to_string(),
        schedulable: decision.is_schedulable(),
        roles: role_plans(&decision, cluster, &domains, &held),
        adopted: decision
            .adopted
            .iter()
            .map(|r| format!("{}/{} ({})", r.namespace, r.name, r.role.as_str()))
            .collect(),
    }
}

/// Who holds the hosts a cluster cannot take.
struct Holders<'a> {
    cluster: &'a ClusterKey,
    hosts: &'a [HostView],
    ledgers: &'a BTreeMap<HostKey, ClusterKey>,
}

impl Holders<'_> {
    /// The hosts `selector` matches that another SIPCluster or consumer holds, and by whom.
    fn matching(&self, selector: Option<&Selector>) -> Vec<Held> {
        let Some(selector) = selector else {
            return Vec::new();
        };
        self.hosts
            .iter()
            .filter(|h| selector.matches(&h.labels))
            .filter_map(|h| {
                let by = if let Some(c) = self.ledgers.get(&h.key) {
                    format!("SIPCluster {c} (ledger)")
                } else if h.labeled_for_other(self.cluster) {
                    format!("SIPCluster {} (labels)", h.labeled_for()?)
                } else {
                    h.consumer.clone()?
                };
                Some(Held {
                    host: h.key.to_string(),
                    by,
                })
            })
            .collect()
    }
}

fn role_plans(
    decision: &Decision,
    cluster: &SIPCluster,
    domains: &BTreeMap<HostKey, Option<String>>,
    held: &Holders<'_>,
) -> Vec<RolePlan> {
    decision
        .roles
        .iter()
        .map(|(role, r)| {
            let set = cluster.spec.nodes.get(role);
            let key = set.and_then(|s| s.topology_key());
            let selector = set.and_then(|s| Selector::try_from(s.label_selector.clone()).ok());
            let domain_of = |k: &HostKey| domains.get(k).cloned().flatten();
            RolePlan {
                role: *role,
                wanted: r.wanted,
                keep: r
                    .keep
                    .iter()
                    .map(|k| line(k, domain_of(k), "a member that still fits".into()))
                    .collect(),
                add: r
                    .add
                    .iter()
                    .map(|p| {
                        let why = match (&p.domain, key) {
                            (Some(d), Some(key)) => format!("free; {key}={d} unused by the role"),
                            _ => "free".into(),
                        };
                        line(&p.key, p.domain.clone(), why)
                    })
                    .collect(),
                release: r
                    .release
                    .iter()
                    .map(|x| line(&x.key, domain_of(&x.key), x.reason.to_string()))
                    .collect(),
                unschedulable: r.shortfall.as_ref().map(|s| Blocked {
                    message: s.to_string(),
                    have: s.have,
                    addable: s.addable,
                    counts: s.counts.clone(),
                    held: held.matching(selector.as_ref()),
                }),
            }
        })
        .collect()
}

fn line(key: &HostKey, domain: Option<String>, reason: String) -> HostLine {
    HostLine {
        host: key.to_string(),
        domain,
        reason,
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (adds, releases) = self.roles.iter().fold((0, 0), |(a, r), role| {
            (a + role.add.len(), r + role.release.len())
        });
        if self.schedulable {
            writeln!(
                f,
                "SIPCluster {}: the pool satisfies it ({adds} to add, {releases} to release)",
                self.cluster
            )?;
        } else {
            writeln!(
                f,
                "SIPCluster {}: the pool cannot satisfy it; nothing would be claimed",
                self.cluster
            )?;
        }
        let mut table = vec![["ROLE", "ACTION", "HOST", "DOMAIN", "WHY"].map(String::from)];
        for role in &self.roles {
            for (action, lines) in [
                ("keep", &role.keep),
                ("add", &role.add),
                ("release", &role.release),
            ] {
                for l in lines {
                    table.push([
                        role.role.as_str().into(),
                        action.into(),
                        l.host.clone(),
                        l.domain.clone().unwrap_or_else(|| "-".into()),
                        l.reason.clone(),
                    ]);
                }
            }
        }
        if table.len() > 1 {
            f.write_str(&columns(&table))?;
        }
        for a in &self.adopted {
            writeln!(
                f,
                "adopt {a}: labeled for this SIPCluster by its predecessor"
            )?;
        }
        for role in &self.roles {
            let Some(b) = &role.unschedulable else {
                continue;
            };
            writeln!(f, "{}", b.message)?;
            for h in &b.held {
                writeln!(f, "  {} is held by {}", h.host, h.by)?;
            }
        }
        Ok(())
    }
}

/// Rows as aligned columns, two spaces apart, as kubectl prints its tables.
pub(super) fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
