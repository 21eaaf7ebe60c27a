//! What extraction records in the ledger, and what it does not read again.

use super::*;

fn record(state: HostState, addresses: &[(&str, &str)]) -> HostRecord {
    HostRecord {
        name: "cp-1".into(),
        namespace: "metal3".into(),
        uid: None,
        role: NodeRole::ControlPlane,
        state,
        reason: None,
        topology_domain: None,
        addresses: addresses
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        bmc_address: None,
    }
}

#[test]
fn already_extracted_hosts_are_not_read_again() {
    let needs = required_interfaces(&services("oam-ipv4", "oam-ipv4"));
    let cases = [
        (record(HostState::Chosen, &[]), true, "never read"),
        (
            record(HostState::Extracted, &[("oam-ipv4", "10.0.0.1")]),
            false,
            "extracted",
        ),
        (
            record(HostState::Labeled, &[("oam-ipv4", "10.0.0.1")]),
            false,
            "labeled",
        ),
        (
            record(HostState::Labeled, &[("pxe-ipv4", "10.0.0.1")]),
            true,
            "a new interface is needed",
        ),
        (record(HostState::Unusable, &[]), false, "unusable"),
        (record(HostState::Releasing, &[]), false, "releasing"),
    ];
    for (r, want, msg) in cases {
        assert_eq!(needs_extraction(&r, &needs), want, "{msg}");
    }
}

#[test]
fn outcomes_are_recorded_in_the_ledger() {
    let svc = services("oam-ipv4", "oam-ipv4");
    let mut r = record(HostState::Chosen, &[]);
    record_outcome(
        &mut r,
        &run(
            Some(&secret(&[("networkData", ND_JSON)])),
            Some(&creds()),
            &svc,
        ),
    );
    assert_eq!(r.state, HostState::Extracted);
    assert_eq!(r.addresses["oam-ipv4"], "192.168.100.11");
    assert_eq!(
        r.bmc_address.as_deref(),
        Some("redfish+https://10.23.0.11:8443/redfish/v1/Systems/1")
    );

    let mut r = record(HostState::Chosen, &[]);
    record_outcome(&mut r, &run(None, Some(&creds()), &svc));
    assert_eq!(r.state, HostState::Unusable);
    assert!(r.reason.unwrap().contains("not found"));

    // A labeled host that can no longer serve is released: its labels must go first.
    let mut r = record(HostState::Labeled, &[("pxe-ipv4", "10.0.0.1")]);
    record_outcome(&mut r, &run(None, Some(&creds()), &svc));
    assert_eq!(r.state, HostState::Releasing);
}

#[test]
fn a_successful_read_clears_why_the_host_was_unusable_but_keeps_the_adoption_note() {
    let svc = services("oam-ipv4", "oam-ipv4");
    let good = run(
        Some(&secret(&[("networkData", ND_JSON)])),
        Some(&creds()),
        &svc,
    );
    let cases = [
        (Some("networkData Secret not found".to_string()), None),
        (
            Some(crate::scheduling::ADOPTED.to_string()),
            Some(crate::scheduling::ADOPTED),
        ),
        (None, None),
    ];
    for (before, after) in cases {
        let mut r = record(HostState::Chosen, &[]);
        r.reason = before.clone();
        record_outcome(&mut r, &good);
        assert_eq!(r.reason.as_deref(), after, "reason before: {before:?}");
    }
}

#[test]
fn network_data_outside_the_hosts_namespace_is_refused_unread() {
    let mut h = host();
    let own = h.metadata.namespace.clone().unwrap();
    let cases = [
        (None, false, "no namespace: the host's own"),
        (Some(own.clone()), false, "the host's own, named"),
        (Some(String::new()), false, "empty: the host's own"),
        (Some("kube-system".to_string()), true, "another namespace"),
    ];
    for (namespace, refused, msg) in cases {
        h.spec.network_data.as_mut().unwrap().namespace = namespace;
        let got = network_data_elsewhere(&h);
        assert_eq!(got.is_some(), refused, "{msg}");
        if let Some(e) = got {
            let text = e.to_string();
            assert!(
                text.contains("kube-system/") && text.contains("--network-data-any-namespace"),
                "{msg}: {text}"
            );
        }
    }
}
