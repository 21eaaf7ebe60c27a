//! `kubectl sip hosts`: the inventory by flavor and topology domain, each host free, claimed
//! (by which SIPCluster, in which role) or unusable (and why), read the way Gathering reads it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::{HostState, LABEL_NODE_TYPE};
use crate::scheduling::{ClusterKey, HostKey, HostView};

use super::Inventory;
use super::plan::columns;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Standing {
    Free,
    Claimed {
        cluster: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// What would make the member leave: deleting, paused, errored.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Unusable {
        why: String,
    },
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostRow {
    pub host: String,
    pub flavor: Option<String>,
    pub domain: Option<String>,
    #[serde(flatten)]
    pub standing: Standing,
}

/// Each host of `inventory` as a row, sorted by flavor, domain and host; the flavor and domain
/// are the values of the labels `flavor_label` and `domain_label`.
pub fn rows(inventory: &Inventory, flavor_label: &str, domain_label: &str) -> Vec<HostRow> {
    // Every ledger record of every cluster, by host: claims and the unusable marks.
    let mut records: BTreeMap<HostKey, Vec<(ClusterKey, &crate::api::HostRecord)>> =
        BTreeMap::new();
    for c in &inventory.clusters {
        let key = ClusterKey::new(
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        );
        for r in c.status.iter().flat_map(|s| &s.hosts) {
            records
                .entry(HostKey::of_record(r))
                .or_default()
                .push((key.clone(), r));
        }
    }
    let mut rows: Vec<HostRow> = inventory
        .hosts
        .iter()
        .map(|host| {
            let view = HostView::from_host(host);
            let label = |k: &str| view.labels.get(k).filter(|v| !v.is_empty()).cloned();
            let of_host = records
                .get(&view.key)
                .map(Vec::as_slice)
                .unwrap_or_default();
            HostRow {
                host: view.key.to_string(),
                flavor: label(flavor_label),
                domain: label(domain_label),
                standing: standing(&view, of_host),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.flavor, &a.domain, &a.host).cmp(&(&b.flavor, &b.domain, &b.host)));
    rows
}

fn standing(view: &HostView, records: &[(ClusterKey, &crate::api::HostRecord)]) -> Standing {
    let out_of_service = out_of_service(view);
    let claim = records.iter().find(|(_, r)| r.state.claims());
    if let Some((cluster, record)) = claim {
        return Standing::Claimed {
            cluster: cluster.to_string(),
            role: Some(record.role.as_str().into()),
            note: out_of_service,
        };
    }
    if let Some(cluster) = view.labeled_for() {
        return Standing::Claimed {
            cluster: cluster.to_string(),
            role: view.labels.get(LABEL_NODE_TYPE).cloned(),
            note: Some(out_of_service.unwrap_or_else(|| "labeled, in no ledger".into())),
        };
    }
    let why = out_of_service
        .or_else(|| {
            view.consumer
                .as_ref()
                .map(|c| format!("held by {c} (spec.consumerRef)"))
        })
        .or_else(|| {
            (!view.has_network_data)
                .then(|| "no spec.networkData: name the host's network data Secret".into())
        })
        .or_else(|| {
            records
                .iter()
                .find(|(_, r)| r.state == HostState::Unusable)
                .map(|(c, r)| {
                    let reason = r.reason.as_deref().unwrap_or("no reason recorded");
                    format!("SIPCluster {c} found it unusable: {reason}")
                })
        });
    match why {
        Some(why) => Standing::Unusable { why },
        None => Standing::Free,
    }
}

/// Why metal3 or a person has taken the host out of service, if they have.
fn out_of_service(view: &HostView) -> Option<String> {
    let reasons: Vec<&str> = [
        (view.deleting, "being deleted"),
        (view.paused, "paused (baremetalhost.metal3.io/paused)"),
        (view.errored, "in error"),
        (view.unhealthy, "marked unhealthy"),
    ]
    .into_iter()
    .filter_map(|(is, what)| is.then_some(what))
    .collect();
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

/// The table `kubectl sip hosts` prints, and a count per flavor.
pub fn table(rows: &[HostRow]) -> String {
    let mut table = vec![["HOST", "FLAVOR", "DOMAIN", "STATE", "CLUSTER / WHY"].map(String::from)];
    let mut per_flavor: BTreeMap<&str, [u32; 3]> = BTreeMap::new();
    for row in rows {
        let flavor = row.flavor.as_deref().unwrap_or("-");
        let counts = per_flavor.entry(flavor).or_default();
        let (state, detail) = match &row.standing {
            Standing::Free => {
                counts[0] += 1;
                ("free", String::new())
            }
            Standing::Claimed {
                cluster,
                role,
                note,
            } => {
                counts[1] += 1;
                let mut d = cluster.clone();
                if let Some(r) = role {
                    d.push_str(&format!(" ({r})"));
                }
                if let Some(n) = note {
                    d.push_str(&format!("; {n}"));
                }
                ("claimed", d)
            }
            Standing::Unusable { why } => {
                counts[2] += 1;
                ("unusable", why.clone())
            }
        };
        table.push([
            row.host.clone(),
            flavor.into(),
            row.domain.clone().unwrap_or_else(|| "-".into()),
            state.into(),
            detail,
        ]);
    }
    let mut out = columns(&table);
    for (flavor, [free, claimed, unusable]) in per_flavor {
        out.push_str(&format!(
            "{flavor}: {free} free, {claimed} claimed, {unusable} unusable\n"
        ));
    }
    out
}
