//! The jump host's pod: sshd started by the operator with its hardening, the init container
//! that installs the login user's files and the host key, their volumes and security.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HostAlias, KeyToPath, PodSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    FS_GROUP, HOST_KEY, HOST_KEY_DIR, JUMP_HOST_IMAGE, KEY_AUTHORIZED, KEY_SCRIPT, LOGIN_SSH_DIR,
    PERMISSIONS, SSH_PORT, host_key_secret_name,
};
use crate::api::JumpHost;
use crate::services::pod;

/// sshd in the foreground, logging to the pod's log, with the host key the init container
/// installed and the hardening every image gets: command-line options win over the image's
/// `sshd_config` (sip's or the predecessor's).
fn sshd_command(permit_open: &BTreeSet<String>) -> Vec<String> {
    let options = [
        "AllowTcpForwarding=local".to_string(),
        format!(
            "PermitOpen={}",
            match permit_open.is_empty() {
                true => "none".to_string(),
                false => permit_open.iter().cloned().collect::<Vec<_>>().join(" "),
            }
        ),
        "AllowAgentForwarding=no".into(),
        "AllowStreamLocalForwarding=no".into(),
        "GatewayPorts=no".into(),
        "PermitTunnel=no".into(),
        "X11Forwarding=no".into(),
        "PasswordAuthentication=no".into(),
        "KbdInteractiveAuthentication=no".into(),
        "PermitRootLogin=no".into(),
        "PermitUserRC=no".into(),
        "PidFile=none".into(),
    ];
    let mut command = vec![
        "/usr/sbin/sshd".to_string(),
        "-D".into(),
        "-e".into(),
        "-h".into(),
        format!("{HOST_KEY_DIR}/{HOST_KEY}"),
    ];
    for option in options {
        command.push("-o".into());
        command.push(option);
    }
    command
}

/// A container's security context: no privilege escalation, the runtime's seccomp profile,
/// a read-only root, every capability dropped but `keep`.
fn hardened(keep: &[&str]) -> Option<SecurityContext> {
    Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(keep.iter().map(|c| c.to_string()).collect()),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    })
}

pub(super) fn pod_spec(
    spec: &JumpHost,
    name: &str,
    no_proxy: Option<String>,
    aliases: BTreeMap<String, BTreeSet<String>>,
    permit_open: &BTreeSet<String>,
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
    // sshd starts as root and drops to the login user, so it cannot run under the restricted
    // profile; it keeps only what that takes: changing user and group, its privilege
    // separation chroot, port 22, a session's pty (chown, chmod), signalling its own children
    // of another uid, and the audit record some builds insist on. The init container only
    // installs files for the login user (chown, and writing into that user's directories).
    let sshd_security = hardened(&[
        "AUDIT_WRITE",
        "CHOWN",
        "FOWNER",
        "KILL",
        "NET_BIND_SERVICE",
        "SETGID",
        "SETUID",
        "SYS_CHROOT",
    ]);
    let init_security = hardened(&["CHOWN", "DAC_OVERRIDE", "FOWNER"]);
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
            mount("host-key", "/etc/sip/host-key", true),
            mount("login-ssh", LOGIN_SSH_DIR, false),
            mount("host-key-installed", HOST_KEY_DIR, false),
            mount("privsep", "/run/sshd", false),
        ]),
        resources: pod::resources("10m", "16Mi", "64Mi"),
        security_context: init_security,
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
        command: Some(sshd_command(permit_open)),
        volume_mounts: Some(vec![
            mount("hosts", "/etc/sip/hosts", true),
            mount("login-ssh", LOGIN_SSH_DIR, false),
            mount("bin", "/opt/sip/bin", true),
            mount("host-key-installed", HOST_KEY_DIR, true),
            mount("privsep", "/run/sshd", false),
            mount("tmp", "/tmp", false),
        ]),
        readiness_probe: Some(probe(10)),
        liveness_probe: Some(probe(30)),
        resources: pod::resources("10m", "32Mi", "256Mi"),
        security_context: sshd_security,
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
    let memory = |volume: &str| Volume {
        name: volume.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "16Mi".into(),
            )),
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
            secret("host-key", &host_key_secret_name(name), 0o400),
            memory("login-ssh"),
            memory("host-key-installed"),
            memory("privsep"),
            memory("tmp"),
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
