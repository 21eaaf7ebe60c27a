//! Labeling: released hosts lose the cluster's labels, members get them, each patch guarded by
//! the host's resourceVersion; a conflict or a host taken meanwhile sends the cluster back to
//! Gathering.

use kube::runtime::reflector::ObjectRef;

use crate::api::HostState;
use crate::controller::hosts::{self, Labeled};
use crate::controller::step::Step;
use crate::machine::Event;
use crate::scheduling::HostKey;

use super::Turn;
use super::io::overlapped;

impl Turn<'_> {
    pub async fn label(&mut self) -> kube::Result<Step> {
        let manager = self.ctx.manager.as_str();
        // Released and unusable hosts lose this cluster's labels first.
        let mut pending = false;
        for i in 0..self.status.hosts.len() {
            let record = &self.status.hosts[i];
            if record.state.is_member() {
                continue;
            }
            let api = self.hosts_api(&record.namespace);
            if !hosts::unlabel(&api, record, &self.key, manager).await? {
                pending = true;
            }
        }
        if pending {
            return Ok(Step::trouble(
                Event::Regather,
                "LabelConflict",
                "a released host changed while being unlabeled",
            ));
        }
        self.status
            .hosts
            .retain(|h| h.state != HostState::Releasing);

        // Each host's patch is independent of the others': they overlap, and their outcomes
        // are read in ledger order.
        let members: Vec<(usize, HostKey)> = self
            .status
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, HostState::Extracted | HostState::Labeled))
            .map(|(i, r)| (i, HostKey::of_record(r)))
            .collect();
        let work: Vec<_> = members
            .iter()
            .map(|(i, key)| {
                let record = self.status.hosts[*i].clone();
                let cached = self
                    .ctx
                    .hosts
                    .get(&ObjectRef::new(key.name()).within(key.namespace()));
                (self.hosts_api(&record.namespace), record, cached)
            })
            .collect();
        let cluster = &self.key;
        let outcomes = overlapped(work, |(api, record, cached)| async move {
            hosts::label(&api, cached.as_deref(), &record, cluster, manager).await
        })
        .await?;
        let mut trouble = None;
        for ((i, key), outcome) in members.into_iter().zip(outcomes) {
            match outcome {
                Labeled::Done => self.status.hosts[i].state = HostState::Labeled,
                other => {
                    trouble.get_or_insert((i, key, other));
                }
            }
        }
        match trouble {
            None => {}
            Some((i, key, Labeled::Taken)) => {
                let r = &mut self.status.hosts[i];
                r.state = HostState::Unusable;
                r.reason = Some(format!("host {key} was labeled for another SIPCluster"));
                return Ok(Step::trouble(
                    Event::HostUnusable,
                    "HostTaken",
                    format!("host {key} was taken by another SIPCluster"),
                ));
            }
            Some((_, key, Labeled::Gone)) => {
                return Ok(Step::trouble(
                    Event::Regather,
                    "HostLost",
                    format!("host {key} is gone"),
                ));
            }
            // Done is never kept as trouble.
            Some((_, key, Labeled::Conflict | Labeled::Done)) => {
                return Ok(Step::trouble(
                    Event::Regather,
                    "LabelConflict",
                    format!("host {key} changed while being labeled"),
                ));
            }
        }
        // Unusable marks served this round; a later round may try those hosts again.
        self.status.hosts.retain(|h| h.state != HostState::Unusable);
        Ok(Step::go(
            Event::Done,
            "HostsLabeled",
            "every member carries the cluster's labels",
        ))
    }
}
