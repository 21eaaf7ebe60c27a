//! Hosts labeled for a cluster that its ledger does not name: what the Go predecessor leaves
//! behind (it kept no ledger). sip itself never makes one: a claim enters the ledger before
//! the host is labeled, and labels go before the record does. Such a host is taken into the
//! ledger as a member of the role its `node-type` label names, and then reviewed like every
//! member: kept while it matches the role and the topology rule, released (its labels
//! removed) when it does not or is surplus. So a migration keeps the tenant's hosts, and
//! nothing labeled for a cluster is left behind.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::BuildHasher;

use kube::core::{Selector, SelectorExt};

use crate::api::{HostRecord, HostState, LABEL_NODE_TYPE, NodeRole};

use super::choose::Inputs;
use super::host::{ClusterKey, HostView};

/// The reason an adopted host's record carries.
pub const ADOPTED: &str =
    "adopted: labeled for this SIPCluster before sip kept its ledger (airshipit/sip)";

/// The role a stray serves: the one its `node-type` label names; without a known one, the
/// first role whose selector matches it (else ControlPlane, where the review releases it).
fn role_of(host: &HostView, selectors: &[(NodeRole, Option<Selector>)]) -> NodeRole {
    match host.labels.get(LABEL_NODE_TYPE).map(String::as_str) {
        Some("ControlPlane") => NodeRole::ControlPlane,
        Some("Worker") => NodeRole::Worker,
        _ => selectors
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(|s| s.matches(&host.labels)))
            .map_or(NodeRole::ControlPlane, |(role, _)| *role),
    }
}

/// The hosts labeled for `cluster` that `ledger` lacks, in (namespace, name) order.
pub fn outside_ledger<'a, H: Borrow<HostView>>(
    cluster: &ClusterKey,
    ledger: &[HostRecord],
    hosts: &'a [H],
) -> Vec<&'a HostView> {
    let mut found: Vec<&HostView> = hosts
        .iter()
        .map(Borrow::borrow)
        .filter(|h| h.is_labeled_for(cluster))
        .filter(|h| {
            !ledger
                .iter()
                .any(|r| r.name == h.key.name() && r.namespace == h.key.namespace())
        })
        .collect();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

/// Ledger records for the hosts labeled for `inputs.cluster` that its ledger lacks, in
/// (role, namespace, name) order so the outcome never depends on the order of the hosts.
pub(super) fn strays<S: BuildHasher, H: Borrow<HostView>>(
    inputs: &Inputs<'_, S, H>,
) -> Vec<HostRecord> {
    let found = outside_ledger(inputs.cluster, inputs.ledger, inputs.hosts);
    if found.is_empty() {
        return Vec::new();
    }
    let selectors: Vec<(NodeRole, Option<Selector>)> = NodeRole::ALL
        .iter()
        .map(|role| {
            let selector = inputs
                .spec
                .nodes
                .get(role)
                .and_then(|set| Selector::try_from(set.label_selector.clone()).ok());
            (*role, selector)
        })
        .collect();
    let mut records: Vec<HostRecord> = found
        .into_iter()
        .map(|host| {
            let role = role_of(host, &selectors);
            let topology_key = inputs.spec.nodes.get(&role).and_then(|s| s.topology_key());
            HostRecord {
                name: host.key.name().to_string(),
                namespace: host.key.namespace().to_string(),
                uid: host.uid.clone(),
                role,
                state: HostState::Chosen,
                reason: Some(ADOPTED.to_string()),
                topology_domain: topology_key
                    .and_then(|k| host.domain(k))
                    .map(str::to_string),
                addresses: BTreeMap::new(),
                bmc_address: None,
            }
        })
        .collect();
    records.sort_by_key(|r| r.role);
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE};
    use crate::scheduling::tests::{HostBuilder, cluster, host, role, spec};

    #[test]
    fn strays_are_the_hosts_labeled_for_this_cluster_that_the_ledger_lacks() {
        let ours = |b: HostBuilder| {
            b.label(LABEL_CLUSTER_NAMESPACE, "tenant")
                .label(LABEL_CLUSTER_NAME, "cluster-a")
        };
        let hosts = vec![
            ours(host("wk-2").flavor("worker")).build(),
            ours(host("cp-1").flavor("cp"))
                .label(LABEL_NODE_TYPE, "ControlPlane")
                .build(),
            ours(host("in-ledger").flavor("cp")).build(),
            host("other")
                .flavor("cp")
                .label(LABEL_CLUSTER_NAMESPACE, "elsewhere")
                .label(LABEL_CLUSTER_NAME, "cluster-a")
                .build(),
            host("free").flavor("cp").build(),
        ];
        let s = spec(
            Some(role("cp", None, 1, 0)),
            Some(role("worker", None, 1, 0)),
        );
        let ledger = vec![HostRecord {
            name: "in-ledger".into(),
            namespace: "metal3".into(),
            uid: None,
            role: NodeRole::ControlPlane,
            state: HostState::Labeled,
            reason: None,
            topology_domain: None,
            addresses: BTreeMap::new(),
            bmc_address: None,
        }];
        let claims = std::collections::HashSet::new();
        let inputs = Inputs {
            cluster: &cluster(),
            spec: &s,
            ledger: &ledger,
            hosts: &hosts,
            claimed_elsewhere: &claims,
            claimable: None,
        };
        let found: Vec<(String, NodeRole)> = strays(&inputs)
            .into_iter()
            .map(|r| {
                assert_eq!(r.state, HostState::Chosen);
                assert_eq!(r.reason.as_deref(), Some(ADOPTED));
                (r.name, r.role)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("cp-1".to_string(), NodeRole::ControlPlane),
                // No node-type label: the role whose selector matches.
                ("wk-2".to_string(), NodeRole::Worker),
            ]
        );
    }

    #[test]
    fn a_strays_node_type_label_names_its_role_whatever_the_selectors_say() {
        let selector =
            |flavor: &str| Selector::try_from(role(flavor, None, 1, 0).label_selector).ok();
        let selectors = [
            (NodeRole::ControlPlane, selector("cp")),
            (NodeRole::Worker, selector("worker")),
        ];
        let typed = |flavor: &str, node_type: &str| {
            host("h")
                .flavor(flavor)
                .label(LABEL_NODE_TYPE, node_type)
                .build()
        };
        // Labeled by the predecessor as one role, matching only the other's selector.
        assert_eq!(
            role_of(&typed("worker", "ControlPlane"), &selectors),
            NodeRole::ControlPlane
        );
        assert_eq!(
            role_of(&typed("cp", "Worker"), &selectors),
            NodeRole::Worker
        );
        // An unknown node type: the first role whose selector matches, else ControlPlane.
        assert_eq!(
            role_of(&typed("worker", "Etcd"), &selectors),
            NodeRole::Worker
        );
        assert_eq!(
            role_of(&typed("gpu", "Etcd"), &selectors),
            NodeRole::ControlPlane
        );
    }
}
