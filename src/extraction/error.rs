//! Why a host's data could not be read. Every message names the host, the object and key, and
//! what to fix; none quotes secret content.

use super::bmc::BmcAddressError;
use crate::scheduling::HostKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractionError {
    #[error(
        "host {host}: spec.networkData names no Secret; point it at a Secret holding the host's network_data under key networkData"
    )]
    NoNetworkDataRef { host: HostKey },

    #[error(
        "host {host}: spec.networkData names Secret {secret}, outside the host's namespace; sip reads networkData only from the host's own namespace (whoever may edit a BareMetalHost could otherwise have it read any Secret): move the Secret there, or run sip with --network-data-any-namespace"
    )]
    NetworkDataElsewhere { host: HostKey, secret: String },

    #[error(
        "host {host}: networkData Secret {secret} not found; create it or fix spec.networkData on the host"
    )]
    NetworkDataSecretMissing { host: HostKey, secret: String },

    #[error(
        "host {host}: Secret {secret} has no key {key}; put the host's OpenStack network_data under that key"
    )]
    NetworkDataKeyMissing {
        host: HostKey,
        secret: String,
        key: &'static str,
    },

    #[error(
        "host {host}: key networkData of Secret {secret} is neither JSON nor YAML network_data ({detail}); fix its syntax"
    )]
    NetworkDataUnreadable {
        host: HostKey,
        secret: String,
        detail: String,
    },

    #[error(
        "host {host}: networkData in Secret {secret} has no network with id (or link) {interface}, which {services} need; add it or change nodeInterfaceId"
    )]
    InterfaceAbsent {
        host: HostKey,
        secret: String,
        interface: String,
        services: String,
    },

    #[error(
        "host {host}: network {interface} in Secret {secret} has no ip_address; {services} need a static address there"
    )]
    AddressMissing {
        host: HostKey,
        secret: String,
        interface: String,
        services: String,
    },

    #[error(
        "host {host}: ip_address of network {interface} in Secret {secret} is not a valid IPv4 or IPv6 address; fix it"
    )]
    AddressInvalid {
        host: HostKey,
        secret: String,
        interface: String,
    },

    #[error(
        "host {host}: has no spec.bmc.address; set the BMC address so the jump host can power-cycle it"
    )]
    NoBmc { host: HostKey },

    #[error("host {host}: spec.bmc.address is not usable: {reason}")]
    BmcAddress {
        host: HostKey,
        reason: BmcAddressError,
    },

    #[error(
        "host {host}: spec.bmc.credentialsName is empty; name a Secret with keys username and password"
    )]
    NoCredentialsRef { host: HostKey },

    #[error(
        "host {host}: BMC credentials Secret {secret} not found; create it or fix spec.bmc.credentialsName"
    )]
    CredentialsSecretMissing { host: HostKey, secret: String },

    #[error("host {host}: BMC credentials Secret {secret} lacks a non-empty {key}; add it")]
    CredentialsIncomplete {
        host: HostKey,
        secret: String,
        key: &'static str,
    },
}
