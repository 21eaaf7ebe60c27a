//! Extracting: each chosen host's address on every interface the services need and its BMC
//! details, from its Secrets; a host whose Secrets are missing or malformed is unusable. The
//! Secrets DeployingInfra renders from are read in the same round.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;

use crate::api::BareMetalHost;
use crate::controller::step::Step;
use crate::extraction::{
    self, ExtractionError, HostSecrets, InterfaceNeed, credentials_secret_ref,
    network_data_secret_ref, required_interfaces,
};
use crate::machine::Event;
use crate::scheduling::HostKey;

use super::Turn;
use super::io::overlapped;

/// A ledger host still to extract: its index in the ledger, the cached host, and why its
/// networkData is refused unread, if it is (a reference outside the host's namespace, unless
/// the operator allows those).
struct Pending {
    index: usize,
    host: Arc<BareMetalHost>,
    refused: Option<ExtractionError>,
}

impl Turn<'_> {
    pub async fn extract(&mut self) -> kube::Result<Step> {
        if let Some(contested) = self.confirm_claims().await? {
            return Ok(contested);
        }
        let needs = required_interfaces(&self.cluster.spec.services);
        let pending = match self.pending(&needs) {
            Ok(pending) => pending,
            Err(lost) => return Ok(lost),
        };
        let secrets = self.host_secrets(&pending).await?;
        let mut unusable = Vec::new();
        for (p, (nd, cr)) in pending.into_iter().zip(secrets) {
            let outcome = match p.refused {
                Some(e) => Err(e),
                None => extraction::extract(
                    &p.host,
                    &needs,
                    HostSecrets {
                        network_data: nd.as_ref(),
                        credentials: cr.as_ref(),
                    },
                ),
            };
            if let Err(e) = &outcome {
                unusable.push(e.to_string());
            }
            extraction::record_outcome(&mut self.status.hosts[p.index], &outcome);
        }
        if unusable.is_empty() {
            Ok(Step::go(
                Event::Done,
                "HostsExtracted",
                "addresses and BMC details read",
            ))
        } else {
            Ok(Step::trouble(
                Event::HostUnusable,
                "HostUnusable",
                unusable.join("; "),
            ))
        }
    }

    /// The Secrets this phase would read now (and DeployingInfra's), read and kept for the
    /// turn; nothing decided from them.
    pub(super) async fn read_for_extraction(&self) -> kube::Result<()> {
        let needs = required_interfaces(&self.cluster.spec.services);
        let Ok(pending) = self.pending(&needs) else {
            return Ok(());
        };
        self.host_secrets(&pending).await.map(drop)
    }

    /// The ledger's hosts still to extract, or the step when one of them is gone.
    fn pending(&self, needs: &[InterfaceNeed]) -> Result<Vec<Pending>, Step> {
        let allowed = self.ctx.network_data_any_namespace;
        let mut pending = Vec::new();
        for (index, record) in self.status.hosts.iter().enumerate() {
            if !extraction::needs_extraction(record, needs) {
                continue;
            }
            let key = HostKey::of_record(record);
            let host = self
                .ctx
                .hosts
                .get(&ObjectRef::new(key.name()).within(key.namespace()));
            let Some(host) = host else {
                return Err(Step::trouble(
                    Event::Regather,
                    "HostLost",
                    format!("host {key} is gone"),
                ));
            };
            let refused = (!allowed)
                .then(|| extraction::network_data_elsewhere(&host))
                .flatten();
            pending.push(Pending {
                index,
                host,
                refused,
            });
        }
        Ok(pending)
    }

    /// Each pending host's networkData and credentials Secrets (its networkData unread where
    /// it is refused).
    async fn host_secrets(
        &self,
        pending: &[Pending],
    ) -> kube::Result<Vec<(Option<Secret>, Option<Secret>)>> {
        // Each read waits a round trip and no read depends on another: they overlap, in order.
        let refs: Vec<_> = pending
            .iter()
            .flat_map(|p| {
                let network_data = network_data_secret_ref(&p.host).filter(|_| p.refused.is_none());
                [network_data, credentials_secret_ref(&p.host)]
            })
            .collect();
        // DeployingInfra, next in this turn once every host is usable, reads the Secrets the
        // spec names, the jump hosts' keys and what holds its new instances' names: read now,
        // beside these, they cost the turn no round trip of their own (the turn keeps what it
        // read; the status write between the two phases guards writes, not reads).
        let (read, _, _, ()) = futures::try_join!(
            overlapped(refs, |r| self.secret(r)),
            self.referenced_secrets(),
            self.host_keys(),
            self.read_names_ahead().map(Ok),
        )?;
        // Two per host, in order: its networkData, then its credentials.
        let mut read = read.into_iter();
        Ok(pending
            .iter()
            .map(|_| (read.next().flatten(), read.next().flatten()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::api::{BareMetalHost, HostRecord, HostState, SIPCluster};
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kube::api::ApiResource;

    use crate::controller::phases::{READ_FOR_THE_SERVICES, Turn, test_cluster};
    use crate::controller::testing::{Objects, context};
    use crate::extraction::tests::{ND_JSON, creds, host, secret};
    use crate::machine::Event;

    /// A cluster whose ledger holds `cp-1`, just chosen, with services on `oam-ipv4`.
    fn cluster() -> SIPCluster {
        test_cluster(HostState::Chosen)
    }

    fn both_secrets() -> Objects {
        Objects::default()
            .with_secret("metal3", "cp-1-nd", secret(&[("networkData", ND_JSON)]))
            .with_secret("metal3", "cp-1-bmc", creds())
    }

    /// One Extracting step on [`cluster`] with `hosts` cached: the story (reason, message,
    /// machine event), the ledger after it, and what was read.
    async fn extract(
        objects: Objects,
        hosts: Vec<BareMetalHost>,
    ) -> (Vec<String>, Vec<HostRecord>, Vec<String>) {
        let objects = Arc::new(objects);
        let (ctx, cluster) = (context(objects.clone(), hosts), cluster());
        let mut turn = Turn::new(&ctx, &cluster);
        let step = turn.extract().await.expect("no request reaches a server");
        let mut story = vec![step.reason.to_string(), step.message];
        story.extend(step.event.map(|e| format!("{e:?}")));
        (story, turn.status.hosts, objects.read())
    }

    #[tokio::test]
    async fn a_members_secrets_are_read_once_and_what_they_say_enters_the_ledger() {
        let objects = Arc::new(both_secrets());
        let ctx = context(objects.clone(), vec![host()]);
        let cluster = cluster();
        let mut turn = Turn::new(&ctx, &cluster);
        let step = turn.extract().await.unwrap();
        assert_eq!(
            (step.event, step.reason),
            (Some(Event::Done), "HostsExtracted")
        );
        let member = &turn.status.hosts[0];
        assert_eq!(member.state, HostState::Extracted);
        assert_eq!(member.addresses["oam-ipv4"], "192.168.100.11");
        assert_eq!(
            member.bmc_address.as_deref(),
            Some("redfish+https://10.23.0.11:8443/redfish/v1/Systems/1")
        );
        // Beside the member's two, what DeployingInfra, next in the turn, reads: the Secret the
        // spec names, the jump host's key (absent) and what holds its instances' names.
        let mut expected = vec!["Secret metal3/cp-1-nd", "Secret metal3/cp-1-bmc"];
        expected.extend(READ_FOR_THE_SERVICES);
        assert_eq!(objects.read(), expected);
        // Extracted: the same turn reads nothing again, and neither does its DeployingInfra.
        let again = turn.extract().await.unwrap();
        assert_eq!(again.event, Some(Event::Done));
        assert_eq!(objects.read(), expected);
        turn.referenced_secrets().await.unwrap();
        turn.host_keys().await.unwrap();
        for (kind, name) in [
            (ApiResource::erase::<Service>(&()), "tenant-a-lb-worker"),
            (
                ApiResource::erase::<Secret>(&()),
                "tenant-a-jump-host-host-key",
            ),
        ] {
            assert_eq!(turn.object_metadata(&kind, name).await.unwrap(), None);
        }
        assert_eq!(objects.read(), expected);
        // Once the turn writes under a name, what it read there is forgotten.
        turn.forget_name("Service", "tenant-a-lb-worker");
        let service = ApiResource::erase::<Service>(&());
        turn.object_metadata(&service, "tenant-a-lb-worker")
            .await
            .unwrap();
        turn.forget_name("Secret", "tenant-a-jump-host-host-key");
        turn.host_keys().await.unwrap();
        assert_eq!(
            objects.read()[expected.len()..],
            [
                "Service metadata sip/tenant-a-lb-worker",
                "Secret sip/tenant-a-jump-host-host-key"
            ]
        );
    }

    #[tokio::test]
    async fn a_member_without_its_network_data_is_unusable_and_named() {
        let objects = Objects::default().with_secret("metal3", "cp-1-bmc", creds());
        let (story, ledger, _) = extract(objects, vec![host()]).await;
        assert_eq!(story[0], "HostUnusable");
        assert!(story[1].contains("cp-1"), "{story:?}");
        assert!(story[1].contains("cp-1-nd"), "names the Secret: {story:?}");
        assert_eq!(story[2], "HostUnusable", "the machine event");
        assert_eq!(ledger[0].state, HostState::Unusable);
        assert!(!story[1].contains("s3cret-pw"));
    }

    #[tokio::test]
    async fn a_member_gone_from_the_cache_sends_the_cluster_back_to_gathering() {
        let (story, ledger, read) = extract(both_secrets(), Vec::new()).await;
        assert_eq!(story, ["HostLost", "host metal3/cp-1 is gone", "Regather"]);
        assert_eq!(ledger[0].state, HostState::Chosen, "unchanged");
        assert!(read.is_empty(), "{read:?}");
    }

    #[tokio::test]
    async fn network_data_in_another_namespace_is_refused_unread() {
        let mut elsewhere = host();
        elsewhere.spec.network_data.as_mut().unwrap().namespace = Some("kube-system".into());
        let objects = both_secrets().with_secret(
            "kube-system",
            "cp-1-nd",
            secret(&[("networkData", ND_JSON)]),
        );
        let (story, _, read) = extract(objects, vec![elsewhere]).await;
        assert_eq!(story[0], "HostUnusable");
        assert!(story[1].contains("kube-system"), "{story:?}");
        assert_eq!(read[0], "Secret metal3/cp-1-bmc");
        assert_eq!(
            read[1..],
            READ_FOR_THE_SERVICES,
            "of the member's, only the credentials"
        );
    }
}
