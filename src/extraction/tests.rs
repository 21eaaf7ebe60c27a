//! The predecessor's extraction cases, and the ones it got wrong.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::*;
use crate::api::baremetalhost::{BmcDetails, SecretReference};
use crate::api::sipcluster::{
    JumpHost, LoadBalancerControlPlane, LoadBalancerWorker, ServiceCommon,
};
use crate::api::{BareMetalHostSpec, NodeRole};

fn host() -> BareMetalHost {
    let mut h = BareMetalHost::new(
        "cp-1",
        BareMetalHostSpec {
            online: Some(true),
            bmc: Some(BmcDetails {
                address: "redfish+https://10.23.0.11:8443/redfish/v1/Systems/1".into(),
                credentials_name: "cp-1-bmc".into(),
            }),
            network_data: Some(SecretReference {
                name: Some("cp-1-nd".into()),
                namespace: None,
            }),
        },
    );
    h.metadata.namespace = Some("metal3".into());
    h
}

fn secret(pairs: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta::default(),
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn creds() -> Secret {
    secret(&[("username", b"admin"), ("password", b"s3cret-pw")])
}

const ND_JSON: &[u8] = br#"{"links": [{"id": "oam-ipv4"}, {"id": "pxe-ipv4"}],
  "networks": [{"id": "oam-ipv4", "link": "oam-ipv4", "type": "ipv4", "ip_address": "192.168.100.11"},
               {"id": "pxe-ipv4", "link": "pxe-ipv4", "type": "ipv4", "ip_address": "172.3.3.11"}]}"#;
const ND_YAML: &[u8] = b"networks:\n  - id: oam-ipv4\n    link: oam-ipv4\n    type: ipv4\n    ip_address: 192.168.100.12\n";

fn common(interface: &str) -> ServiceCommon {
    ServiceCommon {
        image: Some("haproxy".into()),
        node_interface_id: interface.into(),
        ..Default::default()
    }
}

/// Control-plane LB on `a`, jump host on `b`.
fn services(a: &str, b: &str) -> Services {
    Services {
        load_balancer_control_plane: vec![LoadBalancerControlPlane {
            common: common(a),
            node_port: Some(30001),
        }],
        load_balancer_worker: vec![LoadBalancerWorker {
            common: common(a),
            node_port_range: Default::default(),
        }],
        jump_host: vec![JumpHost {
            common: common(b),
            node_ssh_private_keys: "keys".into(),
            ..Default::default()
        }],
        auth: Vec::new(),
    }
}

fn run(
    nd: Option<&Secret>,
    cr: Option<&Secret>,
    svc: &Services,
) -> Result<Extracted, ExtractionError> {
    extract(
        &host(),
        &required_interfaces(svc),
        HostSecrets {
            network_data: nd,
            credentials: cr,
        },
    )
}

#[test]
fn every_service_every_interface_is_required_once() {
    let needs = required_interfaces(&services("oam-ipv4", "pxe-ipv4"));
    assert_eq!(
        needs,
        [
            InterfaceNeed {
                interface: "oam-ipv4".into(),
                services: vec![
                    "loadBalancerControlPlane[0]".into(),
                    "loadBalancerWorker[0]".into()
                ]
            },
            InterfaceNeed {
                interface: "pxe-ipv4".into(),
                services: vec!["jumpHost[0]".into()]
            },
        ]
    );
    assert!(required_interfaces(&Services::default()).is_empty());
}

#[test]
fn extracts_from_json_and_yaml_network_data() {
    let svc = services("oam-ipv4", "oam-ipv4");
    let got = run(
        Some(&secret(&[("networkData", ND_JSON)])),
        Some(&creds()),
        &svc,
    )
    .unwrap();
    assert_eq!(got.addresses["oam-ipv4"].to_string(), "192.168.100.11");
    assert_eq!(got.bmc.host_port(), "10.23.0.11:8443");
    let got = run(
        Some(&secret(&[("networkData", ND_YAML)])),
        Some(&creds()),
        &svc,
    )
    .unwrap();
    assert_eq!(got.addresses["oam-ipv4"].to_string(), "192.168.100.12");
}

#[test]
fn no_services_need_no_network_data_but_bmc_is_still_checked() {
    let got = run(None, Some(&creds()), &Services::default()).unwrap();
    assert!(got.addresses.is_empty());
    let err = run(None, None, &Services::default()).unwrap_err();
    assert!(
        matches!(err, ExtractionError::CredentialsSecretMissing { .. }),
        "{err}"
    );
}

#[test]
fn regression_a_host_missing_the_second_services_interface_is_refused() {
    // The predecessor never reset its "found" flag, so this host passed unnoticed.
    let nd = secret(&[("networkData", ND_YAML)]);
    let err = run(Some(&nd), Some(&creds()), &services("oam-ipv4", "pxe-ipv4")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "host metal3/cp-1: networkData in Secret metal3/cp-1-nd has no network with id (or link) pxe-ipv4, which jumpHost[0] need; add it or change nodeInterfaceId"
    );
}

/// (what, networkData Secret, credentials Secret, change to the host, expected message parts)
type FailureCase = (
    &'static str,
    Option<Secret>,
    Option<Secret>,
    Box<dyn Fn(&mut BareMetalHost)>,
    &'static [&'static str],
);

#[test]
fn each_failure_names_the_host_the_object_and_the_fix() {
    let svc = services("oam-ipv4", "oam-ipv4");
    let good_nd = secret(&[("networkData", ND_JSON)]);
    let cases: Vec<FailureCase> = vec![
        (
            "network data secret missing",
            None,
            Some(creds()),
            Box::new(|_| {}),
            &[
                "host metal3/cp-1",
                "Secret metal3/cp-1-nd not found",
                "create it",
            ],
        ),
        (
            "key missing",
            Some(secret(&[("other", b"x")])),
            Some(creds()),
            Box::new(|_| {}),
            &["Secret metal3/cp-1-nd has no key networkData"],
        ),
        (
            "garbage",
            Some(secret(&[("networkData", b"{not json")])),
            Some(creds()),
            Box::new(|_| {}),
            &["neither JSON nor YAML", "line 1", "fix its syntax"],
        ),
        (
            "ip invalid",
            Some(secret(&[(
                "networkData",
                br#"{"networks":[{"id":"oam-ipv4","ip_address":"999.1.1.1"}]}"#,
            )])),
            Some(creds()),
            Box::new(|_| {}),
            &["ip_address of network oam-ipv4", "not a valid IPv4 or IPv6"],
        ),
        (
            "no address",
            Some(secret(&[(
                "networkData",
                br#"{"networks":[{"id":"oam-ipv4","type":"ipv4_dhcp"}]}"#,
            )])),
            Some(creds()),
            Box::new(|_| {}),
            &["has no ip_address", "static address"],
        ),
        (
            "no networkData ref",
            Some(good_nd.clone()),
            Some(creds()),
            Box::new(|h| h.spec.network_data = None),
            &["spec.networkData names no Secret"],
        ),
        (
            "no bmc",
            Some(good_nd.clone()),
            Some(creds()),
            Box::new(|h| h.spec.bmc = None),
            &["has no spec.bmc.address"],
        ),
        (
            "bmc unparsable",
            Some(good_nd.clone()),
            Some(creds()),
            Box::new(|h| h.spec.bmc.as_mut().unwrap().address = "gopher://x".into()),
            &["spec.bmc.address is not usable", "\"gopher\""],
        ),
        (
            "credentials secret missing",
            Some(good_nd.clone()),
            None,
            Box::new(|_| {}),
            &["BMC credentials Secret metal3/cp-1-bmc not found"],
        ),
        (
            "password missing",
            Some(good_nd.clone()),
            Some(secret(&[("username", b"admin")])),
            Box::new(|_| {}),
            &["lacks a non-empty password"],
        ),
        (
            "username empty",
            Some(good_nd.clone()),
            Some(secret(&[("username", b""), ("password", b"p")])),
            Box::new(|_| {}),
            &["lacks a non-empty username"],
        ),
        (
            "credentials name empty",
            Some(good_nd.clone()),
            Some(creds()),
            Box::new(|h| h.spec.bmc.as_mut().unwrap().credentials_name.clear()),
            &["spec.bmc.credentialsName is empty"],
        ),
    ];
    for (what, nd, cr, mutate, needles) in cases {
        let mut h = host();
        mutate(&mut h);
        let err = extract(
            &h,
            &required_interfaces(&svc),
            HostSecrets {
                network_data: nd.as_ref(),
                credentials: cr.as_ref(),
            },
        )
        .expect_err(what);
        let msg = err.to_string();
        for needle in needles {
            assert!(msg.contains(needle), "{what}: {needle:?} not in {msg:?}");
        }
        assert!(!msg.contains("s3cret-pw"), "{what}: the password leaked");
    }
}

#[test]
fn network_data_in_another_namespace_is_referenced_there() {
    let mut h = host();
    h.spec.network_data.as_mut().unwrap().namespace = Some("shared".into());
    assert_eq!(
        network_data_secret_ref(&h),
        Some(("shared".into(), "cp-1-nd".into()))
    );
    assert_eq!(
        credentials_secret_ref(&h),
        Some(("metal3".into(), "cp-1-bmc".into()))
    );
}

#[test]
fn credentials_never_print_the_password() {
    let c = read_credentials(&host(), Some(&creds())).unwrap();
    assert_eq!(c.password.expose(), "s3cret-pw");
    let shown = format!("{c:?} {:?} {:#?}", c.password, c);
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("admin") && shown.contains("redacted"));
}

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
