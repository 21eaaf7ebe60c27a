//! Extracting: each chosen host's address on every interface the services need and its BMC
//! details, from its Secrets; a host whose Secrets are missing or malformed is unusable.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;

use crate::controller::step::Step;
use crate::extraction::{
    self, HostSecrets, credentials_secret_ref, network_data_secret_ref, required_interfaces,
};
use crate::machine::Event;
use crate::scheduling::HostKey;

use super::Turn;
use super::io::overlapped;

impl Turn<'_> {
    pub async fn extract(&mut self) -> kube::Result<Step> {
        let needs = required_interfaces(&self.cluster.spec.services);
        let mut pending = Vec::new();
        for (i, record) in self.status.hosts.iter().enumerate() {
            if !extraction::needs_extraction(record, &needs) {
                continue;
            }
            let key = HostKey::of_record(record);
            let host = self
                .ctx
                .hosts
                .get(&ObjectRef::new(key.name()).within(key.namespace()));
            let Some(host) = host else {
                return Ok(Step::trouble(
                    Event::Regather,
                    "HostLost",
                    format!("host {key} is gone"),
                ));
            };
            pending.push((i, host));
        }
        // A networkData reference outside the host's namespace is refused unread.
        let refused: Vec<_> = pending
            .iter()
            .map(|(_, host)| {
                let allowed = self.ctx.network_data_any_namespace;
                (!allowed)
                    .then(|| extraction::network_data_elsewhere(host))
                    .flatten()
            })
            .collect();
        // Each read waits a round trip and no read depends on another: they overlap, in order.
        let refs: Vec<_> = pending
            .iter()
            .zip(&refused)
            .flat_map(|((_, host), refused)| {
                let network_data = network_data_secret_ref(host).filter(|_| refused.is_none());
                [network_data, credentials_secret_ref(host)]
            })
            .collect();
        let read = overlapped(refs, |r| self.secret(r)).await?;
        // Two per host, in order: its networkData, then its credentials.
        let mut read = read.into_iter();
        let secrets: Vec<(Option<Secret>, Option<Secret>)> = pending
            .iter()
            .map(|_| (read.next().flatten(), read.next().flatten()))
            .collect();
        let mut unusable = Vec::new();
        for (((i, host), (nd, cr)), refused) in pending.iter().zip(&secrets).zip(refused) {
            let outcome = match refused {
                Some(e) => Err(e),
                None => extraction::extract(
                    host,
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
            extraction::record_outcome(&mut self.status.hosts[*i], &outcome);
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
}
