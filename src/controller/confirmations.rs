//! Confirming a claim, for operators that share a pool of hosts: each serves its own
//! namespace's SIPClusters, and nothing orders their decisions. Two deciding at the same moment
//! on the same view choose the same host, and each writes the claim into its own cluster's
//! ledger, so no write conflicts. A claim is therefore confirmed after it is written and
//! before anything outside the ledger names the host (Extracting persists nothing until it
//! is): against the ledgers as they stood when it was written.
//!
//! The ledgers' watch brings every SIPCluster's writes in the order the API server made them,
//! so at the event of a cluster's own claim write the cache holds every claim written before
//! it and none after. A claim that meets a rival there came second, and yields: its cluster
//! chooses again. The first meets none and goes on; of two racing claims exactly one does.
//! Without that event (the operator restarted, the watch listed again, the event is late) a
//! LIST stands in: it holds every write up to the claim, and maybe a later rival's too; then
//! both yield and choose again, which is safe. Until a claim is confirmed its host is named
//! only in the ledger, so yielding it leaves nothing behind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{HostRecord, HostState, SIPCluster};
use crate::scheduling::{ClusterKey, HostKey, claims_of_others, holder};

/// Versions of each cluster whose rivals are remembered: the watch may bring a version before
/// the answer to the write that made it.
const VERSIONS_KEPT: usize = 4;

/// A host this cluster has just chosen that another cluster's ledger claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rival {
    pub host: HostKey,
    pub holder: ClusterKey,
}

/// A version of a cluster, and the rivals its claims met.
type Met = (String, Vec<Rival>);

/// For each cluster, the rivals its versions met as the watch brought them.
#[derive(Default)]
pub struct Confirmations {
    met: Mutex<HashMap<ClusterKey, VecDeque<Met>>>,
    arrived: tokio::sync::Notify,
}

impl Confirmations {
    /// The watch brought `cluster`; `cache` is every SIPCluster as of that event (the
    /// reflector has applied it, and nothing after it). Only a ledger holding hosts just
    /// chosen has anything to confirm.
    pub fn observe(&self, cluster: &SIPCluster, cache: &[Arc<SIPCluster>]) {
        let chosen = chosen(cluster.status.as_ref().map_or(&[], |s| &s.hosts[..]));
        let Some(version) = cluster.metadata.resource_version.clone() else {
            return;
        };
        if chosen.is_empty() {
            return;
        }
        let key = holder(cluster);
        let rivals = rivals_in(cache.iter().map(|c| &**c), &key, &chosen);
        let mut met = crate::sync::lock(&self.met);
        let versions = met.entry(key).or_default();
        if versions.len() == VERSIONS_KEPT {
            versions.pop_front();
        }
        versions.push_back((version, rivals));
        drop(met);
        self.arrived.notify_waiters();
    }

    /// The cluster is gone: nothing of it to confirm.
    pub fn forget(&self, cluster: &SIPCluster) {
        crate::sync::lock(&self.met).remove(&holder(cluster));
    }

    /// The watch lists again: a cluster deleted while it was away brings no deletion, so
    /// everything goes and the list's end confirms again what it holds.
    pub fn forget_all(&self) {
        crate::sync::lock(&self.met).clear();
    }

    /// The rivals `version` of `cluster` met when the watch brought it, waiting up to `wait`
    /// for that event; `None`: it did not come (the caller reads instead).
    pub async fn rivals(
        &self,
        cluster: &ClusterKey,
        version: &str,
        wait: Duration,
    ) -> Option<Vec<Rival>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an event in between still wakes this wait.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let found = crate::sync::lock(&self.met)
                .get(cluster)
                .and_then(|versions| {
                    versions
                        .iter()
                        .find(|(v, _)| v == version)
                        .map(|(_, rivals)| rivals.clone())
                });
            if found.is_some() {
                return found;
            }
            tokio::time::timeout_at(deadline, arrived).await.ok()?;
        }
    }
}

/// The hosts a ledger has chosen and not yet confirmed.
pub fn chosen(ledger: &[HostRecord]) -> HashSet<HostKey> {
    ledger
        .iter()
        .filter(|r| r.state == HostState::Chosen)
        .map(HostKey::of_record)
        .collect()
}

/// The hosts of `chosen` that the ledgers of `clusters` other than `cluster` claim, and whose.
pub fn rivals_in<'c>(
    clusters: impl IntoIterator<Item = &'c SIPCluster>,
    cluster: &ClusterKey,
    chosen: &HashSet<HostKey>,
) -> Vec<Rival> {
    claims_of_others(clusters, cluster)
        .map(|(record, holding)| (HostKey::of_record(record), holding))
        .filter(|(host, _)| chosen.contains(host))
        .map(|(host, holding)| Rival {
            host,
            holder: holder(holding),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SIPClusterStatus;
    use crate::controller::phases::test_record as record;

    fn cluster(name: &str, version: &str, hosts: &[(&str, HostState)]) -> Arc<SIPCluster> {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some("sip".into());
        c.metadata.resource_version = Some(version.into());
        c.status = Some(SIPClusterStatus {
            hosts: hosts.iter().map(|(h, s)| record(h, *s)).collect(),
            ..Default::default()
        });
        Arc::new(c)
    }

    fn key(name: &str) -> ClusterKey {
        ClusterKey::new("sip", name)
    }

    const NOW: Duration = Duration::ZERO;

    #[tokio::test]
    async fn a_claim_meets_the_claims_written_before_it_and_whose_they_are() {
        let confirmations = Confirmations::default();
        let first = cluster("first", "5", &[("h1", HostState::Extracted)]);
        let second = cluster(
            "second",
            "6",
            &[("h1", HostState::Chosen), ("h2", HostState::Chosen)],
        );
        confirmations.observe(&second, &[first.clone(), second.clone()]);
        let rivals = confirmations.rivals(&key("second"), "6", NOW).await;
        assert_eq!(
            rivals,
            Some(vec![Rival {
                host: HostKey::new("metal3", "h1"),
                holder: key("first"),
            }])
        );
    }

    #[tokio::test]
    async fn a_claim_alone_in_the_cache_meets_no_rival_and_unusable_records_are_none() {
        let confirmations = Confirmations::default();
        let other = cluster("other", "3", &[("h1", HostState::Unusable)]);
        let me = cluster("me", "4", &[("h1", HostState::Chosen)]);
        confirmations.observe(&me, &[other, me.clone()]);
        assert_eq!(
            confirmations.rivals(&key("me"), "4", NOW).await,
            Some(vec![])
        );
    }

    #[tokio::test]
    async fn only_the_version_asked_for_answers_and_a_ledger_without_choices_is_not_kept() {
        let confirmations = Confirmations::default();
        let settled = cluster("me", "2", &[("h1", HostState::Labeled)]);
        confirmations.observe(&settled, std::slice::from_ref(&settled));
        assert_eq!(confirmations.rivals(&key("me"), "2", NOW).await, None);
        let me = cluster("me", "4", &[("h1", HostState::Chosen)]);
        confirmations.observe(&me, std::slice::from_ref(&me));
        assert_eq!(confirmations.rivals(&key("me"), "3", NOW).await, None);
        confirmations.forget(&me);
        assert_eq!(confirmations.rivals(&key("me"), "4", NOW).await, None);
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_watch_brings_the_version() {
        let confirmations = Arc::new(Confirmations::default());
        let waiting = {
            let confirmations = confirmations.clone();
            tokio::spawn(async move {
                confirmations
                    .rivals(&key("me"), "9", Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        let me = cluster("me", "9", &[("h1", HostState::Chosen)]);
        confirmations.observe(&me, std::slice::from_ref(&me));
        let rivals = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the event")
            .unwrap();
        assert_eq!(rivals, Some(vec![]));
    }

    #[tokio::test]
    async fn a_relist_forgets_the_clusters_it_may_not_bring_back() {
        let confirmations = Confirmations::default();
        let gone = cluster("gone", "3", &[("h1", HostState::Chosen)]);
        confirmations.observe(&gone, std::slice::from_ref(&gone));
        confirmations.forget_all();
        assert_eq!(confirmations.rivals(&key("gone"), "3", NOW).await, None);
        assert!(crate::sync::lock(&confirmations.met).is_empty());
    }

    #[test]
    fn only_recent_versions_are_kept() {
        let confirmations = Confirmations::default();
        for v in 0..=VERSIONS_KEPT {
            let me = cluster("me", &v.to_string(), &[("h1", HostState::Chosen)]);
            confirmations.observe(&me, std::slice::from_ref(&me));
        }
        let met = crate::sync::lock(&confirmations.met);
        let versions: Vec<&str> = met[&key("me")].iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(versions, ["1", "2", "3", "4"]);
    }
}
