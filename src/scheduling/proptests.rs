//! Properties over random inventories, ledgers and specs.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use proptest::prelude::*;

use super::tests::{FLAVOR, RACK, SERVER, cluster, spec};
use super::*;
use crate::api::{
    HostRecord, HostState, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, NodeCount, NodeRole,
    NodeSet, SIPClusterSpec,
};

#[derive(Clone, Debug)]
struct World {
    hosts: Vec<HostView>,
    claimed_elsewhere: HashSet<HostKey>,
}

fn label_value(prefix: &'static str, n: usize) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        8 => (0..n).prop_map(move |i| Some(format!("{prefix}{i}"))),
    ]
}

fn arb_host(i: usize) -> impl Strategy<Value = (HostView, bool)> {
    (
        prop_oneof![Just("cp"), Just("worker"), Just("both"), Just("none")],
        label_value("r", 5),
        label_value("s", 8),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(flavor, rack, server, paused, errored, deleting, nd, other, claimed, ns)| {
                let mut labels = std::collections::BTreeMap::new();
                labels.insert(FLAVOR.to_string(), flavor.to_string());
                if let Some(r) = rack {
                    labels.insert(RACK.to_string(), r);
                }
                if let Some(s) = server {
                    labels.insert(SERVER.to_string(), s);
                }
                if other {
                    labels.insert(LABEL_CLUSTER_NAME.to_string(), "someone-else".to_string());
                    labels.insert(LABEL_CLUSTER_NAMESPACE.to_string(), "tenant".to_string());
                }
                let host = HostView {
                    key: HostKey::new(if ns { "other" } else { "metal3" }, format!("h{i:02}")),
                    uid: Some(format!("uid-{i}")),
                    labels: labels.into(),
                    deleting,
                    paused,
                    errored,
                    unhealthy: false,
                    release_requested: false,
                    has_network_data: nd,
                    consumer: None,
                };
                (host, claimed)
            },
        )
}

fn arb_world() -> impl Strategy<Value = World> {
    (0usize..40)
        .prop_flat_map(|n| (0..n).map(arb_host).collect::<Vec<_>>())
        .prop_map(|hosts| World {
            claimed_elsewhere: hosts
                .iter()
                .filter(|(_, c)| *c)
                .map(|(h, _)| h.key.clone())
                .collect(),
            hosts: hosts.into_iter().map(|(h, _)| h).collect(),
        })
}

fn selector(flavors: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: FLAVOR.into(),
            operator: "In".into(),
            values: Some(flavors.iter().map(|f| f.to_string()).collect()),
        }]),
    }
}

fn arb_role(flavors: &'static [&'static str]) -> impl Strategy<Value = Option<NodeSet>> {
    prop::option::weighted(
        0.85,
        (
            0u32..4,
            0u32..3,
            prop_oneof![Just(None), Just(Some(RACK)), Just(Some(SERVER))],
        )
            .prop_map(move |(active, standby, topo)| NodeSet {
                label_selector: selector(flavors),
                topology_key: topo.map(str::to_string),
                count: Some(NodeCount { active, standby }),
            }),
    )
}

fn arb_spec() -> impl Strategy<Value = SIPClusterSpec> {
    (arb_role(&["cp", "both"]), arb_role(&["worker", "both"])).prop_map(|(c, w)| spec(c, w))
}

fn decide(world: &World, spec: &SIPClusterSpec, ledger: &[HostRecord]) -> Decision {
    schedule(&Inputs {
        cluster: &cluster(),
        spec,
        ledger,
        hosts: &world.hosts,
        claimed_elsewhere: &world.claimed_elsewhere,
        claimable: None,
    })
}

/// What the controller does after Gathering: releases finish (labels removed, records
/// dropped), chosen hosts end up labeled.
fn settle(ledger: Vec<HostRecord>) -> Vec<HostRecord> {
    ledger
        .into_iter()
        .filter(|r| r.state != HostState::Releasing)
        .map(|mut r| {
            r.state = HostState::Labeled;
            r
        })
        .collect()
}

fn members(ledger: &[HostRecord], role: NodeRole) -> Vec<&HostRecord> {
    ledger
        .iter()
        .filter(|r| r.role == role && r.state.is_member())
        .collect()
}

/// Invariants of any decision applied to a ledger that satisfied them.
fn check(world: &World, spec: &SIPClusterSpec, before: &[HostRecord], d: &Decision) {
    let after = d.apply_to(before);
    let hosts: HashMap<&HostKey, &HostView> = world.hosts.iter().map(|h| (&h.key, h)).collect();
    let before_keys: HashSet<HostKey> = before.iter().map(HostKey::of_record).collect();

    // No host twice in the ledger, in any role.
    let mut seen = HashSet::new();
    for r in &after {
        assert!(
            seen.insert(HostKey::of_record(r)),
            "{} twice in the ledger",
            r.name
        );
    }

    for role in NodeRole::ALL {
        let set = spec.nodes.get(&role);
        let wanted = set.map_or(0, NodeSet::wanted);
        let m = members(&after, role);
        if d.is_schedulable() {
            assert_eq!(
                m.len() as u32,
                wanted,
                "{role}: members must equal active+standby"
            );
        } else {
            assert!(
                d.roles[&role].add.is_empty(),
                "{role}: nothing added when unschedulable"
            );
        }
        // One member per topology domain.
        if let Some(key) = set.and_then(NodeSet::topology_key) {
            let mut domains = HashSet::new();
            for r in &m {
                let domain = hosts[&HostKey::of_record(r)].domain(key);
                let domain = domain.unwrap_or_else(|| panic!("{role}: {} has no {key}", r.name));
                assert!(domains.insert(domain), "{role}: two members in {domain}");
            }
        }
        // A newly added host is free and eligible.
        for pick in &d.roles[&role].add {
            let h = hosts[&pick.key];
            assert!(
                !before_keys.contains(&pick.key),
                "{} was already in the ledger",
                pick.key
            );
            assert!(
                !world.claimed_elsewhere.contains(&pick.key),
                "{} claimed elsewhere",
                pick.key
            );
            assert!(
                !h.labeled_for_other(&cluster()),
                "{} labeled for another",
                pick.key
            );
            assert!(
                !h.unavailable() && h.has_network_data,
                "{} not eligible",
                pick.key
            );
        }
    }
}

/// What happens to one host of the pool between two decisions.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Change {
    Same,
    Gone,
    Paused,
    /// Claimed by another cluster (only a host that is not this cluster's member can be).
    TakenElsewhere,
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => Just(Change::Same),
        1 => Just(Change::Gone),
        1 => Just(Change::Paused),
        1 => Just(Change::TakenElsewhere),
    ]
}

/// A world, a spec, what happens to each host afterwards, and hosts added meanwhile.
fn arb_churn() -> impl Strategy<Value = (World, SIPClusterSpec, Vec<Change>, Vec<HostView>)> {
    (arb_world(), arb_spec()).prop_flat_map(|(world, spec)| {
        let n = world.hosts.len();
        let added = (0usize..6)
            .prop_flat_map(|k| (0..k).map(|j| arb_host(40 + j)).collect::<Vec<_>>())
            .prop_map(|hosts| hosts.into_iter().map(|(h, _)| h).collect::<Vec<_>>());
        (
            Just(world),
            Just(spec),
            proptest::collection::vec(arb_change(), n),
            added,
        )
    })
}

/// The pool after `changes` (by position) and `added`; a change to a member of `ledger` that
/// only another cluster could make is left out.
fn churned(world: &World, ledger: &[HostRecord], changes: &[Change], added: &[HostView]) -> World {
    let ours: HashSet<HostKey> = ledger.iter().map(HostKey::of_record).collect();
    let mut after = World {
        hosts: Vec::new(),
        claimed_elsewhere: world.claimed_elsewhere.clone(),
    };
    for (host, change) in world.hosts.iter().zip(changes) {
        let mut host = host.clone();
        match change {
            Change::Gone => continue,
            Change::Paused => host.paused = true,
            Change::TakenElsewhere if !ours.contains(&host.key) => {
                after.claimed_elsewhere.insert(host.key.clone());
            }
            _ => {}
        }
        after.hosts.push(host);
    }
    after.hosts.extend(added.iter().cloned());
    after
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The pool changes under a settled cluster (hosts gone, paused, taken by others, added),
    /// its spec does not: every member whose host did not change is kept, and the decision
    /// still respects every invariant.
    #[test]
    fn members_that_still_fit_are_kept_whatever_happens_to_the_pool(
        (world, spec, changes, added) in arb_churn(),
    ) {
        let d = decide(&world, &spec, &[]);
        prop_assume!(d.is_schedulable());
        let ledger = settle(d.apply_to(&[]));
        let after = churned(&world, &ledger, &changes, &added);
        let next = decide(&after, &spec, &ledger);
        check(&after, &spec, &ledger, &next);
        let unchanged: HashSet<&HostKey> = world
            .hosts
            .iter()
            .zip(&changes)
            .filter(|(h, c)| **c == Change::Same || (**c == Change::TakenElsewhere
                && ledger.iter().any(|r| HostKey::of_record(r) == h.key)))
            .map(|(h, _)| &h.key)
            .collect();
        for role in NodeRole::ALL {
            let kept: HashSet<&HostKey> = next.roles[&role].keep.iter().collect();
            for r in members(&ledger, role) {
                let key = HostKey::of_record(r);
                if unchanged.contains(&key) {
                    prop_assert!(kept.contains(&key), "{} fits and was not kept: {:?}", key, next);
                }
            }
        }
    }

    #[test]
    fn decisions_respect_every_invariant(world in arb_world(), spec in arb_spec()) {
        let d = decide(&world, &spec, &[]);
        check(&world, &spec, &[], &d);
    }

    #[test]
    fn same_input_same_output_whatever_the_order(world in arb_world(), spec in arb_spec()) {
        let a = decide(&world, &spec, &[]);
        let mut reversed = world.clone();
        reversed.hosts.reverse();
        prop_assert_eq!(&a, &decide(&reversed, &spec, &[]));
        prop_assert_eq!(&a, &decide(&world, &spec, &[]));
    }

    #[test]
    fn a_settled_schedule_is_a_fixpoint(world in arb_world(), spec in arb_spec()) {
        let d = decide(&world, &spec, &[]);
        prop_assume!(d.is_schedulable());
        let ledger = settle(d.apply_to(&[]));
        let again = decide(&world, &spec, &ledger);
        prop_assert!(again.changes_nothing(), "second decision changed something: {:?}", again);
    }

    #[test]
    fn changing_the_spec_and_back_converges(
        world in arb_world(), a in arb_spec(), b in arb_spec(),
    ) {
        let d = decide(&world, &a, &[]);
        prop_assume!(d.is_schedulable());
        let ledger_a = settle(d.apply_to(&[]));

        let to_b = decide(&world, &b, &ledger_a);
        check(&world, &b, &ledger_a, &to_b);
        let ledger_b = settle(to_b.apply_to(&ledger_a));

        let back = decide(&world, &a, &ledger_b);
        check(&world, &a, &ledger_b, &back);
        let ledger_back = settle(back.apply_to(&ledger_b));
        if back.is_schedulable() {
            for role in NodeRole::ALL {
                let wanted = a.nodes.get(&role).map_or(0, NodeSet::wanted);
                prop_assert_eq!(members(&ledger_back, role).len() as u32, wanted);
            }
            prop_assert!(decide(&world, &a, &ledger_back).changes_nothing());
        }
        // Members that still fit the spec are never dropped on the way back.
        for role in NodeRole::ALL {
            let kept: HashSet<&HostKey> = back.roles[&role].keep.iter().collect();
            let released: HashSet<&HostKey> =
                back.roles[&role].release.iter().map(|r| &r.key).collect();
            for r in members(&ledger_b, role) {
                let key = HostKey::of_record(r);
                prop_assert!(kept.contains(&key) || released.contains(&key),
                    "{} neither kept nor released", key);
            }
        }
    }
}
