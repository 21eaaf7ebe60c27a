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
        // The story names the hosts: `kubectl describe` shows which were taken and let go.
        let added: Vec<String> = decision
            .roles
            .iter()
            .flat_map(|(role, r)| r.add.iter().map(move |p| format!("{} ({role})", p.key)))
            .collect();
        let released: Vec<String> = decision
            .roles
            .values()
            .flat_map(|r| {
                r.release
                    .iter()
                    .map(|r| format!("{} ({})", r.key, r.reason))
            })
            .collect();
        let mut message = format!("{} hosts added, {} released", added.len(), released.len());
        for (what, hosts) in [("added", added), ("released", released)] {
            if !hosts.is_empty() {
                message.push_str(&format!("; {what}: {}", names(&hosts)));
            }
        }
        Ok(Step::go(Event::Done, "HostsChosen", message))
    }
}

/// At most ten names, then how many more: the message goes into an Event too.
fn names(hosts: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = hosts[..hosts.len().min(SHOWN)].join(", ");
    if hosts.len() > SHOWN {
        text.push_str(&format!(" and {} more", hosts.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_host_lists_are_cut() {
        let hosts: Vec<String> = (0..13).map(|i| format!("h{i}")).collect();
        assert_eq!(super::names(&hosts[..2]), "h0, h1");
        assert!(super::names(&hosts).ends_with("h9 and 3 more"));
    }
}
