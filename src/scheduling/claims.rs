//! The hosts other SIPClusters' ledgers claim, and by whom: what Gathering must not choose.
//! One reading of the ledgers for the operator and for `kubectl sip plan`, so a plan counts
//! the claims exactly as the operator will.

use crate::api::SIPCluster;

use super::host::{ClusterKey, HostKey};

/// Every `(host, holder)` the ledgers of `clusters` other than `cluster` claim.
pub fn claims_of_others<'c>(
    clusters: impl IntoIterator<Item = &'c SIPCluster>,
    cluster: &ClusterKey,
) -> Vec<(HostKey, ClusterKey)> {
    clusters
        .into_iter()
        .filter_map(|c| {
            let namespace = c.metadata.namespace.as_deref().unwrap_or_default();
            let name = c.metadata.name.as_deref().unwrap_or_default();
            let other = namespace != cluster.namespace || name != cluster.name;
            Some((ClusterKey::new(namespace, name), c.status.as_ref()?)).filter(|_| other)
        })
        .flat_map(|(holder, status)| {
            status
                .hosts
                .iter()
                .filter(|r| r.state.claims())
                .map(move |r| (HostKey::of_record(r), holder.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HostRecord, HostState, NodeRole, SIPClusterStatus};

    fn cluster(namespace: &str, name: &str, hosts: &[(&str, HostState)]) -> SIPCluster {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some(namespace.into());
        c.status = Some(SIPClusterStatus {
            hosts: hosts
                .iter()
                .map(|(host, state)| HostRecord {
                    name: host.to_string(),
                    namespace: "metal3".into(),
                    uid: None,
                    role: NodeRole::Worker,
                    state: *state,
                    reason: None,
                    topology_domain: None,
                    addresses: Default::default(),
                    bmc_address: None,
                })
                .collect(),
            ..Default::default()
        });
        c
    }

    #[test]
    fn other_ledgers_claim_their_hosts_but_not_the_unusable_ones_nor_this_clusters() {
        let clusters = [
            cluster("a", "one", &[("h1", HostState::Chosen)]),
            cluster(
                "b",
                "one",
                &[("h2", HostState::Labeled), ("h3", HostState::Unusable)],
            ),
            cluster("a", "two", &[("h4", HostState::Releasing)]),
            SIPCluster::new("no-status", Default::default()),
        ];
        let me = ClusterKey::new("a", "one");
        let mut claims: Vec<(String, String)> = claims_of_others(&clusters, &me)
            .into_iter()
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect();
        claims.sort();
        assert_eq!(
            claims,
            [
                ("metal3/h2".to_string(), "b/one".to_string()),
                ("metal3/h4".to_string(), "a/two".to_string()),
            ]
        );
    }
}
