//! Gathering: choose the hosts (a fresh read of every other cluster's ledger, so a claim just
//! written is seen) and write the choice into the ledger; all or nothing.

use crate::api::{HostRecord, HostState};
use crate::controller::conditions::reason;
use crate::controller::step::Step;
use crate::machine::Event;
use crate::scheduling::Decision;

use super::Turn;

impl Turn<'_> {
    pub async fn gather(&mut self) -> kube::Result<Step> {
        let decision = self.decide(true).await?;
        Ok(conclude(&decision, &mut self.status.hosts))
    }
}

/// The ledger after `decision`, and the step: all or nothing, so a shortfall changes no claim
/// and says why (hosts found unusable get another chance after the backoff: their Secrets may
/// have been fixed, and they were never labeled); else the hosts added and released, named.
/// Pure.
fn conclude(decision: &Decision, ledger: &mut Vec<HostRecord>) -> Step {
    *ledger = decision.apply_to(ledger);
    if !decision.is_schedulable() {
        let why: Vec<String> = decision.shortfalls().map(ToString::to_string).collect();
        ledger.retain(|h| h.state != HostState::Unusable);
        return Step::blocked(reason::UNSCHEDULABLE, "Unschedulable", why.join("; "));
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
    let adopted: Vec<String> = decision
        .adopted
        .iter()
        .map(|r| format!("{}/{} ({})", r.namespace, r.name, r.role))
        .collect();
    let mut message = format!("{} hosts added, {} released", added.len(), released.len());
    if !adopted.is_empty() {
        message.push_str(&format!(
            ", {} adopted (labeled for this cluster by its predecessor)",
            adopted.len()
        ));
    }
    for (what, hosts) in [
        ("adopted", adopted),
        ("added", added),
        ("released", released),
    ] {
        if !hosts.is_empty() {
            message.push_str(&format!("; {what}: {}", names(&hosts)));
        }
    }
    Step::go(Event::Done, "HostsChosen", message)
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
    use super::*;
    use crate::api::NodeRole;
    use crate::scheduling::{
        Counts, HostKey, Pick, Release, ReleaseReason, RoleDecision, Shortfall,
    };

    use crate::api::SIPCluster;
    use crate::controller::phases::{Prefetched, Turn, test_record as record};
    use crate::controller::testing::{Objects, context};
    use std::sync::Arc;

    fn decision(role: RoleDecision) -> Decision {
        Decision {
            roles: [(NodeRole::Worker, role)].into(),
            ..Decision::default()
        }
    }

    #[test]
    fn chosen_hosts_enter_the_ledger_and_the_story_names_them() {
        let mut ledger = vec![
            record("wk-1", HostState::Labeled),
            record("wk-2", HostState::Labeled),
        ];
        let d = decision(RoleDecision {
            wanted: 2,
            keep: vec![HostKey::new("metal3", "wk-1")],
            add: vec![Pick {
                key: HostKey::new("metal3", "wk-3"),
                uid: None,
                domain: None,
            }],
            release: vec![Release {
                key: HostKey::new("metal3", "wk-2"),
                reason: ReleaseReason::Surplus,
            }],
            shortfall: None,
        });
        let step = conclude(&d, &mut ledger);
        assert_eq!(
            (step.event, step.reason),
            (Some(Event::Done), "HostsChosen")
        );
        assert!(
            step.message
                .starts_with("1 hosts added, 1 released; added: metal3/wk-3 (Worker)"),
            "{}",
            step.message
        );
        assert!(
            step.message.contains("released: metal3/wk-2"),
            "{}",
            step.message
        );
        assert!(
            ledger
                .iter()
                .any(|h| h.name == "wk-3" && h.state == HostState::Chosen)
        );
    }

    #[test]
    fn a_shortfall_claims_nothing_says_why_and_forgets_unusable_marks() {
        let mut ledger = vec![record("wk-1", HostState::Unusable)];
        let d = decision(RoleDecision {
            wanted: 2,
            shortfall: Some(Shortfall {
                role: Some(NodeRole::Worker),
                wanted: 2,
                have: 0,
                addable: 1,
                topology_key: None,
                invalid_selector: None,
                counts: Counts::default(),
            }),
            ..RoleDecision::default()
        });
        let step = conclude(&d, &mut ledger);
        assert_eq!(step.event, None);
        assert_eq!(step.blocked, Some(reason::UNSCHEDULABLE));
        assert!(step.message.contains("wanted 2"), "{}", step.message);
        assert!(
            ledger.iter().all(|h| h.state != HostState::Unusable),
            "{ledger:?}"
        );
    }

    #[test]
    fn long_host_lists_are_cut() {
        let hosts: Vec<String> = (0..13).map(|i| format!("h{i}")).collect();
        assert_eq!(super::names(&hosts[..2]), "h0, h1");
        assert!(super::names(&hosts).ends_with("h9 and 3 more"));
    }

    /// Where another cluster's claim on `wk-1` is, for [`gather`].
    #[derive(Clone, Copy)]
    enum Claim {
        Nowhere,
        /// The ledgers' watch has brought it.
        Cached,
        /// The operator wrote it a moment ago: the API server has it, the watch not yet.
        JustWritten,
    }

    /// `tenant-b`, whose ledger holds `wk-1`.
    fn claimant() -> SIPCluster {
        let mut other = SIPCluster::new("tenant-b", Default::default());
        other.metadata.namespace = Some("sip".into());
        other.metadata.resource_version = Some("7".into());
        other.status = Some(crate::api::SIPClusterStatus {
            hosts: vec![record("wk-1", HostState::Chosen)],
            ..Default::default()
        });
        other
    }

    /// Gathering on a pool of one worker, `wk-1`, which another cluster may claim.
    async fn gather(claim: Claim) -> (Step, Vec<HostRecord>, Vec<String>) {
        use crate::scheduling::tests::{FLAVOR, role, spec};
        let mut wk = crate::extraction::tests::host();
        wk.metadata.name = Some("wk-1".into());
        wk.metadata.labels = Some([(FLAVOR.to_string(), "worker".to_string())].into());
        let (server, cache) = match claim {
            Claim::Nowhere => (vec![], vec![]),
            Claim::Cached => (vec![claimant()], vec![claimant()]),
            Claim::JustWritten => (vec![claimant()], vec![]),
        };
        let objects = Arc::new(
            Objects::default()
                .with_clusters(server)
                .with_cached_clusters(cache),
        );
        let ctx = context(objects.clone(), vec![wk]);
        if let Claim::JustWritten = claim {
            let other = claimant();
            let ledger = &other.status.as_ref().unwrap().hosts;
            ctx.ledgers.wrote(&other, &[], ledger, "7");
        }
        let mut cluster = SIPCluster::new("tenant-a", spec(None, Some(role("worker", None, 1, 0))));
        cluster.metadata.namespace = Some("sip".into());
        let mut turn = Turn::new(&ctx, &cluster);
        let step = turn.gather().await.expect("no request reaches a server");
        (step, turn.status.hosts, objects.read())
    }

    #[tokio::test]
    async fn gathering_sees_every_claim_and_leaves_those_hosts_alone() {
        let (step, ledger, read) = gather(Claim::Nowhere).await;
        assert_eq!(step.reason, "HostsChosen", "{}", step.message);
        assert!(
            step.message.contains("metal3/wk-1 (Worker)"),
            "{}",
            step.message
        );
        assert_eq!(ledger.len(), 1);
        assert!(read.is_empty(), "the cache served: {read:?}");

        for (claim, reads) in [
            (Claim::Cached, &[][..]),
            (Claim::JustWritten, &["clusters"][..]),
        ] {
            let (step, ledger, read) = gather(claim).await;
            assert_eq!(step.reason, "Unschedulable", "{}", step.message);
            assert_eq!(step.blocked, Some(reason::UNSCHEDULABLE));
            assert!(ledger.is_empty(), "all or nothing: {ledger:?}");
            // A claim the operator wrote that the watch has yet to bring is read fresh.
            assert_eq!(read, reads);
        }
    }

    #[tokio::test]
    async fn ledgers_read_with_the_finalizer_serve_the_first_choice_only() {
        use crate::scheduling::tests::{FLAVOR, role, spec};
        let mut wk = crate::extraction::tests::host();
        wk.metadata.name = Some("wk-1".into());
        wk.metadata.labels = Some([(FLAVOR.to_string(), "worker".to_string())].into());
        // The server has no other cluster; the ledgers read at the turn's start have one
        // that holds wk-1.
        let objects = Arc::new(Objects::default());
        let ctx = context(objects.clone(), vec![wk]);
        let mut cluster = SIPCluster::new("tenant-a", spec(None, Some(role("worker", None, 1, 0))));
        cluster.metadata.namespace = Some("sip".into());
        let mut other = SIPCluster::new("tenant-b", Default::default());
        other.metadata.namespace = Some("sip".into());
        other.status = Some(crate::api::SIPClusterStatus {
            hosts: vec![record("wk-1", HostState::Chosen)],
            ..Default::default()
        });
        // A claim of a third cluster's the watch has yet to bring: the cache cannot serve.
        let mut third = SIPCluster::new("tenant-c", Default::default());
        third.metadata.namespace = Some("sip".into());
        ctx.ledgers
            .wrote(&third, &[], &[record("elsewhere", HostState::Chosen)], "9");
        let mut turn =
            Turn::new(&ctx, &cluster).with_prefetched(Prefetched::ledgers(Some(vec![other])));
        let first = turn.gather().await.expect("no request reaches a server");
        assert_eq!(first.reason, "Unschedulable", "{}", first.message);
        assert!(objects.read().is_empty(), "{:?}", objects.read());
        let second = turn.gather().await.expect("no request reaches a server");
        assert_eq!(second.reason, "HostsChosen", "{}", second.message);
        assert_eq!(objects.read(), ["clusters"], "a second choice reads again");
    }
}
