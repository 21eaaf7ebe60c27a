//! Resizing: growing, shrinking, losing and keeping members.

use super::*;

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
