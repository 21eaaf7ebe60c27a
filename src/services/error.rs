//! Why a service could not be rendered: each message names the service, the object at fault
//! and what to change. None ever carries a secret value.

use thiserror::Error;

use super::ServiceId;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error(
        "{service}: ConfigMap {config_map} has no key {key:?}; add the template under that key or delete the ConfigMap to use the built-in one"
    )]
    TemplateKeyMissing {
        service: ServiceId,
        config_map: String,
        key: &'static str,
    },
    #[error(
        "{service}: the template from {origin} is invalid: {detail}; templates use Jinja syntax (see the README's template data model)"
    )]
    Template {
        service: ServiceId,
        origin: String,
        detail: String,
    },
    #[error(
        "{service}: the Go template from {origin} (the predecessor's syntax) cannot be rendered: {detail} (see the README's \"Migrating from airshipit/sip\")"
    )]
    GoTemplate {
        service: ServiceId,
        origin: String,
        detail: String,
    },
    #[error(
        "{service}: the template from {origin} rendered an empty configuration; it must produce a haproxy.cfg"
    )]
    EmptyConfig { service: ServiceId, origin: String },
    #[error(
        "{service}: host {host} has no address on interface {interface:?}; check the host's networkData"
    )]
    NoAddress {
        service: ServiceId,
        host: String,
        interface: String,
    },
    #[error(
        "{service}: sshAuthorizedKeys[{index}] is not an OpenSSH public key ({detail}); fix or remove it"
    )]
    AuthorizedKey {
        service: ServiceId,
        index: usize,
        detail: String,
    },
    #[error(
        "{service}: Secret {secret} ({purpose}) does not exist; create it in the SIPCluster's namespace"
    )]
    SecretMissing {
        service: ServiceId,
        secret: String,
        purpose: &'static str,
    },
    #[error("{service}: Secret {secret} {problem}")]
    SecretInvalid {
        service: ServiceId,
        secret: String,
        problem: String,
    },
    #[error("{service}: BMC details of host {host}: {detail}")]
    Bmc {
        service: ServiceId,
        host: String,
        detail: String,
    },
    #[error(
        "{service}: {object} exists and is not this SIPCluster's ({who}); sip does not take over what it did not make: rename or delete it, or rename the SIPCluster"
    )]
    Foreign {
        service: ServiceId,
        object: String,
        who: String,
    },
    #[error("{service}: the API server refused {object}: {detail}")]
    Refused {
        service: ServiceId,
        object: String,
        detail: String,
    },
}
