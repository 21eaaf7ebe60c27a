//! OpenStack network_data (as metal3 passes it to the host), in JSON or YAML: find the
//! address a service should use to reach the host.
//!
//! The interface a service names (`nodeInterfaceId`) is looked up as the predecessor did, as a
//! network `id`; failing that, as the `link` a network sits on.

use std::net::IpAddr;

use serde_json::Value;

/// The parsed document, kept as JSON so that any shape of the rest of it is tolerated.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkData(Value);

/// Where parsing failed. Positions only: the text is a Secret's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// No network has that id or link.
    Absent,
    /// The network has no `ip_address` (a DHCP network, say).
    NoAddress,
    /// `ip_address` is not an IPv4 or IPv6 address (an optional `/prefix` is allowed).
    Invalid,
}

pub fn parse_network_data(raw: &[u8]) -> Result<NetworkData, ParseError> {
    let text = std::str::from_utf8(raw)
        .map_err(|e| ParseError(format!("not UTF-8 after byte {}", e.valid_up_to())))?;
    let json_error = match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => return Ok(NetworkData(v)),
        Ok(_) => return Err(ParseError("the document is not a mapping".into())),
        Err(e) => e,
    };
    match serde_norway::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(NetworkData(v)),
        Ok(_) => Err(ParseError("the document is not a mapping".into())),
        Err(yaml_error) => {
            // Report the error of the syntax the text looks like.
            if text.trim_start().starts_with('{') {
                Err(ParseError(format!(
                    "JSON error at line {} column {}",
                    json_error.line(),
                    json_error.column()
                )))
            } else {
                Err(ParseError(match yaml_error.location() {
                    Some(l) => format!("YAML error at line {} column {}", l.line(), l.column()),
                    None => "YAML error".to_string(),
                }))
            }
        }
    }
}

impl NetworkData {
    fn networks(&self) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
        self.0
            .get("networks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
    }

    /// The address on `interface`.
    pub fn address_on(&self, interface: &str) -> Result<IpAddr, LookupError> {
        let is = |net: &serde_json::Map<String, Value>, field: &str| {
            net.get(field).and_then(Value::as_str) == Some(interface)
        };
        let network = self
            .networks()
            .find(|n| is(n, "id"))
            .or_else(|| self.networks().find(|n| is(n, "link")))
            .ok_or(LookupError::Absent)?;
        let raw = match network.get("ip_address") {
            None | Some(Value::Null) => return Err(LookupError::NoAddress),
            Some(Value::String(s)) => s.trim(),
            Some(_) => return Err(LookupError::Invalid),
        };
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| LookupError::Invalid)?;
        if let Some(p) = prefix {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match p.parse::<u8>() {
                Ok(bits) if bits <= max && p.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => return Err(LookupError::Invalid),
            }
        }
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
      "links": [{"id": "oam-ipv4", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
                {"id": "pxe", "type": "phy"}],
      "networks": [{"id": "oam-ipv4", "type": "ipv4", "link": "oam-ipv4", "ip_address": "192.168.100.11", "netmask": "255.255.255.0"},
                   {"id": "net-pxe", "type": "ipv4", "link": "pxe", "ip_address": "172.3.3.11/24"},
                   {"id": "v6", "type": "ipv6", "link": "oam-ipv4", "ip_address": "fd00:100::11"},
                   {"id": "dhcp", "type": "ipv4_dhcp", "link": "pxe"}],
      "services": [{"type": "dns", "address": "8.8.8.8"}]
    }"#;

    const YAML: &str = "
links:
  - id: oam-ipv4
    type: phy
networks:
  - id: oam-ipv4
    link: oam-ipv4
    type: ipv4
    ip_address: 192.168.100.12
    routes:
      - network: 0.0.0.0
        gateway: 192.168.100.1
";

    #[test]
    fn finds_addresses_in_json_and_yaml() {
        let nd = parse_network_data(JSON.as_bytes()).unwrap();
        let cases: &[(&str, Result<&str, LookupError>, &str)] = &[
            ("oam-ipv4", Ok("192.168.100.11"), "network id"),
            ("pxe", Ok("172.3.3.11"), "by link, prefix stripped"),
            ("v6", Ok("fd00:100::11"), "IPv6"),
            (
                "dhcp",
                Err(LookupError::NoAddress),
                "dhcp network has no address",
            ),
            ("storage", Err(LookupError::Absent), "absent interface"),
        ];
        for (interface, want, msg) in cases {
            let got = nd.address_on(interface);
            let want = want.clone().map(|s| s.parse::<IpAddr>().unwrap());
            assert_eq!(got, want, "{msg}");
        }
        let nd = parse_network_data(YAML.as_bytes()).unwrap();
        assert_eq!(
            nd.address_on("oam-ipv4").unwrap().to_string(),
            "192.168.100.12"
        );
    }

    #[test]
    fn invalid_addresses_are_refused() {
        for bad in [
            "300.1.1.1",
            "10.0.0.1/33",
            "fd00::1/129",
            "10.0.0.1/x",
            "",
            "host.example",
            "10.0.0.1/+8",
        ] {
            let doc = format!(r#"{{"networks": [{{"id": "n", "ip_address": "{bad}"}}]}}"#);
            let nd = parse_network_data(doc.as_bytes()).unwrap();
            assert_eq!(nd.address_on("n"), Err(LookupError::Invalid), "{bad:?}");
        }
        let nd = parse_network_data(br#"{"networks": [{"id": "n", "ip_address": 10}]}"#).unwrap();
        assert_eq!(nd.address_on("n"), Err(LookupError::Invalid));
    }

    #[test]
    fn unreadable_documents_report_a_position_and_no_content() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"networks\": [", "JSON error at line 1"),
            (b"networks: [\n  - id: \"unterminated", "YAML error at line"),
            (b"just a string", "not a mapping"),
            (b"[1, 2]", "not a mapping"),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (raw, want) in cases {
            let err = parse_network_data(raw).unwrap_err();
            assert!(err.0.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.0.contains("unterminated") && !err.0.contains("just a string"));
        }
    }

    #[test]
    fn documents_without_networks_have_no_interfaces() {
        for doc in [
            "{}",
            r#"{"networks": "oops"}"#,
            r#"{"networks": [1, null, "x"]}"#,
            "links: []",
        ] {
            let nd = parse_network_data(doc.as_bytes()).unwrap();
            assert_eq!(nd.address_on("oam-ipv4"), Err(LookupError::Absent), "{doc}");
        }
    }
}
