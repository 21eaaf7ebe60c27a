//! What a shortfall says: its counts and its reason, for a person to act on.

use super::*;

#[test]
fn an_invalid_selector_says_so_and_what_was_wanted() {
    // Only an object that bypassed admission can hold one: an operator kube cannot read.
    let mut cp = role("cp", Some(RACK), 2, 1);
    cp.label_selector.match_expressions = Some(vec![LabelSelectorRequirement {
        key: FLAVOR.into(),
        operator: "Resembles".into(),
        values: Some(vec!["cp".into()]),
    }]);
    let d = run(&spec(Some(cp), None), &[], &sample_pool());
    let short = d.roles[&CP]
        .shortfall
        .as_ref()
        .expect("an invalid selector");
    assert_eq!((short.role, short.wanted), (Some(CP), 3));
    assert!(short.invalid_selector.is_some());
    assert!(
        short
            .to_string()
            .starts_with("ControlPlane: the label selector is invalid"),
        "{short}"
    );
    assert!(d.roles[&CP].add.is_empty());
}

#[test]
fn a_shortfall_counts_the_ledgers_hosts_by_what_they_are_to_the_role() {
    // Both roles take the same flavor: a host can be this role's member, the other's, or
    // marked unusable in this ledger.
    let hosts: Vec<HostView> = ["a", "b", "c", "d"]
        .map(|n| host(n).flavor("cp").build())
        .into();
    let ledger = [
        member("a", CP, HostState::Labeled),
        member("b", CP, HostState::Labeled),
        member("c", W, HostState::Labeled),
        member("d", CP, HostState::Unusable),
    ];
    let both = spec(Some(role("cp", None, 4, 0)), Some(role("cp", None, 1, 0)));
    let d = run(&both, &ledger, &hosts);
    let short = d.roles[&CP].shortfall.as_ref().expect("two of four");
    let c = &short.counts;
    assert_eq!(
        (c.matching, c.members, c.other_role, c.unusable, c.free),
        (4, 2, 1, 1, 0),
        "{c:?}"
    );
}
