//! Before Extracting: the hosts just chosen are confirmed when other operators may choose from
//! the same pool (`confirmations.rs`); a claim that came second yields, and the cluster
//! chooses again.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::api::HostState;
use crate::controller::confirmations::{Rival, chosen, rivals_in};
use crate::controller::step::Step;
use crate::machine::Event;

use super::Turn;

/// How long the watch may take to bring the claim write before a LIST stands in (at most a
/// quarter of the turn's time limit, so a slow watch never costs the turn). The watch brings
/// it in milliseconds; a LIST costs a read of every SIPCluster.
const WATCH_WAIT: Duration = Duration::from_secs(1);

impl Turn<'_> {
    /// Whether the ledger holds claims to confirm before Extracting: the advance loop
    /// writes them first ([`Turn::claims_version`]).
    pub fn claims_to_confirm(&self) -> bool {
        self.ctx.ledgers.confirmations.is_some()
            && self
                .status
                .hosts
                .iter()
                .any(|r| r.state == HostState::Chosen)
    }

    /// `None`: every chosen host is this cluster's alone; else the step that yields them.
    pub(super) async fn confirm_claims(&mut self) -> kube::Result<Option<Step>> {
        let Some(confirmations) = &self.ctx.ledgers.confirmations else {
            return Ok(None);
        };
        let chosen = chosen(&self.status.hosts);
        if chosen.is_empty() {
            return Ok(None);
        }
        let met = match &self.claims_version {
            Some(version) => {
                let wait = WATCH_WAIT.min(self.ctx.turn_limit / 4);
                confirmations.rivals(&self.key, version, wait).await
            }
            None => None,
        };
        let rivals = match met {
            Some(rivals) => rivals,
            None => {
                tracing::debug!("the claim's own event did not come: listing the ledgers");
                let read = self.ctx.reads.clusters().await?;
                rivals_in(read.iter(), &self.key, &chosen)
            }
        };
        if rivals.is_empty() {
            return Ok(None);
        }
        // All or nothing, as Gathering chose: every host just chosen goes back.
        self.status.hosts.retain(|r| r.state != HostState::Chosen);
        Ok(Some(Step::trouble(
            Event::Regather,
            "HostsContested",
            contested(&rivals),
        )))
    }
}

/// What the story says: which hosts another cluster claimed first, and whose.
fn contested(rivals: &[Rival]) -> String {
    let named: BTreeSet<String> = rivals
        .iter()
        .map(|r| format!("{} (held by {})", r.host, r.holder))
        .collect();
    format!(
        "chosen at the same moment by another cluster, which claimed first: {}; \
         choosing again (another operator chooses from the same hosts)",
        named.into_iter().collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::runtime::watcher;

    use crate::api::{HostState, SIPCluster};
    use crate::controller::ledgers::Ledgers;
    use crate::controller::phases::{Turn, test_cluster, test_record as record};
    use crate::controller::testing::{Objects, context};
    use crate::extraction::tests::{ND_JSON, creds, host, secret};
    use crate::machine::Event;

    /// This operator's cluster, `sip/tenant-a`, having just written its choice of `cp-1` as
    /// version 7.
    fn mine() -> SIPCluster {
        let mut c = test_cluster(HostState::Chosen);
        c.metadata.resource_version = Some("7".into());
        c
    }

    /// Another operator's cluster, whose ledger holds `cp-1`.
    fn rival() -> SIPCluster {
        let mut c = SIPCluster::new("tenant-b", Default::default());
        c.metadata.namespace = Some("other".into());
        c.metadata.resource_version = Some("6".into());
        c.status = Some(crate::api::SIPClusterStatus {
            hosts: vec![record("cp-1", HostState::Extracted)],
            ..Default::default()
        });
        c
    }

    /// The Extracting step of [`mine`] in a pool shared with other operators, where the
    /// ledgers' cache holds `cached` when the watch brings version 7 (unless `event` is
    /// false), and a LIST answers `listed`; the step's reason, message and event, the ledger
    /// after it, and what was read.
    async fn extract(
        cached: Vec<SIPCluster>,
        event: bool,
        listed: Vec<SIPCluster>,
    ) -> (Vec<String>, Vec<crate::api::HostRecord>, Vec<String>) {
        let objects = Arc::new(
            Objects::default()
                .with_secret("metal3", "cp-1-nd", secret(&[("networkData", ND_JSON)]))
                .with_secret("metal3", "cp-1-bmc", creds())
                .with_cached_clusters(cached)
                .with_clusters(listed),
        );
        let mut ctx = context(objects.clone(), vec![host()]);
        ctx.ledgers = Arc::new(Ledgers::confirming(ctx.ledgers.store.clone()));
        let cluster = mine();
        if event {
            ctx.ledgers.observe(&watcher::Event::Apply(cluster.clone()));
        }
        let mut turn = Turn::new(&ctx, &cluster);
        turn.claims_version = event.then(|| "7".to_string());
        let step = turn.extract().await.expect("no request reaches a server");
        let mut story = vec![step.reason.to_string(), step.message];
        story.extend(step.event.map(|e| format!("{e:?}")));
        (story, turn.status.hosts, objects.read())
    }

    #[tokio::test]
    async fn a_claim_that_came_second_yields_and_the_cluster_chooses_again() {
        let (story, ledger, read) = extract(vec![rival(), mine()], true, vec![]).await;
        assert_eq!(story[0], "HostsContested");
        assert_eq!(story[2], format!("{:?}", Event::Regather));
        assert!(
            story[1].contains("metal3/cp-1 (held by other/tenant-b)"),
            "names the host and its holder: {}",
            story[1]
        );
        assert!(ledger.is_empty(), "the choice goes back: {ledger:?}");
        assert!(read.is_empty(), "the watch's event answered: {read:?}");
    }

    #[tokio::test]
    async fn a_claim_that_met_no_rival_is_extracted() {
        let (story, ledger, read) = extract(vec![mine()], true, vec![rival()]).await;
        assert_eq!(story[0], "HostsExtracted", "{story:?}");
        assert_eq!(ledger[0].state, HostState::Extracted);
        assert!(
            !read.contains(&"clusters".to_string()),
            "a later rival in a LIST is not asked about: {read:?}"
        );
    }

    #[tokio::test]
    async fn without_the_claims_event_a_list_confirms() {
        let (story, ledger, read) = extract(vec![mine()], false, vec![rival(), mine()]).await;
        assert_eq!(story[0], "HostsContested", "{story:?}");
        assert!(ledger.is_empty());
        assert_eq!(read, ["clusters"]);
        let (story, _, read) = extract(vec![], false, vec![mine()]).await;
        assert_eq!(story[0], "HostsExtracted", "{story:?}");
        assert_eq!(read[0], "clusters");
    }

    #[tokio::test]
    async fn an_operator_alone_with_its_pool_confirms_nothing() {
        let objects = Arc::new(
            Objects::default()
                .with_secret("metal3", "cp-1-nd", secret(&[("networkData", ND_JSON)]))
                .with_secret("metal3", "cp-1-bmc", creds())
                .with_clusters(vec![rival(), mine()]),
        );
        let ctx = context(objects.clone(), vec![host()]);
        let cluster = mine();
        let mut turn = Turn::new(&ctx, &cluster);
        assert!(!turn.claims_to_confirm());
        let step = turn.extract().await.unwrap();
        assert_eq!(step.reason, "HostsExtracted");
        assert!(!objects.read().contains(&"clusters".to_string()));
    }
}
