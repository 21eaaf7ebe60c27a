//! Reading a host's Secrets: what is required, each format, each failure.

use super::*;

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
