//! The SSH jump host: sshd with the users' authorized keys, the node private keys, an
//! ssh_config naming every host, and the host list with BMC details for power actions.
//! Authorized keys are public and go to a ConfigMap; the host list carries BMC passwords and
//! goes to a Secret, the only object the operator ever writes a password into.
//!
//! Hardened, whatever the image: sshd runs with only the capabilities it needs on a read-only
//! root filesystem, forwards TCP only to the members' SSH ports and the BMCs (`PermitOpen`),
//! nothing else (no agent, stream-local, remote or tunnel forwarding), with a host key the
//! operator made once for this jump host and keeps in a Secret, so users see the same key
//! across restarts. A BMC password rotation changes the mounted host list in place (the
//! kubelet refreshes it) without restarting the pod.

mod pod_spec;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::{
    Child, Facts, ServiceError, ServiceId, address, host_part, members, meta, pod, secrets,
};
use crate::api::{HostRecord, JumpHost};
use crate::extraction::parse_bmc_address;
use crate::scheduling::HostKey;

/// sip's own jump host image (`images/jump-host`), tagged with the operator's version.
pub const JUMP_HOST_IMAGE: &str = concat!(
    "quay.io/airshipit/sip-rs-jump-host:",
    env!("CARGO_PKG_VERSION")
);
const SSH_PORT: u16 = 22;
/// The login user's group in sip's image and the predecessor's (`ubuntu`, gid 1000): the host
/// list, mounted group-readable, is readable in the user's sessions.
const FS_GROUP: i64 = 1000;
/// The login user's `~/.ssh`, filled by the init container (`templates/ssh-permissions.sh`).
const LOGIN_SSH_DIR: &str = "/home/ubuntu/.ssh";
/// The host key, as the init container installs it for sshd: root's alone (a Secret volume is
/// group-readable under `fsGroup`, and sshd refuses such a key).
const HOST_KEY_DIR: &str = "/run/sip-host-key";
const HOST_KEY: &str = "ssh_host_ed25519_key";
const SCRIPT: &str = include_str!("../templates/sip-hosts.sh");
const PERMISSIONS: &str = include_str!("../templates/ssh-permissions.sh");

const KEY_AUTHORIZED: &str = "authorized_keys";
const KEY_SCRIPT: &str = "sip-hosts";
const KEY_HOSTS: &str = "hosts.json";
const KEY_SSH_CONFIG: &str = "ssh_config";

/// One line of the host list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostEntry<'a> {
    name: &'a str,
    namespace: &'a str,
    role: &'a str,
    ip: String,
    bmc: BmcEntry<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BmcEntry<'a> {
    address: &'a str,
    driver: &'static str,
    host: String,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    redfish_system: Option<String>,
    /// Whether `sip-hosts` may reach the BMC through an HTTP proxy (`bmc.proxy`).
    proxy: bool,
    /// The host's `spec.bmc.disableCertificateVerification`: `sip-hosts` verifies the BMC's
    /// certificate unless this is set.
    disable_certificate_verification: bool,
    username: &'a str,
    password: &'a str,
}

/// Each key parsed as an OpenSSH public key; the first bad one fails the service.
fn authorized_keys(id: ServiceId, keys: &[String]) -> Result<String, ServiceError> {
    let mut out = String::new();
    for (index, key) in keys.iter().enumerate() {
        let key = key.trim();
        ssh_key::PublicKey::from_openssh(key).map_err(|e| ServiceError::AuthorizedKey {
            service: id,
            index,
            detail: e.to_string(),
        })?;
        out.push_str(key);
        out.push('\n');
    }
    Ok(out)
}

pub fn render(facts: &Facts<'_>, id: ServiceId, name: &str) -> Result<Vec<Child>, ServiceError> {
    let spec = &facts.spec.services.jump_host[id.index];
    let interface = spec.common.node_interface_id.as_str();
    let authorized = authorized_keys(id, &spec.ssh_authorized_keys)?;
    let key_names = node_key_names(facts, id, spec)?;
    let proxy = spec.bmc.is_some_and(|b| b.proxy);

    let hosts = members(facts.hosts, None);
    let names = display_names(&hosts);
    let mut entries = Vec::with_capacity(hosts.len());
    let mut aliases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bmc_hosts = BTreeSet::new();
    let mut permit_open = BTreeSet::new();
    let mut ssh_config = ssh_config_header(facts, &key_names);
    for (host, shown) in hosts.iter().zip(&names) {
        let ip = address(id, host, interface)?;
        let entry = host_entry(facts, id, host, shown, ip.to_string())?;
        bmc_hosts.insert(entry.bmc.host.clone());
        // `ssh -J` asks for the name or the address the user typed.
        permit_open.insert(format!("{shown}:{SSH_PORT}"));
        permit_open.insert(format!("{}:{SSH_PORT}", host_part(ip)));
        permit_open.insert(format!("{}:{}", bracketed(&entry.bmc.host), entry.bmc.port));
        aliases
            .entry(ip.to_string())
            .or_default()
            .insert(shown.clone());
        ssh_config.push_str(&format!("\nHost {shown}\n  HostName {ip}\n"));
        entries.push(entry);
    }
    let hosts_json = serde_json::to_string_pretty(&entries).unwrap_or_default();
    drop(entries);

    let instance = facts.instance(id, name);
    let config_map = ConfigMap {
        metadata: instance.meta(),
        data: Some(BTreeMap::from([
            (KEY_AUTHORIZED.to_string(), authorized.clone()),
            (KEY_SCRIPT.to_string(), SCRIPT.to_string()),
        ])),
        ..ConfigMap::default()
    };
    let host_key = host_key(facts, name);
    // The host list is read where it is mounted, which the kubelet refreshes: a changed BMC
    // password must not restart the pod. What is copied at start (keys, ssh_config,
    // authorized_keys) and the host key roll it.
    let hash = meta::config_hash([
        (KEY_AUTHORIZED, authorized.as_bytes()),
        (KEY_SCRIPT, SCRIPT.as_bytes()),
        (KEY_SSH_CONFIG, ssh_config.as_bytes()),
        ("nodeSSHPrivateKeys", key_names.join("\n").as_bytes()),
        (HOST_KEY, host_key.private.as_bytes()),
    ]);
    let secret = instance.secret([
        (KEY_HOSTS, hosts_json.into_bytes()),
        (KEY_SSH_CONFIG, ssh_config.into_bytes()),
    ]);
    let no_proxy = (!proxy).then(|| bmc_hosts.into_iter().collect::<Vec<_>>().join(","));
    let pod_spec = pod_spec::pod_spec(spec, name, no_proxy, aliases, &permit_open);
    let mut host_key_secret = instance.secret([
        (HOST_KEY, host_key.private.as_bytes().to_vec()),
        ("ssh_host_ed25519_key.pub", host_key.public.into_bytes()),
    ]);
    host_key_secret.metadata.name = Some(host_key_secret_name(name));
    Ok(vec![
        Child::ConfigMap(config_map),
        Child::Secret(secret),
        Child::Secret(host_key_secret),
        Child::Service(pod::service(
            &instance,
            vec![pod::port("ssh".into(), SSH_PORT, spec.node_port)],
            true,
            spec.common.cluster_ip.as_ref(),
        )),
        Child::Deployment(pod::deployment(&instance, hash, pod_spec)),
    ])
}

/// The Secret holding jump host `name`'s SSH host key.
pub fn host_key_secret_name(name: &str) -> String {
    format!("{name}-host-key")
}

/// A host key, private (OpenSSH format) and public.
struct HostKeyPair {
    private: String,
    public: String,
}

/// The host key this jump host already has (its Secret, read by the controller), or a new
/// one: made once, then kept for the jump host's life.
fn host_key(facts: &Facts<'_>, name: &str) -> HostKeyPair {
    let existing = facts
        .host_keys
        .get(&host_key_secret_name(name))
        .and_then(|s| s.data.as_ref()?.get(HOST_KEY))
        .and_then(|b| std::str::from_utf8(&b.0).ok())
        .and_then(|pem| ssh_key::PrivateKey::from_openssh(pem).ok());
    let key = existing.unwrap_or_else(|| {
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .expect("the OS gives randomness for an Ed25519 key")
    });
    HostKeyPair {
        private: key
            .to_openssh(ssh_key::LineEnding::LF)
            .map(|k| k.to_string())
            .unwrap_or_default(),
        public: key.public_key().to_openssh().unwrap_or_default(),
    }
}

/// The name each member goes by in the jump host: its own, or `name.namespace` where two
/// members from different namespaces share a name (`ssh <name>` must not pick one).
fn display_names(hosts: &[&HostRecord]) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for h in hosts {
        *count.entry(h.name.as_str()).or_default() += 1;
    }
    hosts
        .iter()
        .map(|h| match count[h.name.as_str()] {
            1 => h.name.clone(),
            _ => format!("{}.{}", h.name, h.namespace),
        })
        .collect()
}

/// An address or name as `PermitOpen` takes it: IPv6 in brackets.
fn bracketed(host: &str) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_string(),
    }
}

/// The data keys of the node private keys Secret (its values are only mounted, never read).
fn node_key_names(
    facts: &Facts<'_>,
    id: ServiceId,
    spec: &JumpHost,
) -> Result<Vec<String>, ServiceError> {
    let secret_name = &spec.node_ssh_private_keys;
    let secret = secrets::named(
        facts,
        id,
        secret_name,
        "nodeSSHPrivateKeys",
        &secrets::NODE_KEYS,
    )?;
    let names: Vec<String> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if names.is_empty() {
        return Err(ServiceError::SecretInvalid {
            service: id,
            secret: format!("{}/{secret_name}", facts.namespace),
            problem: "holds no keys; put one private key per data entry".into(),
        });
    }
    Ok(names)
}

/// The login user's `~/.ssh/config`: `ssh <host>` reaches a member with the node keys.
fn ssh_config_header(facts: &Facts<'_>, key_names: &[String]) -> String {
    let mut config = format!(
        "# Hosts of SIPCluster {}/{}: `ssh <host>` or `sip-hosts ssh <host>`.\nHost *\n  StrictHostKeyChecking accept-new\n",
        facts.namespace, facts.cluster_name
    );
    for key in key_names {
        config.push_str(&format!("  IdentityFile {LOGIN_SSH_DIR}/keys/{key}\n"));
    }
    config
}

fn host_entry<'a>(
    facts: &'a Facts<'_>,
    id: ServiceId,
    host: &'a HostRecord,
    shown: &'a str,
    ip: String,
) -> Result<HostEntry<'a>, ServiceError> {
    let proxy = facts.spec.services.jump_host[id.index]
        .bmc
        .is_some_and(|b| b.proxy);
    let bmc_error = |detail: String| ServiceError::Bmc {
        service: id,
        host: format!("{}/{}", host.namespace, host.name),
        detail,
    };
    let address = host.bmc_address.as_deref().ok_or_else(|| {
        bmc_error("no BMC address was recorded; it is re-read on the next Extracting".into())
    })?;
    let endpoint = parse_bmc_address(address)
        .map_err(|e| bmc_error(format!("spec.bmc.address is unusable: {e}")))?;
    let credentials = match facts.credentials.get(&HostKey::of_record(host)) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(bmc_error(e.clone())),
        None => return Err(bmc_error("credentials were not read".into())),
    };
    Ok(HostEntry {
        name: shown,
        namespace: &host.namespace,
        role: host.role.as_str(),
        ip,
        bmc: BmcEntry {
            address,
            driver: endpoint.driver.as_str(),
            redfish_system: endpoint.redfish_system(),
            host: endpoint.host,
            port: endpoint.port,
            proxy,
            disable_certificate_verification: credentials.disable_certificate_verification,
            username: &credentials.username,
            password: credentials.password.expose(),
        },
    })
}
