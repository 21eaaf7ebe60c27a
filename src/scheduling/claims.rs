//! The hosts other SIPClusters' ledgers claim, and by whom: what Gathering must not choose.
//! One reading of the ledgers for the operator and for `kubectl sip plan`, so a plan counts
//! the claims exactly as the operator will.

use crate::api::{HostRecord, SIPCluster};

use super::host::ClusterKey;

/// Every claim in the ledgers of `clusters` other than `cluster`: the record and the cluster
/// whose ledger holds it. Borrowed, so Gathering builds nothing but the host keys it keeps.
pub fn claims_of_others<'c, I>(
    clusters: I,
    cluster: &ClusterKey,
) -> impl Iterator<Item = (&'c HostRecord, &'c SIPCluster)>
where
    I: IntoIterator<Item = &'c SIPCluster>,
{
    clusters
        .into_iter()
        .filter(move |c| {
            c.metadata.namespace.as_deref().unwrap_or_default() != cluster.namespace
                || c.metadata.name.as_deref().unwrap_or_default() != cluster.name
        })
        .flat_map(|c| {
            c.status
                .iter()
                .flat_map(|s| &s.hosts)
                .filter(|r| r.state.claims())
                .map(move |r| (r, c))
        })
}

/// The key of the cluster holding a claim, as its labels would name it.
pub fn holder(cluster: &SIPCluster) -> ClusterKey {
    ClusterKey::new(
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
        cluster.metadata.name.as_deref().unwrap_or_default(),
    )
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
            .map(|(r, c)| (format!("{}/{}", r.namespace, r.name), holder(c).to_string()))
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
