//! Scenario tests: the predecessor's suite, its bugs as regressions, and the documented rules.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::api::{
    HostRecord, HostState, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, NodeCount, NodeRole,
    NodeSet, SIPClusterSpec,
};

pub(super) const FLAVOR: &str = "vino.airshipit.org/flavor";
pub(super) const RACK: &str = "vino.airshipit.org/rack";
pub(super) const SERVER: &str = "vino.airshipit.org/host";

pub(super) fn cluster() -> ClusterKey {
    ClusterKey::new("tenant", "cluster-a")
}

/// A host builder: `host("cp-1").flavor("cp").rack("r1").build()`.
pub(super) struct HostBuilder(HostView);

pub(super) fn host(name: &str) -> HostBuilder {
    HostBuilder(HostView {
        key: HostKey::new("metal3", name),
        uid: Some(format!("uid-{name}")),
        labels: BTreeMap::new(),
        deleting: false,
        paused: false,
        errored: false,
        unhealthy: false,
        release_requested: false,
        has_network_data: true,
    })
}

impl HostBuilder {
    pub(super) fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub(super) fn flavor(self, f: &str) -> Self {
        self.label(FLAVOR, f)
    }
    pub(super) fn rack(self, r: &str) -> Self {
        self.label(RACK, r)
    }
    pub(super) fn server(self, s: &str) -> Self {
        self.label(SERVER, s)
    }
    fn labeled_for(self, ns: &str, name: &str) -> Self {
        self.label(LABEL_CLUSTER_NAMESPACE, ns)
            .label(LABEL_CLUSTER_NAME, name)
    }
    fn with(mut self, f: impl FnOnce(&mut HostView)) -> Self {
        f(&mut self.0);
        self
    }
    pub(super) fn build(self) -> HostView {
        self.0
    }
}

pub(super) fn role(flavor: &str, topology: Option<&str>, active: u32, standby: u32) -> NodeSet {
    NodeSet {
        label_selector: LabelSelector {
            match_labels: Some([(FLAVOR.to_string(), flavor.to_string())].into()),
            match_expressions: None,
        },
        topology_key: topology.map(str::to_string),
        count: Some(NodeCount { active, standby }),
    }
}

pub(super) fn spec(cp: Option<NodeSet>, worker: Option<NodeSet>) -> SIPClusterSpec {
    let mut nodes = BTreeMap::new();
    if let Some(cp) = cp {
        nodes.insert(NodeRole::ControlPlane, cp);
    }
    if let Some(w) = worker {
        nodes.insert(NodeRole::Worker, w);
    }
    SIPClusterSpec {
        nodes: nodes.into(),
        ..Default::default()
    }
}

/// The predecessor's sample: 1+1 control plane per rack, 1+1 workers per server.
fn sample_spec() -> SIPClusterSpec {
    spec(
        Some(role("cp", Some(RACK), 1, 1)),
        Some(role("worker", Some(SERVER), 1, 1)),
    )
}

/// 4 racks with a control-plane host each, 6 workers on 5 servers.
fn sample_pool() -> Vec<HostView> {
    let mut hosts: Vec<HostView> = (1..=4)
        .map(|i| {
            host(&format!("cp-{i}"))
                .flavor("cp")
                .rack(&format!("r{i}"))
                .build()
        })
        .collect();
    for (i, server) in [
        (1, "s1"),
        (2, "s2"),
        (3, "s3"),
        (4, "s4"),
        (5, "s5"),
        (6, "s5"),
    ] {
        hosts.push(
            host(&format!("wk-{i}"))
                .flavor("worker")
                .server(server)
                .build(),
        );
    }
    hosts
}

pub(super) fn run(spec: &SIPClusterSpec, ledger: &[HostRecord], hosts: &[HostView]) -> Decision {
    run_with_claims(spec, ledger, hosts, &HashSet::new())
}

fn run_with_claims(
    spec: &SIPClusterSpec,
    ledger: &[HostRecord],
    hosts: &[HostView],
    claimed: &HashSet<HostKey>,
) -> Decision {
    schedule(&Inputs {
        cluster: &cluster(),
        spec,
        ledger,
        hosts,
        claimed_elsewhere: claimed,
    })
}

fn added(d: &Decision, role: NodeRole) -> Vec<String> {
    d.roles[&role]
        .add
        .iter()
        .map(|p| p.key.name().to_string())
        .collect()
}

fn released(d: &Decision, role: NodeRole) -> Vec<(String, ReleaseReason)> {
    d.roles[&role]
        .release
        .iter()
        .map(|r| (r.key.name().to_string(), r.reason))
        .collect()
}

/// A ledger record for a member, as Gathering would have written it.
fn member(name: &str, role: NodeRole, state: HostState) -> HostRecord {
    HostRecord {
        name: name.into(),
        namespace: "metal3".into(),
        uid: Some(format!("uid-{name}")),
        role,
        state,
        reason: None,
        topology_domain: None,
        addresses: BTreeMap::new(),
        bmc_address: None,
    }
}

use NodeRole::{ControlPlane as CP, Worker as W};

#[test]
fn schedules_available_nodes_one_per_domain() {
    let d = run(&sample_spec(), &[], &sample_pool());
    assert!(d.is_schedulable());
    assert_eq!(added(&d, CP), ["cp-1", "cp-2"]);
    assert_eq!(added(&d, W), ["wk-1", "wk-2"]);
    let domains: Vec<_> = d.roles[&CP].add.iter().map(|p| p.domain.clone()).collect();
    assert_eq!(domains, [Some("r1".into()), Some("r2".into())]);
}

#[test]
fn insufficient_control_plane_claims_nothing_for_any_role() {
    let hosts: Vec<HostView> = sample_pool()
        .into_iter()
        .filter(|h| h.key.name() != "cp-2" && h.key.name() != "cp-3" && h.key.name() != "cp-4")
        .collect();
    let d = run(&sample_spec(), &[], &hosts);
    assert!(!d.is_schedulable());
    let short = d.roles[&CP]
        .shortfall
        .as_ref()
        .expect("control plane is short");
    assert_eq!((short.wanted, short.have, short.addable), (2, 0, 1));
    assert!(
        d.roles[&W].shortfall.is_none(),
        "workers alone could be scheduled"
    );
    assert!(
        added(&d, CP).is_empty() && added(&d, W).is_empty(),
        "all or nothing"
    );
}

#[test]
fn insufficient_workers_claims_nothing() {
    let s = spec(
        Some(role("cp", Some(RACK), 1, 1)),
        Some(role("worker", Some(SERVER), 5, 1)),
    );
    let d = run(&s, &[], &sample_pool());
    let short = d.roles[&W].shortfall.as_ref().expect("workers are short");
    assert_eq!((short.wanted, short.addable), (6, 5));
    assert_eq!(short.counts.blocked_by_topology, 1, "wk-6 shares server s5");
    assert!(added(&d, CP).is_empty() && added(&d, W).is_empty());
}

#[test]
fn two_workers_never_on_one_server() {
    let hosts = vec![
        host("wk-a").flavor("worker").server("s1").build(),
        host("wk-b").flavor("worker").server("s1").build(),
    ];
    let d = run(
        &spec(None, Some(role("worker", Some(SERVER), 2, 0))),
        &[],
        &hosts,
    );
    let short = d.roles[&W].shortfall.as_ref().unwrap();
    assert_eq!(short.addable, 1);
    assert_eq!(short.counts.blocked_by_topology, 1);
    assert!(added(&d, W).is_empty());
}

#[test]
fn two_control_planes_never_in_one_rack() {
    let hosts = vec![
        host("cp-a").flavor("cp").rack("r1").build(),
        host("cp-b").flavor("cp").rack("r1").build(),
        host("cp-c").flavor("cp").rack("r2").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 2, 0)), None), &[], &hosts);
    assert_eq!(added(&d, CP), ["cp-a", "cp-c"]);
}

#[test]
fn hosts_claimed_by_another_cluster_are_excluded() {
    let hosts = vec![
        host("cp-a")
            .flavor("cp")
            .rack("r1")
            .labeled_for("tenant", "cluster-b")
            .build(),
        // Same cluster name in another namespace is another cluster.
        host("cp-b")
            .flavor("cp")
            .rack("r2")
            .labeled_for("other", "cluster-a")
            .build(),
        host("cp-c").flavor("cp").rack("r3").build(),
        host("cp-d").flavor("cp").rack("r4").build(),
    ];
    let claimed: HashSet<HostKey> = [HostKey::new("metal3", "cp-c")].into();
    let s = spec(Some(role("cp", Some(RACK), 2, 0)), None);
    let d = run_with_claims(&s, &[], &hosts, &claimed);
    let short = d.roles[&CP].shortfall.as_ref().unwrap();
    assert_eq!(short.counts.claimed_elsewhere, 3);
    assert_eq!(short.addable, 1);

    let d = run_with_claims(
        &spec(Some(role("cp", Some(RACK), 1, 0)), None),
        &[],
        &hosts,
        &claimed,
    );
    assert_eq!(added(&d, CP), ["cp-d"]);
}

#[test]
fn a_host_labeled_for_this_cluster_but_not_in_its_ledger_is_adopted() {
    let hosts = vec![
        host("cp-a")
            .flavor("cp")
            .rack("r1")
            .labeled_for("tenant", "cluster-a")
            .build(),
        host("cp-b").flavor("cp").rack("r0").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 1, 0)), None), &[], &hosts);
    assert!(added(&d, CP).is_empty(), "{d:?}");
    assert_eq!(d.roles[&CP].keep, [HostKey::new("metal3", "cp-a")]);
    let ledger = d.apply_to(&[]);
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].name, "cp-a");
    assert_eq!(
        ledger[0].reason.as_deref(),
        Some(crate::scheduling::ADOPTED)
    );
    assert_eq!(ledger[0].topology_domain.as_deref(), Some("r1"));
    // Once in the ledger, the next decision changes nothing.
    assert!(
        run(
            &spec(Some(role("cp", Some(RACK), 1, 0)), None),
            &ledger,
            &hosts
        )
        .changes_nothing()
    );
}

/// The predecessor's hosts, as it leaves them: labeled, no ledger. Each is adopted while it
/// fits; what does not fit, or is more than wanted, is released (its labels removed), and
/// only the shortfall is chosen anew.
#[test]
fn the_predecessors_hosts_are_adopted_and_what_does_not_fit_is_released() {
    let ours = |name: &str, node_type: &str| {
        host(name)
            .labeled_for("tenant", "cluster-a")
            .label(crate::api::LABEL_NODE_TYPE, node_type)
    };
    let hosts = vec![
        ours("cp-1", "ControlPlane").flavor("cp").rack("r1").build(),
        // Two in one rack: the second breaks the topology rule.
        ours("cp-2", "ControlPlane").flavor("cp").rack("r1").build(),
        // No longer matches the role's selector.
        ours("cp-3", "ControlPlane")
            .flavor("gpu")
            .rack("r3")
            .build(),
        ours("wk-1", "Worker").flavor("worker").server("s1").build(),
        ours("wk-2", "Worker").flavor("worker").server("s2").build(),
        ours("wk-3", "Worker").flavor("worker").server("s3").build(),
        host("cp-9").flavor("cp").rack("r9").build(),
    ];
    let s = spec(
        Some(role("cp", Some(RACK), 2, 0)),
        Some(role("worker", Some(SERVER), 1, 1)),
    );
    let d = run(&s, &[], &hosts);
    assert!(d.is_schedulable(), "{d:?}");
    assert_eq!(d.adopted.len(), 6);
    assert_eq!(d.roles[&CP].keep, [HostKey::new("metal3", "cp-1")]);
    assert_eq!(added(&d, CP), ["cp-9"], "only the shortfall is chosen anew");
    assert_eq!(
        released(&d, CP),
        [
            ("cp-2".into(), ReleaseReason::Lost(LostReason::DomainShared)),
            (
                "cp-3".into(),
                ReleaseReason::Lost(LostReason::NoLongerMatches)
            ),
        ]
    );
    assert_eq!(
        d.roles[&W].keep,
        [
            HostKey::new("metal3", "wk-1"),
            HostKey::new("metal3", "wk-2")
        ]
    );
    assert_eq!(released(&d, W), [("wk-3".into(), ReleaseReason::Surplus)]);
    assert!(added(&d, W).is_empty());
    let ledger = d.apply_to(&[]);
    let releasing: Vec<&str> = ledger
        .iter()
        .filter(|r| r.state == HostState::Releasing)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        releasing,
        ["cp-2", "cp-3", "wk-3"],
        "released hosts lose their labels"
    );
    // The same inventory in another order decides the same.
    let mut reversed = hosts.clone();
    reversed.reverse();
    assert_eq!(run(&s, &[], &reversed), d);
}

#[test]
fn hosts_without_network_data_are_not_chosen() {
    let hosts = vec![
        host("cp-a")
            .flavor("cp")
            .rack("r1")
            .with(|h| h.has_network_data = false)
            .build(),
        host("cp-b").flavor("cp").rack("r2").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 1, 0)), None), &[], &hosts);
    assert_eq!(added(&d, CP), ["cp-b"]);
    let d = run(&spec(Some(role("cp", Some(RACK), 2, 0)), None), &[], &hosts);
    assert_eq!(
        d.roles[&CP]
            .shortfall
            .as_ref()
            .unwrap()
            .counts
            .no_network_data,
        1
    );
}

#[test]
fn unavailable_hosts_are_not_chosen() {
    let hosts = vec![
        host("a")
            .flavor("cp")
            .rack("r1")
            .with(|h| h.paused = true)
            .build(),
        host("b")
            .flavor("cp")
            .rack("r2")
            .with(|h| h.errored = true)
            .build(),
        host("c")
            .flavor("cp")
            .rack("r3")
            .with(|h| h.deleting = true)
            .build(),
        host("d")
            .flavor("cp")
            .rack("r4")
            .with(|h| h.unhealthy = true)
            .build(),
        host("e").flavor("cp").rack("r5").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 2, 0)), None), &[], &hosts);
    let short = d.roles[&CP].shortfall.as_ref().unwrap();
    assert_eq!(short.counts.unavailable, 4);
    assert_eq!(short.addable, 1);
}

#[test]
fn missing_or_empty_topology_label_is_ineligible() {
    // vino writes empty values for labels it lacks; they must not form one big domain.
    let hosts = vec![
        host("cp-a").flavor("cp").build(),
        host("cp-b").flavor("cp").rack("").build(),
        host("cp-c").flavor("cp").rack("r1").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 2, 0)), None), &[], &hosts);
    let short = d.roles[&CP].shortfall.as_ref().unwrap();
    assert_eq!(short.counts.no_topology_label, 2);
    assert_eq!(short.addable, 1);
}

#[test]
fn without_topology_key_any_free_hosts_serve() {
    let hosts = vec![
        host("cp-b").flavor("cp").build(),
        host("cp-a").flavor("cp").build(),
        host("cp-c").flavor("cp").rack("").build(),
    ];
    let d = run(&spec(Some(role("cp", None, 3, 0)), None), &[], &hosts);
    assert_eq!(added(&d, CP), ["cp-a", "cp-b", "cp-c"]);
}

#[test]
fn regression_scale_down_releases_only_the_difference_from_the_standby_end() {
    // The predecessor selected every free host when a count was lowered.
    let ledger = vec![
        member("wk-1", W, HostState::Labeled),
        member("wk-2", W, HostState::Labeled),
        member("wk-3", W, HostState::Labeled),
        member("wk-4", W, HostState::Labeled),
    ];
    let s = spec(None, Some(role("worker", Some(SERVER), 1, 1)));
    let d = run(&s, &ledger, &sample_pool());
    assert!(d.is_schedulable());
    assert!(added(&d, W).is_empty());
    assert_eq!(d.roles[&W].keep.len(), 2);
    assert_eq!(
        released(&d, W),
        [
            ("wk-3".into(), ReleaseReason::Surplus),
            ("wk-4".into(), ReleaseReason::Surplus)
        ]
    );
}

#[test]
fn shrinking_releases_hosts_annotated_for_release_first() {
    let ledger = vec![
        member("wk-1", W, HostState::Labeled),
        member("wk-2", W, HostState::Labeled),
        member("wk-3", W, HostState::Labeled),
    ];
    let hosts: Vec<HostView> = sample_pool()
        .into_iter()
        .map(|mut h| {
            h.release_requested = h.key.name() == "wk-1";
            h
        })
        .collect();
    let d = run(
        &spec(None, Some(role("worker", Some(SERVER), 1, 0))),
        &ledger,
        &hosts,
    );
    assert_eq!(
        released(&d, W),
        [
            ("wk-1".into(), ReleaseReason::Requested),
            ("wk-3".into(), ReleaseReason::Surplus)
        ]
    );
    assert_eq!(d.roles[&W].keep, [HostKey::new("metal3", "wk-2")]);
}

#[test]
fn regression_fully_scheduled_cluster_with_no_free_host_left_is_fine() {
    let hosts = vec![
        host("cp-1")
            .flavor("cp")
            .rack("r1")
            .labeled_for("tenant", "cluster-a")
            .build(),
        host("cp-2")
            .flavor("cp")
            .rack("r2")
            .labeled_for("tenant", "cluster-a")
            .build(),
    ];
    let ledger = vec![
        member("cp-1", CP, HostState::Labeled),
        member("cp-2", CP, HostState::Labeled),
    ];
    let d = run(
        &spec(Some(role("cp", Some(RACK), 1, 1)), None),
        &ledger,
        &hosts,
    );
    assert!(d.is_schedulable());
    assert!(d.changes_nothing());
}

#[test]
fn regression_existing_members_occupy_their_domains() {
    let hosts = vec![
        host("cp-1").flavor("cp").rack("r1").build(),
        host("cp-1b").flavor("cp").rack("r1").build(),
        host("cp-2").flavor("cp").rack("r2").build(),
    ];
    let ledger = vec![member("cp-1", CP, HostState::Labeled)];
    let d = run(
        &spec(Some(role("cp", Some(RACK), 2, 0)), None),
        &ledger,
        &hosts,
    );
    assert_eq!(
        added(&d, CP),
        ["cp-2"],
        "r1 is taken by the existing member"
    );
}

#[test]
fn regression_missing_count_wants_nothing_and_does_not_crash() {
    let mut cp = role("cp", Some(RACK), 0, 0);
    cp.count = None;
    let ledger = vec![member("cp-1", CP, HostState::Labeled)];
    let d = run(&spec(Some(cp), None), &ledger, &sample_pool());
    assert!(d.is_schedulable());
    assert_eq!(released(&d, CP), [("cp-1".into(), ReleaseReason::Surplus)]);
}

#[test]
fn count_zero_or_a_removed_role_releases_every_member() {
    let ledger = vec![
        member("cp-1", CP, HostState::Labeled),
        member("wk-1", W, HostState::Extracted),
    ];
    let d = run(
        &spec(Some(role("cp", Some(RACK), 0, 0)), None),
        &ledger,
        &sample_pool(),
    );
    assert_eq!(released(&d, CP).len(), 1);
    assert_eq!(released(&d, W).len(), 1, "Worker was removed from the spec");
}

#[test]
fn expanding_adds_only_the_difference_and_keeps_members() {
    let ledger = vec![
        member("wk-3", W, HostState::Labeled),
        member("wk-4", W, HostState::Labeled),
    ];
    let s = spec(None, Some(role("worker", Some(SERVER), 3, 1)));
    let d = run(&s, &ledger, &sample_pool());
    assert_eq!(d.roles[&W].keep.len(), 2);
    assert_eq!(added(&d, W), ["wk-1", "wk-2"]);
    assert!(released(&d, W).is_empty());
}

/// (what happened, how the pool changes, the reason expected)
type LostCase = (&'static str, Box<dyn Fn(&mut Vec<HostView>)>, LostReason);

#[test]
fn lost_members_are_released_and_replaced() {
    let ledger = vec![
        member("cp-1", CP, HostState::Labeled),
        member("cp-2", CP, HostState::Labeled),
    ];
    let cases: Vec<LostCase> = vec![
        (
            "deleted",
            Box::new(|h| h.retain(|h| h.key.name() != "cp-1")),
            LostReason::Deleted,
        ),
        (
            "being deleted",
            Box::new(|h| h[0].deleting = true),
            LostReason::BeingDeleted,
        ),
        (
            "errored",
            Box::new(|h| h[0].errored = true),
            LostReason::Errored,
        ),
        (
            "unhealthy",
            Box::new(|h| h[0].unhealthy = true),
            LostReason::Unhealthy,
        ),
        (
            "re-created",
            Box::new(|h| h[0].uid = Some("new".into())),
            LostReason::Recreated,
        ),
        (
            "relabeled",
            Box::new(|h| {
                h[0].labels.insert(FLAVOR.into(), "worker".into());
            }),
            LostReason::NoLongerMatches,
        ),
        (
            "taken",
            Box::new(|h| {
                h[0].labels
                    .insert(LABEL_CLUSTER_NAME.into(), "cluster-b".into());
                h[0].labels
                    .insert(LABEL_CLUSTER_NAMESPACE.into(), "tenant".into());
            }),
            LostReason::ClaimedElsewhere,
        ),
        (
            "rack label removed",
            Box::new(|h| {
                h[0].labels.remove(RACK);
            }),
            LostReason::TopologyLabelMissing,
        ),
        (
            "moved into the other member's rack",
            Box::new(|h| {
                h[1].labels.insert(RACK.into(), "r1".into());
            }),
            LostReason::DomainShared,
        ),
    ];
    for (what, mutate, reason) in cases {
        let mut hosts = sample_pool();
        mutate(&mut hosts);
        let d = run(
            &spec(Some(role("cp", Some(RACK), 2, 0)), None),
            &ledger,
            &hosts,
        );
        let rel = released(&d, CP);
        assert_eq!(rel.len(), 1, "{what}: {rel:?}");
        assert_eq!(rel[0].1, ReleaseReason::Lost(reason), "{what}");
        assert_eq!(d.roles[&CP].add.len(), 1, "{what}: a replacement is chosen");
        assert!(d.is_schedulable(), "{what}");
    }
}

#[test]
fn a_paused_member_is_kept() {
    let ledger = vec![member("cp-1", CP, HostState::Labeled)];
    let mut hosts = sample_pool();
    hosts[0].paused = true;
    let d = run(
        &spec(Some(role("cp", Some(RACK), 1, 0)), None),
        &ledger,
        &hosts,
    );
    assert!(d.changes_nothing());
}

#[test]
fn a_host_serves_one_role_and_contested_hosts_go_last() {
    // "shared" matches both selectors; the control plane takes the host only Worker can't use.
    let both = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: FLAVOR.into(),
            operator: "In".into(),
            values: Some(vec!["cp".into(), "any".into()]),
        }]),
    };
    let mut cp = role("cp", None, 1, 0);
    cp.label_selector = both;
    let w = role("any", None, 1, 0);
    let hosts = vec![
        host("a-shared").flavor("any").build(),
        host("b-cp-only").flavor("cp").build(),
    ];
    let d = run(&spec(Some(cp.clone()), Some(w.clone())), &[], &hosts);
    assert_eq!(added(&d, CP), ["b-cp-only"]);
    assert_eq!(added(&d, W), ["a-shared"]);

    // With only the shared host, one role gets it and the other is short.
    let d = run(&spec(Some(cp), Some(w)), &[], &hosts[..1]);
    assert!(!d.is_schedulable());
    assert_eq!(d.roles[&W].shortfall.as_ref().unwrap().counts.other_role, 1);
}

#[test]
fn unusable_and_releasing_hosts_are_not_chosen_again() {
    let ledger = vec![
        HostRecord {
            state: HostState::Unusable,
            reason: Some("bad networkData".into()),
            ..member("cp-1", CP, HostState::Unusable)
        },
        member("cp-2", CP, HostState::Releasing),
    ];
    let d = run(
        &spec(Some(role("cp", Some(RACK), 2, 0)), None),
        &ledger,
        &sample_pool(),
    );
    assert_eq!(added(&d, CP), ["cp-3", "cp-4"]);
}

#[test]
fn the_shortfall_message_tells_a_person_what_to_do() {
    let hosts = vec![
        host("cp-a").flavor("cp").rack("r1").build(),
        host("cp-b").flavor("cp").rack("r1").build(),
        host("cp-c").flavor("cp").build(),
        host("cp-d")
            .flavor("cp")
            .rack("r2")
            .labeled_for("x", "y")
            .build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 3, 0)), None), &[], &hosts);
    let msg = d.roles[&CP].shortfall.as_ref().unwrap().to_string();
    for needle in [
        "ControlPlane: wanted 3, have 0, can add 1",
        "of 4 hosts matching the selector",
        "1 claimed by other SIPClusters",
        "1 without label vino.airshipit.org/rack",
        "1 blocked by topology",
        "lower spec.nodes.ControlPlane.count",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[test]
fn apply_to_appends_picks_and_marks_releases() {
    let ledger = vec![
        member("wk-1", W, HostState::Labeled),
        member("wk-2", W, HostState::Labeled),
    ];
    let s = spec(
        Some(role("cp", Some(RACK), 1, 0)),
        Some(role("worker", Some(SERVER), 1, 0)),
    );
    let d = run(&s, &ledger, &sample_pool());
    let next = d.apply_to(&ledger);
    let states: Vec<(&str, HostState)> = next.iter().map(|r| (r.name.as_str(), r.state)).collect();
    assert_eq!(
        states,
        [
            ("wk-1", HostState::Labeled),
            ("wk-2", HostState::Releasing),
            ("cp-1", HostState::Chosen)
        ]
    );
    assert_eq!(next[2].topology_domain.as_deref(), Some("r1"));
    assert_eq!(next[2].uid.as_deref(), Some("uid-cp-1"));
    assert_eq!(next[1].reason.as_deref(), Some("more hosts than wanted"));
}

#[test]
fn input_order_does_not_change_the_decision() {
    let mut hosts = sample_pool();
    let a = run(&sample_spec(), &[], &hosts);
    hosts.reverse();
    let b = run(&sample_spec(), &[], &hosts);
    assert_eq!(a, b);
}

#[test]
fn large_inventories_classified_on_several_threads_decide_as_one_pass_would() {
    // Above the parallel threshold; claims and a short rack make the chunks disagree unless
    // they are merged in order. The best host of each rack is in the last chunk.
    let n = 45_000;
    let mut hosts: Vec<HostView> = (0..n)
        .map(|i| {
            let flavor = if i % 10 == 0 { "cp" } else { "worker" };
            host(&format!("h-{:05}", n - i))
                .flavor(flavor)
                .rack(&format!("r{}", i % 7))
                .server(&format!("s{}", i / 2))
                .build()
        })
        .collect();
    let claimed: HashSet<HostKey> = hosts.iter().step_by(3).map(|h| h.key.clone()).collect();
    let spec = spec(
        Some(role("cp", Some(RACK), 3, 0)),
        Some(role("worker", Some(SERVER), 4, 1)),
    );
    let forward = run_with_claims(&spec, &[], &hosts, &claimed);
    hosts.reverse();
    let backward = run_with_claims(&spec, &[], &hosts, &claimed);
    assert_eq!(forward, backward, "the inventory's order must not matter");
    let cp = added(&forward, NodeRole::ControlPlane);
    assert_eq!(cp.len(), 3);
    // Each chosen control-plane host is its rack's smallest free name.
    for name in &cp {
        let h = hosts.iter().find(|h| h.key.name() == name).unwrap();
        let rack = &h.labels[RACK];
        let best = hosts
            .iter()
            .filter(|o| o.labels[RACK] == *rack && o.labels[FLAVOR] == "cp")
            .filter(|o| !claimed.contains(&o.key))
            .map(|o| o.key.name())
            .min()
            .unwrap();
        assert_eq!(name, best, "rack {rack}");
    }
}
