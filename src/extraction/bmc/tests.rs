use super::*;

#[test]
fn every_metal3_scheme_parses_with_host_and_port() {
    let cases: &[(&str, &str, u16, Transport, &str)] = &[
        (
            "ipmi://192.168.111.1:6230",
            "192.168.111.1",
            6230,
            Transport::Ipmi,
            "explicit ipmi port",
        ),
        (
            "ipmi://10.0.0.1",
            "10.0.0.1",
            623,
            Transport::Ipmi,
            "default ipmi port",
        ),
        (
            "10.0.0.2",
            "10.0.0.2",
            623,
            Transport::Ipmi,
            "bare host is ipmi",
        ),
        (
            "bmc.example.com:6231",
            "bmc.example.com",
            6231,
            Transport::Ipmi,
            "bare host:port",
        ),
        (
            "redfish://10.1.1.1/redfish/v1/Systems/1",
            "10.1.1.1",
            443,
            Transport::Https,
            "redfish defaults to https",
        ),
        (
            "redfish+http://10.1.1.1:8000/redfish/v1/Systems/1",
            "10.1.1.1",
            8000,
            Transport::Http,
            "redfish+http",
        ),
        (
            "redfish+https://bmc-1.lab:8443/redfish/v1/Systems/1",
            "bmc-1.lab",
            8443,
            Transport::Https,
            "redfish+https",
        ),
        (
            "redfish-virtualmedia+https://10.1.1.1/redfish/v1/Systems/1",
            "10.1.1.1",
            443,
            Transport::Https,
            "virtualmedia",
        ),
        (
            "idrac://10.1.1.2",
            "10.1.1.2",
            443,
            Transport::Https,
            "idrac",
        ),
        (
            "idrac-redfish://10.1.1.2/redfish/v1/Systems/System.Embedded.1",
            "10.1.1.2",
            443,
            Transport::Https,
            "idrac-redfish",
        ),
        (
            "idrac-virtualmedia://10.1.1.2/redfish/v1/Systems/System.Embedded.1",
            "10.1.1.2",
            443,
            Transport::Https,
            "idrac-virtualmedia",
        ),
        ("ilo4://10.1.1.3", "10.1.1.3", 443, Transport::Https, "ilo4"),
        (
            "ilo5://10.1.1.3:8443",
            "10.1.1.3",
            8443,
            Transport::Https,
            "ilo5",
        ),
        ("irmc://10.1.1.4", "10.1.1.4", 443, Transport::Https, "irmc"),
        ("ibmc://10.1.1.5", "10.1.1.5", 443, Transport::Https, "ibmc"),
        (
            "ibmc+http://10.1.1.5",
            "10.1.1.5",
            80,
            Transport::Http,
            "ibmc+http",
        ),
        (
            "redfish://[fd00::1]:8443/redfish/v1",
            "fd00::1",
            8443,
            Transport::Https,
            "bracketed IPv6 with port",
        ),
        (
            "ipmi://[fd00::2]",
            "fd00::2",
            623,
            Transport::Ipmi,
            "bracketed IPv6",
        ),
        ("fd00::3", "fd00::3", 623, Transport::Ipmi, "bare IPv6"),
        (
            "  REDFISH://10.1.1.1  ",
            "10.1.1.1",
            443,
            Transport::Https,
            "case and spaces",
        ),
    ];
    for (address, host, port, transport, msg) in cases {
        let e = parse_bmc_address(address).unwrap_or_else(|err| panic!("{msg}: {err}"));
        assert_eq!(
            (e.host.as_str(), e.port, e.transport),
            (*host, *port, *transport),
            "{msg}"
        );
    }
    let e = parse_bmc_address("redfish://10.1.1.1/redfish/v1/Systems/1").unwrap();
    assert_eq!(
        (e.driver, e.path.as_str()),
        (Driver::Redfish, "/redfish/v1/Systems/1")
    );
    assert_eq!(
        parse_bmc_address("redfish://[fd00::1]")
            .unwrap()
            .host_port(),
        "[fd00::1]:443"
    );
}

#[test]
fn bad_addresses_say_what_is_wrong_without_repeating_them() {
    let cases: &[(&str, BmcAddressError)] = &[
        ("", BmcAddressError::Empty),
        ("   ", BmcAddressError::Empty),
        (
            "ftp://10.0.0.1",
            BmcAddressError::UnsupportedScheme("ftp".into()),
        ),
        (
            "redfish://admin:hunter2@10.0.0.1",
            BmcAddressError::CredentialsInAddress,
        ),
        ("redfish://", BmcAddressError::MissingHost),
        ("redfish:///redfish/v1", BmcAddressError::MissingHost),
        ("ipmi://:623", BmcAddressError::MissingHost),
        ("ipmi://10.0.0.1:0", BmcAddressError::InvalidPort),
        ("ipmi://10.0.0.1:99999", BmcAddressError::InvalidPort),
        ("ipmi://10.0.0.1:+80", BmcAddressError::InvalidPort),
        ("ipmi://10.0.0.1:", BmcAddressError::InvalidPort),
        ("ipmi://bad host", BmcAddressError::InvalidHost),
        ("ipmi://[fd00::1", BmcAddressError::InvalidHost),
        ("ipmi://[nothex]:1", BmcAddressError::InvalidHost),
        ("ipmi://[fd00::1]x", BmcAddressError::InvalidPort),
        ("fd00::zz", BmcAddressError::InvalidHost),
    ];
    for (address, want) in cases {
        let got = parse_bmc_address(address).unwrap_err();
        assert_eq!(&got, want, "{address:?}");
        assert!(!got.to_string().contains("hunter2"));
    }
}
