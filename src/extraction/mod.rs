//! Extracting's pure core: from a host and its Secrets (already read by the controller), the
//! address on every interface the services need, and the BMC endpoint; or a typed error that
//! becomes the host's reason in the ledger.
//!
//! Credentials are checked here but never stored: whoever needs them (the jump host) reads them
//! again with [`read_credentials`] and drops them after use.

pub mod bmc;
pub mod credentials;
mod error;
pub mod network_data;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{BareMetalHost, HostRecord, HostState, Services};
use crate::scheduling::HostKey;

pub use bmc::{BmcAddressError, BmcEndpoint, parse_bmc_address};
pub use credentials::{BmcCredentials, Password};
pub use error::ExtractionError;
pub use network_data::{LookupError, NetworkData, parse_network_data};

/// The Secret key holding network_data.
pub const NETWORK_DATA_KEY: &str = "networkData";

/// An interface some services need, and which services (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceNeed {
    pub interface: String,
    pub services: Vec<String>,
}

/// Every interface any configured service uses, each once, in name order.
pub fn required_interfaces(services: &Services) -> Vec<InterfaceNeed> {
    let mut needs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let uses = services
        .load_balancer_control_plane
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("loadBalancerControlPlane[{i}]"), &s.common))
        .chain(
            services
                .load_balancer_worker
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("loadBalancerWorker[{i}]"), &s.common)),
        )
        .chain(
            services
                .jump_host
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("jumpHost[{i}]"), &s.common)),
        );
    for (service, common) in uses {
        needs
            .entry(common.node_interface_id.as_str())
            .or_default()
            .insert(service);
    }
    needs
        .into_iter()
        .map(|(interface, services)| InterfaceNeed {
            interface: interface.to_string(),
            services: services.into_iter().collect(),
        })
        .collect()
}

/// `(namespace, name)` of the host's networkData Secret; the namespace defaults to the host's.
pub fn network_data_secret_ref(host: &BareMetalHost) -> Option<(String, String)> {
    let r = host.spec.network_data.as_ref()?;
    let name = r.name.as_deref().filter(|n| !n.is_empty())?;
    let namespace = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| host.metadata.namespace.clone())
        .unwrap_or_default();
    Some((namespace, name.to_string()))
}

/// Refuses a networkData reference outside the host's namespace: the operator may read Secrets
/// in every namespace it serves, so following such a reference would let whoever may edit a
/// BareMetalHost read any Secret through it. `None`: the reference (if any) is the host's own.
pub fn network_data_elsewhere(host: &BareMetalHost) -> Option<ExtractionError> {
    let (namespace, name) = network_data_secret_ref(host)?;
    let own = host.metadata.namespace.as_deref().unwrap_or_default();
    (namespace != own).then(|| ExtractionError::NetworkDataElsewhere {
        host: key_of(host),
        secret: format!("{namespace}/{name}"),
    })
}

/// `(namespace, name)` of the host's BMC credentials Secret (always the host's namespace).
pub fn credentials_secret_ref(host: &BareMetalHost) -> Option<(String, String)> {
    let name = host
        .spec
        .bmc
        .as_ref()
        .map(|b| b.credentials_name.as_str())
        .filter(|n| !n.is_empty())?;
    Some((
        host.metadata.namespace.clone().unwrap_or_default(),
        name.to_string(),
    ))
}

/// What Extracting learns of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub addresses: BTreeMap<String, IpAddr>,
    pub bmc: BmcEndpoint,
    /// The address as written in the host's spec.
    pub bmc_address: String,
}

/// The Secrets the controller read for one host; `None` where the Secret does not exist.
#[derive(Clone, Copy, Default)]
pub struct HostSecrets<'a> {
    pub network_data: Option<&'a Secret>,
    pub credentials: Option<&'a Secret>,
}

fn key_of(host: &BareMetalHost) -> HostKey {
    HostKey::new(
        host.metadata.namespace.as_deref().unwrap_or_default(),
        host.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.as_slice())
}

/// Reads everything a host must provide before it can serve: an address on every needed
/// interface, a usable BMC address and complete credentials.
pub fn extract(
    host: &BareMetalHost,
    needs: &[InterfaceNeed],
    secrets: HostSecrets<'_>,
) -> Result<Extracted, ExtractionError> {
    let key = key_of(host);
    let addresses = if needs.is_empty() {
        BTreeMap::new()
    } else {
        read_addresses(host, &key, needs, secrets.network_data)?
    };

    let bmc_address = host
        .spec
        .bmc
        .as_ref()
        .map(|b| b.address.clone())
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| ExtractionError::NoBmc { host: key.clone() })?;
    let bmc = parse_bmc_address(&bmc_address).map_err(|reason| ExtractionError::BmcAddress {
        host: key.clone(),
        reason,
    })?;
    // Checked now so a host with bad credentials is replaced before it is labeled; the
    // value itself is dropped here.
    read_credentials(host, secrets.credentials)?;
    Ok(Extracted {
        addresses,
        bmc,
        bmc_address,
    })
}

fn read_addresses(
    host: &BareMetalHost,
    key: &HostKey,
    needs: &[InterfaceNeed],
    secret: Option<&Secret>,
) -> Result<BTreeMap<String, IpAddr>, ExtractionError> {
    let (ns, name) = network_data_secret_ref(host)
        .ok_or_else(|| ExtractionError::NoNetworkDataRef { host: key.clone() })?;
    let secret_name = format!("{ns}/{name}");
    let secret = secret.ok_or_else(|| ExtractionError::NetworkDataSecretMissing {
        host: key.clone(),
        secret: secret_name.clone(),
    })?;
    let raw = secret_value(secret, NETWORK_DATA_KEY).ok_or_else(|| {
        ExtractionError::NetworkDataKeyMissing {
            host: key.clone(),
            secret: secret_name.clone(),
            key: NETWORK_DATA_KEY,
        }
    })?;
    let data = parse_network_data(raw).map_err(|e| ExtractionError::NetworkDataUnreadable {
        host: key.clone(),
        secret: secret_name.clone(),
        detail: e.0,
    })?;
    // Every interface, every service: a host missing the second interface is refused too.
    let mut addresses = BTreeMap::new();
    for need in needs {
        let services = need.services.join(", ");
        let interface = need.interface.clone();
        let ip = data.address_on(&need.interface).map_err(|e| {
            let (host, secret) = (key.clone(), secret_name.clone());
            match e {
                LookupError::Absent => ExtractionError::InterfaceAbsent {
                    host,
                    secret,
                    interface,
                    services,
                },
                LookupError::NoAddress => ExtractionError::AddressMissing {
                    host,
                    secret,
                    interface,
                    services,
                },
                LookupError::Invalid => ExtractionError::AddressInvalid {
                    host,
                    secret,
                    interface,
                },
            }
        })?;
        addresses.insert(need.interface.clone(), ip);
    }
    Ok(addresses)
}

/// The host's BMC credentials, for the moment they are needed.
pub fn read_credentials(
    host: &BareMetalHost,
    secret: Option<&Secret>,
) -> Result<BmcCredentials, ExtractionError> {
    let key = key_of(host);
    let (ns, name) = credentials_secret_ref(host)
        .ok_or_else(|| ExtractionError::NoCredentialsRef { host: key.clone() })?;
    let secret_name = format!("{ns}/{name}");
    let secret = secret.ok_or_else(|| ExtractionError::CredentialsSecretMissing {
        host: key.clone(),
        secret: secret_name.clone(),
    })?;
    let field = |k: &'static str| {
        secret_value(secret, k)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ExtractionError::CredentialsIncomplete {
                host: key.clone(),
                secret: secret_name.clone(),
                key: k,
            })
    };
    Ok(BmcCredentials {
        username: field("username")?,
        password: Password::new(field("password")?),
        disable_certificate_verification: host
            .spec
            .bmc
            .as_ref()
            .is_some_and(|b| b.disable_certificate_verification),
    })
}

/// Whether a ledger member must be (re)read: never read, or a service now needs an interface
/// it has no address for. Hosts already extracted are not read again.
pub fn needs_extraction(record: &HostRecord, needs: &[InterfaceNeed]) -> bool {
    match record.state {
        HostState::Chosen => true,
        HostState::Extracted | HostState::Labeled => needs
            .iter()
            .any(|n| !record.addresses.contains_key(&n.interface)),
        HostState::Releasing | HostState::Unusable => false,
    }
}

/// Writes an extraction's outcome into the host's ledger record.
pub fn record_outcome(record: &mut HostRecord, outcome: &Result<Extracted, ExtractionError>) {
    match outcome {
        Ok(extracted) => {
            record.addresses = extracted
                .addresses
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            record.bmc_address = Some(extracted.bmc_address.clone());
            // A reason said why the host was unusable; the adoption note stays for the story.
            record.reason = record
                .reason
                .take()
                .filter(|r| r == crate::scheduling::ADOPTED);
            if record.state == HostState::Chosen {
                record.state = HostState::Extracted;
            }
        }
        Err(err) => {
            // A host that was never labeled is simply unusable; one that may carry this
            // cluster's labels is released, so its labels go before it leaves the ledger.
            record.state = if record.state == HostState::Chosen {
                HostState::Unusable
            } else {
                HostState::Releasing
            };
            record.reason = Some(err.to_string());
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
pub(crate) mod tests;
