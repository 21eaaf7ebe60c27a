//! Labeling: released hosts lose the cluster's labels, members get them, each patch guarded by
//! the host's resourceVersion; a conflict or a host taken meanwhile sends the cluster back to
//! Gathering.

use kube::runtime::reflector::ObjectRef;

use crate::api::{HostRecord, HostState};
use crate::controller::conditions::reason;
use crate::controller::hosts::{self, Labeled};
use crate::controller::step::Step;
use crate::machine::Event;
use crate::scheduling::HostKey;

use super::Turn;
use super::io::overlapped;

impl Turn<'_> {
    pub async fn label(&mut self) -> kube::Result<Step> {
        let manager = self.ctx.writer();
        // Released and unusable hosts lose this cluster's labels first.
        let mut pending = false;
        for i in 0..self.status.hosts.len() {
            let record = &self.status.hosts[i];
            if record.state.is_member() {
                continue;
            }
            let api = self.hosts_api(&record.namespace);
            if !hosts::unlabel(&api, &record.name, &self.key, manager).await? {
                pending = true;
            }
        }
        if pending {
            return Ok(Step::trouble(
                Event::Regather,
                "LabelConflict",
                "a released host changed while being unlabeled",
            )
            .because(reason::UNABLE_TO_APPLY_LABELS));
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
        Ok(conclude(
            &mut self.status.hosts,
            members.into_iter().zip(outcomes),
        ))
    }
}

/// What the label patches' outcomes (in ledger order) mean: every member labeled, or the first
/// trouble met: a host taken by another cluster is marked unusable (replaced), a host gone or
/// changed meanwhile sends the cluster back to choose. Updates the ledger's states. Pure.
fn conclude(
    ledger: &mut Vec<HostRecord>,
    outcomes: impl IntoIterator<Item = ((usize, HostKey), Labeled)>,
) -> Step {
    let mut trouble = None;
    for ((i, key), outcome) in outcomes {
        match outcome {
            Labeled::Done => ledger[i].state = HostState::Labeled,
            other => {
                trouble.get_or_insert((i, key, other));
            }
        }
    }
    match trouble {
        None => {}
        Some((i, key, Labeled::Taken)) => {
            let r = &mut ledger[i];
            r.state = HostState::Unusable;
            r.reason = Some(format!("host {key} was labeled for another SIPCluster"));
            return Step::trouble(
                Event::HostUnusable,
                "HostTaken",
                format!("host {key} was taken by another SIPCluster"),
            )
            .because(reason::UNABLE_TO_APPLY_LABELS);
        }
        Some((_, key, Labeled::Gone)) => {
            return Step::trouble(Event::Regather, "HostLost", format!("host {key} is gone"))
                .because(reason::UNABLE_TO_APPLY_LABELS);
        }
        // Done is never kept as trouble.
        Some((_, key, Labeled::Conflict | Labeled::Done)) => {
            return Step::trouble(
                Event::Regather,
                "LabelConflict",
                format!("host {key} changed while being labeled"),
            )
            .because(reason::UNABLE_TO_APPLY_LABELS);
        }
    }
    // Unusable marks served this round; a later round may try those hosts again.
    ledger.retain(|h| h.state != HostState::Unusable);
    Step::go(
        Event::Done,
        "HostsLabeled",
        "every member carries the cluster's labels",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controller::phases::test_record as record;

    fn ledger() -> Vec<HostRecord> {
        vec![
            record("a", HostState::Extracted),
            record("b", HostState::Extracted),
            record("old", HostState::Unusable),
        ]
    }

    fn key(name: &str) -> HostKey {
        HostKey::new("metal3", name)
    }

    #[test]
    fn label_outcomes_decide_the_step() {
        use Labeled::*;
        let cases = [
            (
                [Done, Done],
                Some(Event::Done),
                "HostsLabeled",
                "every member labeled",
            ),
            (
                [Done, Taken],
                Some(Event::HostUnusable),
                "HostTaken",
                "taken: replace it",
            ),
            (
                [Gone, Done],
                Some(Event::Regather),
                "HostLost",
                "gone: choose again",
            ),
            (
                [Done, Conflict],
                Some(Event::Regather),
                "LabelConflict",
                "changed meanwhile",
            ),
            (
                [Conflict, Taken],
                Some(Event::Regather),
                "LabelConflict",
                "the first trouble wins",
            ),
        ];
        for (outcomes, event, reason, msg) in cases {
            let mut hosts = ledger();
            let pairs = [(0, key("a")), (1, key("b"))].into_iter().zip(outcomes);
            let step = conclude(&mut hosts, pairs);
            assert_eq!((step.event, step.reason), (event, reason), "{msg}");
            assert_eq!(step.warning, reason != "HostsLabeled", "{msg}");
        }
    }

    #[test]
    fn labeled_members_are_recorded_and_old_unusable_marks_dropped() {
        let mut hosts = ledger();
        let pairs = [(0, key("a")), (1, key("b"))]
            .into_iter()
            .zip([Labeled::Done, Labeled::Done]);
        conclude(&mut hosts, pairs);
        let states: Vec<(&str, HostState)> =
            hosts.iter().map(|h| (h.name.as_str(), h.state)).collect();
        assert_eq!(
            states,
            [("a", HostState::Labeled), ("b", HostState::Labeled)]
        );
    }

    #[test]
    fn a_taken_host_is_marked_unusable_with_the_reason() {
        let mut hosts = ledger();
        let pairs = [(0, key("a")), (1, key("b"))]
            .into_iter()
            .zip([Labeled::Done, Labeled::Taken]);
        let step = conclude(&mut hosts, pairs);
        assert_eq!(hosts[1].state, HostState::Unusable);
        assert!(
            hosts[1]
                .reason
                .as_deref()
                .unwrap()
                .contains("another SIPCluster")
        );
        assert!(step.message.contains("metal3/b"), "{}", step.message);
        assert_eq!(hosts.len(), 3, "kept until Gathering replaces it");
    }
}
