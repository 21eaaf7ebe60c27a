//! A cluster seen for the first time waits a round trip for its finalizer. What its first
//! phases read does not depend on that write, so it is read meanwhile: the ledgers when their
//! cache cannot serve, the Secrets Extracting and DeployingInfra read for the hosts Gathering
//! would choose, and what holds the names of the services' objects. Reads only: the turn that
//! follows chooses again (the cache may have moved since) and reads whatever this missed.

use crate::api::{Phase, SIPCluster};
use crate::controller::Context;
use crate::machine::Event;

use super::{Prefetched, Turn};

impl Prefetched {
    /// What the first turn on `cluster` (as the watch brought it) will read, read now. Only a
    /// failed read of the ledgers fails it: a Secret's is left for the turn to read and report.
    pub async fn read(ctx: &Context, cluster: &SIPCluster) -> kube::Result<Prefetched> {
        let mut early = Turn::new(ctx, cluster);
        let ledgers = if ctx.ledgers.caught_up_but(&early.key) {
            None
        } else {
            Some(ctx.reads.clusters().await?)
        };
        early.seen().ledgers = ledgers.clone();
        if let Err(e) = early.read_ahead().await {
            tracing::debug!(error = %e, "reading ahead of the finalizer");
        }
        let mut seen = early.seen.into_inner().unwrap_or_else(|e| e.into_inner());
        seen.ledgers = ledgers;
        Ok(Prefetched(seen))
    }

    /// Every SIPCluster as just read (`None`: the cache serves), and nothing else.
    #[cfg(test)]
    pub fn ledgers(ledgers: Option<Vec<SIPCluster>>) -> Self {
        let mut prefetched = Prefetched::default();
        prefetched.0.ledgers = ledgers;
        prefetched
    }
}

impl Turn<'_> {
    async fn read_ahead(&mut self) -> kube::Result<()> {
        if self.status.phase.unwrap_or_default() != Phase::Gathering {
            return Ok(());
        }
        if self.gather().await?.event != Some(Event::Done) {
            return Ok(());
        }
        self.read_for_extraction().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::HostState;
    use crate::controller::testing::{Objects, context};
    use crate::extraction::tests::{ND_JSON, creds, host, secret, services};
    use crate::scheduling::tests::{FLAVOR, role, spec};

    /// A new cluster that wants one worker, `cp-1` the only host, its Secrets in place.
    fn new_cluster() -> (SIPCluster, crate::api::BareMetalHost, Objects) {
        let mut cluster = SIPCluster::new(
            "tenant-a",
            crate::api::SIPClusterSpec {
                services: services("oam-ipv4", "oam-ipv4"),
                ..spec(None, Some(role("worker", None, 1, 0)))
            },
        );
        cluster.metadata.namespace = Some("sip".into());
        let mut wk = host();
        wk.metadata.labels = Some([(FLAVOR.to_string(), "worker".to_string())].into());
        let objects = Objects::default()
            .with_secret("metal3", "cp-1-nd", secret(&[("networkData", ND_JSON)]))
            .with_secret("metal3", "cp-1-bmc", creds());
        (cluster, wk, objects)
    }

    #[tokio::test]
    async fn the_first_turn_finds_read_what_its_first_phases_need() {
        let (cluster, wk, objects) = new_cluster();
        let objects = Arc::new(objects);
        let ctx = context(objects.clone(), vec![wk]);
        let prefetched = Prefetched::read(&ctx, &cluster).await.unwrap();
        let ahead = objects.read();
        let mut expected = vec!["Secret metal3/cp-1-nd", "Secret metal3/cp-1-bmc"];
        expected.extend(super::super::READ_FOR_THE_SERVICES);
        assert_eq!(
            ahead, expected,
            "the chosen host's Secrets and DeployingInfra's"
        );
        // The turn that follows chooses on its own and reads nothing again.
        let mut turn = Turn::new(&ctx, &cluster).with_prefetched(prefetched);
        assert_eq!(turn.gather().await.unwrap().event, Some(Event::Done));
        assert_eq!(turn.extract().await.unwrap().event, Some(Event::Done));
        assert_eq!(turn.status.hosts[0].state, HostState::Extracted);
        turn.referenced_secrets().await.unwrap();
        turn.host_keys().await.unwrap();
        assert_eq!(objects.read(), ahead);
    }

    #[tokio::test]
    async fn nothing_is_read_ahead_for_a_cluster_past_gathering_or_one_that_cannot_choose() {
        let (cluster, wk, objects) = new_cluster();
        let objects = Arc::new(objects);
        let ctx = context(objects.clone(), vec![wk]);
        let mut ready = cluster.clone();
        ready.status = Some(crate::api::SIPClusterStatus {
            phase: Some(Phase::Ready),
            ..Default::default()
        });
        Prefetched::read(&ctx, &ready).await.unwrap();
        assert!(objects.read().is_empty(), "{:?}", objects.read());
        let none = context(objects.clone(), vec![]);
        Prefetched::read(&none, &cluster).await.unwrap();
        assert!(objects.read().is_empty(), "{:?}", objects.read());
    }
}
