//! Decommissioning: delete every object of the services, then unlabel exactly the ledger's
//! hosts; the finalizer goes once both are done.

use std::collections::BTreeSet;

use crate::controller::hosts;

use super::Turn;

impl Turn<'_> {
    /// Decommissioning: deletes every child. True when none is left.
    pub async fn remove_services(&mut self) -> kube::Result<bool> {
        self.prune(&BTreeSet::new()).await?;
        self.status.services.clear();
        Ok(true)
    }

    /// Decommissioning: unlabel exactly the ledger's hosts. True when all are done.
    pub async fn decommission(&mut self) -> kube::Result<bool> {
        let manager = self.ctx.manager.as_str();
        let mut done = true;
        for record in &self.status.hosts {
            let api = self.hosts_api(&record.namespace);
            done &= hosts::unlabel(&api, record, &self.key, manager).await?;
        }
        Ok(done)
    }
}
