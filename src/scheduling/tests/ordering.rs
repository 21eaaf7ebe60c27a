//! Order and scale: one role per host, the story of a shortfall, determinism, threads.

use super::*;

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
