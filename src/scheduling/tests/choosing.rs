//! Eligibility: which hosts may serve, adoption, topology.

use super::*;

#[test]
fn schedules_available_nodes_one_per_domain() {
    let d = run(&sample_spec(), &[], &sample_pool());
    assert!(d.is_schedulable());
    assert_eq!((d.roles[&CP].wanted, d.roles[&W].wanted), (2, 2));
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
fn hosts_held_by_another_consumer_are_not_chosen_but_members_keep_theirs() {
    let held = |h: &mut HostView| h.consumer = Some("Metal3Machine capi/m-1".into());
    let hosts = vec![
        host("a").flavor("cp").rack("r1").with(held).build(),
        host("b").flavor("cp").rack("r2").with(held).build(),
        host("c").flavor("cp").rack("r3").build(),
    ];
    let d = run(&spec(Some(role("cp", Some(RACK), 2, 0)), None), &[], &hosts);
    let short = d.roles[&CP]
        .shortfall
        .as_ref()
        .expect("one free host for two");
    assert_eq!(short.counts.held_by_consumer, 2);
    assert_eq!(short.addable, 1);
    assert!(
        short
            .to_string()
            .contains("2 held by another consumer (spec.consumerRef)"),
        "{short}"
    );

    // A member whose host a consumer takes later keeps it: nothing to re-decide.
    let ledger = [
        member("a", CP, HostState::Labeled),
        member("c", CP, HostState::Labeled),
    ];
    let d = run(
        &spec(Some(role("cp", Some(RACK), 2, 0)), None),
        &ledger,
        &hosts,
    );
    assert!(d.is_schedulable() && d.changes_nothing(), "{d:?}");
}

#[test]
fn hosts_outside_the_namespaces_a_cluster_may_claim_are_not_chosen_but_members_keep_theirs() {
    let elsewhere = |h: &mut HostView| h.key = HostKey::new("other-pool", h.key.name());
    let hosts = vec![
        host("a").flavor("cp").rack("r1").with(elsewhere).build(),
        host("b").flavor("cp").rack("r2").build(),
        host("c").flavor("cp").rack("r3").build(),
    ];
    let claimable = std::collections::BTreeSet::from(["metal3".to_string()]);
    let want_three = spec(Some(role("cp", Some(RACK), 3, 0)), None);
    let d = super::run_scoped(&want_three, &[], &hosts, &claimable);
    let short = d.roles[&CP]
        .shortfall
        .as_ref()
        .expect("two claimable for three");
    assert_eq!(short.counts.out_of_scope, 1);
    assert!(
        short.to_string().contains(
            "1 in namespaces this SIPCluster's may not claim from (the operator's --claimable-hosts)"
        ),
        "{short}"
    );
    let want_two = spec(Some(role("cp", Some(RACK), 2, 0)), None);
    let d = super::run_scoped(&want_two, &[], &hosts, &claimable);
    assert_eq!(added(&d, CP), ["b", "c"]);

    // A member from a namespace no longer allowed keeps its host.
    let mut kept = member("a", CP, HostState::Labeled);
    kept.namespace = "other-pool".into();
    let ledger = [kept, member("b", CP, HostState::Labeled)];
    let d = super::run_scoped(&want_two, &ledger, &hosts, &claimable);
    assert!(d.is_schedulable() && d.changes_nothing(), "{d:?}");
}

#[test]
fn a_host_both_roles_could_use_is_left_to_the_other_only_when_it_wants_hosts() {
    let hosts = vec![
        host("a").flavor("cp").label("gpu", "yes").build(),
        host("b").flavor("cp").build(),
    ];
    let gpu = |active| {
        let mut w = role("unused", None, active, 0);
        w.label_selector.match_labels = Some([("gpu".to_string(), "yes".to_string())].into());
        w
    };
    // The workers want none: the control plane takes the first by name.
    let d = run(
        &spec(Some(role("cp", None, 1, 0)), Some(gpu(0))),
        &[],
        &hosts,
    );
    assert_eq!(added(&d, CP), ["a"]);
    // The workers want the one they can use: the control plane takes the other.
    let d = run(
        &spec(Some(role("cp", None, 1, 0)), Some(gpu(1))),
        &[],
        &hosts,
    );
    assert_eq!(
        (added(&d, CP), added(&d, W)),
        (vec!["b".to_string()], vec!["a".to_string()])
    );
}
