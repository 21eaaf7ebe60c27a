//! The SSH jump host: sshd with the users' authorized keys, the node private keys, an
//! ssh_config naming every host, and the host list with BMC details for power actions.
//! Authorized keys are public and go to a ConfigMap; the host list carries BMC passwords and
//! goes to a Secret, the only object the operator ever writes a password into.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HostAlias, KeyToPath, PodSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::{Child, Facts, ServiceError, ServiceId, address, members, meta, pod, secrets};
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
const SCRIPT: &str = include_str!("templates/sip-hosts.sh");
const PERMISSIONS: &str = include_str!("templates/ssh-permissions.sh");

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
    let mut entries = Vec::with_capacity(hosts.len());
    let mut aliases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bmc_hosts = BTreeSet::new();
    let mut ssh_config = ssh_config_header(facts, &key_names);
    for host in &hosts {
        let ip = address(id, host, interface)?;
        let entry = host_entry(facts, id, host, ip.to_string(), proxy)?;
        bmc_hosts.insert(entry.bmc.host.clone());
        aliases
            .entry(ip.to_string())
            .or_default()
            .insert(host.name.clone());
        ssh_config.push_str(&format!("\nHost {}\n  HostName {ip}\n", host.name));
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
    let hash = meta::config_hash([
        (KEY_AUTHORIZED, authorized.as_bytes()),
        (KEY_SCRIPT, SCRIPT.as_bytes()),
        (KEY_HOSTS, hosts_json.as_bytes()),
        (KEY_SSH_CONFIG, ssh_config.as_bytes()),
        ("nodeSSHPrivateKeys", key_names.join("\n").as_bytes()),
    ]);
    let secret = instance.secret([
        (KEY_HOSTS, hosts_json.into_bytes()),
        (KEY_SSH_CONFIG, ssh_config.into_bytes()),
    ]);
    let no_proxy = (!proxy).then(|| bmc_hosts.into_iter().collect::<Vec<_>>().join(","));
    let pod_spec = pod_spec(spec, name, no_proxy, aliases);
    Ok(vec![
        Child::ConfigMap(config_map),
        Child::Secret(secret),
        Child::Service(pod::service(
            &instance,
            vec![pod::port("ssh".into(), SSH_PORT, spec.node_port)],
            true,
            spec.common.cluster_ip.as_ref(),
        )),
        Child::Deployment(pod::deployment(&instance, hash, pod_spec)),
    ])
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
    ip: String,
    proxy: bool,
) -> Result<HostEntry<'a>, ServiceError> {
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
        name: &host.name,
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
            username: &credentials.username,
            password: credentials.password.expose(),
        },
    })
}

fn pod_spec(
    spec: &JumpHost,
    name: &str,
    no_proxy: Option<String>,
    aliases: BTreeMap<String, BTreeSet<String>>,
) -> PodSpec {
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    let mut vars = vec![env("SIP_HOSTS_FILE", "/etc/sip/hosts/hosts.json")];
    if let Some(hosts) = &no_proxy {
        // BMCs are reached directly, not through the cluster's HTTP proxy, from `kubectl exec`
        // (an ssh session does not inherit these; `sip-hosts` reads `proxy` from the host list).
        vars.push(env("NO_PROXY", hosts));
        vars.push(env("no_proxy", hosts));
    }
    let image = spec.common.image.as_deref().unwrap_or(JUMP_HOST_IMAGE);
    // sshd starts as root and drops to the login user; it cannot run under the restricted
    // profile, so the jump host only forbids privilege escalation and keeps the default seccomp.
    let security = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    });
    let probe = |period: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(SSH_PORT.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let permissions = Container {
        command: Some(vec!["sh".into(), "-c".into(), PERMISSIONS.into()]),
        volume_mounts: Some(vec![
            mount("node-keys", "/etc/sip/node-keys", true),
            mount("authorized-keys", "/etc/sip/authorized-keys", true),
            mount("hosts", "/etc/sip/hosts", true),
            mount("login-ssh", LOGIN_SSH_DIR, false),
        ]),
        resources: pod::resources("10m", "16Mi", "64Mi"),
        security_context: security.clone(),
        ..pod::container("ssh-permissions", image)
    };
    let ssh = Container {
        ports: Some(vec![ContainerPort {
            name: Some("ssh".into()),
            container_port: SSH_PORT.into(),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vars),
        volume_mounts: Some(vec![
            mount("hosts", "/etc/sip/hosts", true),
            mount("login-ssh", LOGIN_SSH_DIR, false),
            mount("bin", "/opt/sip/bin", true),
        ]),
        readiness_probe: Some(probe(10)),
        liveness_probe: Some(probe(30)),
        resources: pod::resources("10m", "32Mi", "256Mi"),
        security_context: security,
        ..pod::container("ssh", image)
    };
    let config_map = |volume: &str, key: &str, mode: i32| Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: name.into(),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: key.into(),
                mode: Some(mode),
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let secret = |volume: &str, secret: &str, mode: i32| Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(mode),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    PodSpec {
        init_containers: Some(vec![permissions]),
        containers: vec![ssh],
        volumes: Some(vec![
            config_map("authorized-keys", KEY_AUTHORIZED, 0o444),
            config_map("bin", KEY_SCRIPT, 0o555),
            secret("hosts", name, 0o440),
            secret("node-keys", &spec.node_ssh_private_keys, 0o440),
            Volume {
                name: "login-ssh".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        host_aliases: (!aliases.is_empty()).then(|| {
            aliases
                .into_iter()
                .map(|(ip, names)| HostAlias {
                    ip,
                    hostnames: Some(names.into_iter().collect()),
                })
                .collect()
        }),
        node_selector: pod::node_selector(&spec.common.node_labels),
        security_context: pod::pod_security(Some(FS_GROUP)),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    }
}
