//! BMC addresses as metal3 accepts them: `scheme://host[:port][/path]` for every driver metal3
//! knows, or a bare `host[:port]` meaning IPMI.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How the BMC is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ipmi,
    Http,
    Https,
}

impl Transport {
    fn default_port(self) -> u16 {
        match self {
            Transport::Ipmi => 623,
            Transport::Http => 80,
            Transport::Https => 443,
        }
    }
}

/// The hardware family behind the scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Ipmi,
    Redfish,
    Idrac,
    Ilo4,
    Ilo5,
    Irmc,
    Ibmc,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Ipmi => "ipmi",
            Driver::Redfish => "redfish",
            Driver::Idrac => "idrac",
            Driver::Ilo4 => "ilo4",
            Driver::Ilo5 => "ilo5",
            Driver::Irmc => "irmc",
            Driver::Ibmc => "ibmc",
        }
    }
}

/// Every scheme metal3's BMC package accepts, with its driver and transport.
const SCHEMES: &[(&str, Driver, Transport)] = &[
    ("ipmi", Driver::Ipmi, Transport::Ipmi),
    ("libvirt", Driver::Ipmi, Transport::Ipmi),
    ("redfish", Driver::Redfish, Transport::Https),
    ("redfish+http", Driver::Redfish, Transport::Http),
    ("redfish+https", Driver::Redfish, Transport::Https),
    ("redfish-virtualmedia", Driver::Redfish, Transport::Https),
    (
        "redfish-virtualmedia+http",
        Driver::Redfish,
        Transport::Http,
    ),
    (
        "redfish-virtualmedia+https",
        Driver::Redfish,
        Transport::Https,
    ),
    ("redfish-uefihttp", Driver::Redfish, Transport::Https),
    ("redfish-uefihttp+http", Driver::Redfish, Transport::Http),
    ("redfish-uefihttp+https", Driver::Redfish, Transport::Https),
    ("idrac", Driver::Idrac, Transport::Https),
    ("idrac+http", Driver::Idrac, Transport::Http),
    ("idrac+https", Driver::Idrac, Transport::Https),
    ("idrac-redfish", Driver::Idrac, Transport::Https),
    ("idrac-redfish+http", Driver::Idrac, Transport::Http),
    ("idrac-redfish+https", Driver::Idrac, Transport::Https),
    ("idrac-virtualmedia", Driver::Idrac, Transport::Https),
    ("idrac-virtualmedia+http", Driver::Idrac, Transport::Http),
    ("idrac-virtualmedia+https", Driver::Idrac, Transport::Https),
    ("ilo4", Driver::Ilo4, Transport::Https),
    ("ilo4-virtualmedia", Driver::Ilo4, Transport::Https),
    ("ilo5", Driver::Ilo5, Transport::Https),
    ("ilo5-redfish", Driver::Ilo5, Transport::Https),
    ("ilo5-virtualmedia", Driver::Ilo5, Transport::Https),
    ("irmc", Driver::Irmc, Transport::Https),
    ("irmc-virtualmedia", Driver::Irmc, Transport::Https),
    ("ibmc", Driver::Ibmc, Transport::Https),
    ("ibmc+http", Driver::Ibmc, Transport::Http),
    ("ibmc+https", Driver::Ibmc, Transport::Https),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BmcEndpoint {
    /// The scheme as written (lowercased), `ipmi` for a bare address.
    pub scheme: String,
    pub driver: Driver,
    pub transport: Transport,
    /// Host name or IP, without IPv6 brackets.
    pub host: String,
    /// The explicit port, or the transport's default.
    pub port: u16,
    /// Everything after the authority, `""` when absent.
    pub path: String,
}

impl BmcEndpoint {
    /// The Redfish system's URL when the BMC speaks Redfish and the address names the system.
    pub fn redfish_system(&self) -> Option<String> {
        let http = match self.transport {
            Transport::Ipmi => return None,
            Transport::Http => "http",
            Transport::Https => "https",
        };
        let redfish = self.driver == Driver::Redfish || self.scheme.contains("redfish");
        (redfish && !self.path.is_empty())
            .then(|| format!("{http}://{}{}", self.host_port(), self.path))
    }

    /// `host:port`, bracketing IPv6, for a hosts list or a proxy exclusion.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What is wrong with an address. Never repeats the address: it might carry a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BmcAddressError {
    Empty,
    UnsupportedScheme(String),
    CredentialsInAddress,
    MissingHost,
    InvalidHost,
    InvalidPort,
}

impl fmt::Display for BmcAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BmcAddressError::Empty => f.write_str("it is empty"),
            BmcAddressError::UnsupportedScheme(s) => write!(
                f,
                "scheme {s:?} is not one metal3 accepts (ipmi, redfish[+http|+https], redfish-virtualmedia, idrac, idrac-redfish, idrac-virtualmedia, ilo4, ilo5, irmc, ibmc, ...)"
            ),
            BmcAddressError::CredentialsInAddress => f.write_str(
                "it carries user info; remove it and put the credentials in the credentialsName Secret",
            ),
            BmcAddressError::MissingHost => f.write_str("it has no host"),
            BmcAddressError::InvalidHost => {
                f.write_str("its host is neither an IP address nor a DNS name")
            }
            BmcAddressError::InvalidPort => f.write_str("its port is not a number in 1-65535"),
        }
    }
}

pub fn parse_bmc_address(address: &str) -> Result<BmcEndpoint, BmcAddressError> {
    let address = address.trim();
    if address.is_empty() {
        return Err(BmcAddressError::Empty);
    }
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("ipmi".to_string(), address),
    };
    let &(_, driver, transport) = SCHEMES
        .iter()
        .find(|(s, _, _)| *s == scheme)
        .ok_or_else(|| BmcAddressError::UnsupportedScheme(scheme.clone()))?;

    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(BmcAddressError::CredentialsInAddress);
    }
    let (host, port) = split_host_port(authority)?;
    Ok(BmcEndpoint {
        scheme,
        driver,
        transport,
        host,
        port: port.unwrap_or(transport.default_port()),
        path: path.to_string(),
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), BmcAddressError> {
    if authority.is_empty() {
        return Err(BmcAddressError::MissingHost);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(BmcAddressError::InvalidHost)?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| BmcAddressError::InvalidHost)?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':').ok_or(BmcAddressError::InvalidPort)?,
            )?),
        };
        return Ok((host.to_string(), port));
    }
    // An unbracketed IPv6 address cannot carry a port.
    if authority.matches(':').count() > 1 {
        authority
            .parse::<Ipv6Addr>()
            .map_err(|_| BmcAddressError::InvalidHost)?;
        return Ok((authority.to_string(), None));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(BmcAddressError::MissingHost);
    }
    if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
        return Err(BmcAddressError::InvalidHost);
    }
    Ok((host.to_string(), port))
}

fn parse_port(p: &str) -> Result<u16, BmcAddressError> {
    match p.parse::<u16>() {
        Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(BmcAddressError::InvalidPort),
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests;
