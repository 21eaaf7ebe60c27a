//! Fuzz-style properties: the parsers meet arbitrary input and never panic. They run in CI
//! with the rest of the suite (proptest), so they cannot rot.

use proptest::prelude::*;

use super::bmc::parse_bmc_address;
use super::network_data::parse_network_data;

/// Fragments that steer random input toward the parsers' interesting paths.
fn bmc_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("ipmi://"),
        Just("redfish+https://"),
        Just("idrac-virtualmedia://"),
        Just("REDFISH://"),
        Just("x://"),
        Just("://"),
    ];
    let host = prop_oneof![
        Just("10.0.0.1".to_string()),
        Just("[fd00::1]".to_string()),
        Just("[".to_string()),
        Just("fd00::1".to_string()),
        Just("user:pw@h".to_string()),
        "[a-z0-9.:\\[\\]@-]{0,20}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":623".to_string()),
        ":[0-9+-]{0,7}"
    ];
    let path = prop_oneof![Just(String::new()), "[/?#][ -~]{0,20}"];
    (scheme, host, port, path).prop_map(|(s, h, p, q)| format!("{s}{h}{p}{q}"))
}

fn network_data_like() -> impl Strategy<Value = Vec<u8>> {
    let ip = prop_oneof![
        Just("\"10.0.0.1\"".to_string()),
        Just("\"fd00::1/64\"".to_string()),
        Just("7".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        "\"[ -~]{0,12}\"",
    ];
    let doc = (ip, "[a-z-]{0,8}", any::<bool>()).prop_map(|(ip, id, yaml)| {
        if yaml {
            format!("networks:\n  - id: {id}\n    ip_address: {ip}\n")
        } else {
            format!(r#"{{"networks": [{{"id": "{id}", "link": "{id}", "ip_address": {ip}}}]}}"#)
        }
    });
    prop_oneof![
        doc.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..256),
        "[ -~\n\t]{0,200}".prop_map(String::into_bytes),
        // YAML constructs a parser must survive: anchors, aliases, tags, deep nesting.
        Just(b"a: &x [*x]".to_vec()),
        Just(b"networks: !!binary AAAA".to_vec()),
        Just("[".repeat(200).into_bytes()),
        Just("networks:\n".to_string() + &"  - ".repeat(100)).prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn bmc_parser_never_panics_on_any_string(s in any::<String>()) {
        let _ = parse_bmc_address(&s);
    }

    #[test]
    fn bmc_parser_never_panics_on_address_like_input(s in bmc_like()) {
        if let Ok(e) = parse_bmc_address(&s) {
            prop_assert!(!e.host.is_empty() && e.port > 0);
            prop_assert!(!e.host.contains('@'));
        }
    }

    #[test]
    fn network_data_parser_never_panics(raw in network_data_like(), interface in "[a-z-]{0,8}") {
        if let Ok(nd) = parse_network_data(&raw) {
            let _ = nd.address_on(&interface);
        }
    }
}
