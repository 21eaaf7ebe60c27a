//! Decommissioning: delete every object of the services, then unlabel the ledger's hosts (and
//! any host still labeled for the cluster that the ledger lacks); the finalizer goes once both
//! are done.

use std::collections::BTreeSet;

use crate::controller::hosts;

use super::Turn;

impl Turn<'_> {
    /// Decommissioning: deletes every child (and the predecessor's objects of the cluster).
    pub async fn remove_services(&mut self) -> kube::Result<()> {
        self.prune(&BTreeSet::new()).await?;
        // The predecessor's too, when the cluster goes before sip replaced them.
        let mut removed = Vec::new();
        for found in &mut self.predecessors_leftovers(false).await?.found {
            removed.extend(self.remove_predecessors(found, true).await?);
        }
        self.tell_removed(&removed).await;
        self.status.services.clear();
        Ok(())
    }

    /// Decommissioning: unlabel the ledger's hosts, and any other host labeled for this
    /// cluster (the predecessor's, never adopted because the cluster went first). True when all
    /// are done.
    pub async fn decommission(&mut self) -> kube::Result<bool> {
        let manager = self.ctx.writer();
        let hosts = self.hosts_snapshot();
        let strays = crate::scheduling::outside_ledger(&self.key, &self.status.hosts, &hosts);
        let names = self
            .status
            .hosts
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .chain(strays.iter().map(|h| (h.key.namespace(), h.key.name())));
        let mut done = true;
        for (namespace, name) in names {
            let api = self.hosts_api(namespace);
            done &= hosts::unlabel(&api, name, &self.key, manager).await?;
        }
        Ok(done)
    }
}
