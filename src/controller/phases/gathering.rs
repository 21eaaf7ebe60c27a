//! Gathering: choose the hosts (a fresh read of every other cluster's ledger, so a claim just
//! written is seen) and write the choice into the ledger; all or nothing.

use crate::api::HostState;
use crate::controller::conditions::reason;
use crate::controller::step::Step;
use crate::machine::Event;

use super::Turn;

impl Turn<'_> {
    pub async fn gather(&mut self) -> kube::Result<Step> {
        let decision = self.decide(true).await?;
        self.status.hosts = decision.apply_to(&self.status.hosts);
        if !decision.is_schedulable() {
            let why: Vec<String> = decision.shortfalls().map(ToString::to_string).collect();
            // Hosts found unusable get another chance after the backoff: their Secrets may
            // have been fixed. They were never labeled, so dropping them loses nothing.
            self.status.hosts.retain(|h| h.state != HostState::Unusable);
            return Ok(Step::blocked(
                reason::UNSCHEDULABLE,
                "Unschedulable",
                why.join("; "),
            ));
        }
        let added: usize = decision.roles.values().map(|r| r.add.len()).sum();
        let released: usize = decision.roles.values().map(|r| r.release.len()).sum();
        Ok(Step::go(
            Event::Done,
            "HostsChosen",
            format!("{added} hosts added, {released} released"),
        ))
    }
}
