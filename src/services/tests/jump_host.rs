//! The jump host: members, BMCs, logins, and its input errors.

use super::*;

#[test]
fn the_jump_host_knows_every_member_and_reaches_bmcs_directly() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::JumpHost).unwrap();
    let secret = secret_of(&children);
    let hosts: serde_json::Value = serde_json::from_str(&data(secret, "hosts.json")).unwrap();
    assert_eq!(host_names(secret), ["cp-1", "cp-2", "wk-1", "wk-2"]);
    assert_eq!(
        hosts[1]["bmc"]["redfishSystem"],
        "https://10.23.0.12:443/redfish/v1/Systems/1"
    );
    assert_eq!(hosts[0]["bmc"]["driver"], "ipmi");
    assert!(hosts[0]["bmc"].get("redfishSystem").is_none());
    assert_eq!(hosts[3]["bmc"]["port"], 623, "a bare address is IPMI");
    assert_eq!(hosts[0]["bmc"]["password"], "pw-of-cp-1");
    assert_eq!(
        hosts[0]["bmc"]["proxy"], false,
        "sip-hosts reaches BMCs directly"
    );
    let ssh_config = data(secret, "ssh_config");
    assert!(
        ssh_config.contains("IdentityFile /home/ubuntu/.ssh/keys/node-key"),
        "{ssh_config}"
    );
    assert!(
        ssh_config.contains("Host wk-1\n  HostName 192.168.100.21\n"),
        "{ssh_config}"
    );

    let pod = pod_of(&children);
    let env = pod.containers[0].env.as_ref().unwrap();
    let no_proxy = env
        .iter()
        .find(|e| e.name == "NO_PROXY")
        .and_then(|e| e.value.clone());
    assert_eq!(
        no_proxy.as_deref(),
        Some("10.23.0.11,10.23.0.12,10.23.0.21,10.23.0.22")
    );
    assert!(
        env.iter().any(|e| e.name == "no_proxy"),
        "both spellings: tools read either"
    );
    let aliases = pod.host_aliases.as_ref().unwrap();
    assert_eq!(aliases.len(), 4);
    assert!(
        aliases.iter().any(
            |a| a.ip == "fd00::12" && a.hostnames.as_deref() == Some(&["cp-2".to_string()][..])
        )
    );
    let keys_volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "node-keys")
        .unwrap();
    assert_eq!(
        keys_volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("ssh-private-keys")
    );
    assert_eq!(
        pod.init_containers.as_ref().unwrap()[0].name,
        "ssh-permissions"
    );

    let mut proxied = Fixture::new();
    proxied.spec.services.jump_host[0].bmc =
        Some(crate::api::sipcluster::BmcOptions { proxy: true });
    let children = proxied.only(ServiceKind::JumpHost).unwrap();
    let hosts: serde_json::Value =
        serde_json::from_str(&data(secret_of(&children), "hosts.json")).unwrap();
    assert_eq!(hosts[0]["bmc"]["proxy"], true);
    let pod = pod_of(&children);
    assert!(
        !pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "NO_PROXY")
    );
}

#[test]
fn the_jump_host_fills_the_login_users_ssh_directory() {
    let mut f = Fixture::new();
    f.spec.services.jump_host[0].common.image = None;
    let children = f.only(ServiceKind::JumpHost).unwrap();
    let pod = pod_of(&children);
    let mounts_of = |c: &k8s_openapi::api::core::v1::Container| -> Vec<(String, String)> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect()
    };
    let home = ("login-ssh".to_string(), "/home/ubuntu/.ssh".to_string());
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert!(mounts_of(init).contains(&home), "{:?}", mounts_of(init));
    assert!(mounts_of(&pod.containers[0]).contains(&home));
    let script = &init.command.as_ref().unwrap()[2];
    for line in [
        "install -m 0600 -o \"$user\" -g \"$user\" /etc/sip/authorized-keys/authorized_keys \"$dir/authorized_keys\"",
        "user=ubuntu",
    ] {
        assert!(script.lines().any(|l| l.trim() == line), "{line}: {script}");
    }
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(concat!(
            "quay.io/airshipit/sip-rs-jump-host:",
            env!("CARGO_PKG_VERSION")
        )),
        "sip's own image when none is named"
    );
    assert_eq!(
        pod.security_context.as_ref().unwrap().fs_group,
        Some(1000),
        "the host list is readable by the login user's group"
    );
}

#[test]
fn load_balancers_go_to_control_plane_nodes_unless_told_otherwise() {
    let mut f = Fixture::new();
    for kind in [
        ServiceKind::LoadBalancerControlPlane,
        ServiceKind::LoadBalancerWorker,
    ] {
        let children = f.only(kind).unwrap();
        let pod = pod_of(&children);
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([(
                "node-role.kubernetes.io/control-plane".to_string(),
                String::new()
            )])),
            "{kind:?}"
        );
        let tolerated: Vec<(&str, &str, &str)> = pod
            .tolerations
            .iter()
            .flatten()
            .map(|t| {
                (
                    t.key.as_deref().unwrap(),
                    t.operator.as_deref().unwrap(),
                    t.effect.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            tolerated,
            [
                (
                    "node-role.kubernetes.io/control-plane",
                    "Exists",
                    "NoSchedule"
                ),
                ("node-role.kubernetes.io/master", "Exists", "NoSchedule"),
            ],
            "{kind:?}"
        );
    }
    let labels = BTreeMap::from([("lb".to_string(), "yes".to_string())]);
    f.spec.services.load_balancer_control_plane[0]
        .common
        .node_labels = labels.clone();
    let children = f.only(ServiceKind::LoadBalancerControlPlane).unwrap();
    let pod = pod_of(&children);
    assert_eq!(
        pod.node_selector,
        Some(labels),
        "nodeLabels override the role"
    );
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(2));
    let jump = f.only(ServiceKind::JumpHost).unwrap();
    assert!(
        pod_of(&jump).tolerations.is_none(),
        "only balancers are pinned"
    );
}

#[test]
fn jump_host_input_errors_name_the_fix() {
    let cases: [(Break, &str); 6] = [
        (
            |f| {
                f.spec.services.jump_host[0]
                    .ssh_authorized_keys
                    .push("ssh-ed25519 not-base64!".into())
            },
            "sshAuthorizedKeys[1] is not an OpenSSH public key",
        ),
        (
            |f| {
                f.spec.services.jump_host[0]
                    .ssh_authorized_keys
                    .insert(0, "hello".into())
            },
            "sshAuthorizedKeys[0]",
        ),
        (
            |f| {
                f.secrets.remove("ssh-private-keys");
            },
            "Secret tenants/ssh-private-keys (nodeSSHPrivateKeys) does not exist",
        ),
        (
            |f| {
                f.secrets
                    .insert("ssh-private-keys".into(), Secret::default());
            },
            "holds no keys",
        ),
        (
            |f| {
                f.credentials.insert(
                    HostKey::new("metal3", "wk-1"),
                    Err("Secret metal3/wk-1-bmc has no password".into()),
                );
            },
            "host metal3/wk-1: Secret metal3/wk-1-bmc has no password",
        ),
        (
            |f| f.hosts[0].addresses.clear(),
            "host metal3/cp-2 has no address on interface \"oam-ipv4\"",
        ),
    ];
    assert_breaks(
        ServiceKind::JumpHost,
        &cases,
        &[PASSWORD_PREFIX, "PRIVATE KEY"],
    );
}

#[test]
fn members_of_one_name_from_two_namespaces_go_by_name_and_namespace() {
    let mut f = Fixture::new();
    // wk-2 becomes a second "wk-1", from another namespace, with its own credentials.
    let old = HostKey::of_record(&f.hosts[3]);
    let credentials = f.credentials.remove(&old).unwrap();
    f.hosts[3].name = "wk-1".into();
    f.hosts[3].namespace = "rack-b".into();
    f.credentials
        .insert(HostKey::of_record(&f.hosts[3]), credentials);
    let children = f.only(ServiceKind::JumpHost).unwrap();
    let secret = secret_of(&children);
    assert_eq!(
        host_names(secret),
        ["cp-1", "cp-2", "wk-1.metal3", "wk-1.rack-b"]
    );
    let ssh_config = data(secret, "ssh_config");
    assert!(
        ssh_config.contains("Host wk-1.rack-b\n  HostName 192.168.100.22\n"),
        "{ssh_config}"
    );
    assert!(!ssh_config.contains("Host wk-1\n"), "{ssh_config}");
    let pod = pod_of(&children);
    let command = pod.containers[0].command.as_ref().unwrap().join(" ");
    assert!(
        command.contains("wk-1.rack-b:22") && command.contains("wk-1.metal3:22"),
        "{command}"
    );
}

/// The names in the jump host's host list, in its order.
fn host_names(secret: &k8s_openapi::api::core::v1::Secret) -> Vec<String> {
    let hosts: serde_json::Value = serde_json::from_str(&data(secret, "hosts.json")).unwrap();
    hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_jump_host_runs_where_its_node_labels_say() {
    let mut f = Fixture::new();
    f.spec.services.jump_host[0].common.node_labels.clear();
    let anywhere = f.only(ServiceKind::JumpHost).unwrap();
    assert_eq!(pod_of(&anywhere).node_selector, None);
    let labels = BTreeMap::from([("jump".to_string(), "yes".to_string())]);
    f.spec.services.jump_host[0].common.node_labels = labels.clone();
    let pinned = f.only(ServiceKind::JumpHost).unwrap();
    assert_eq!(pod_of(&pinned).node_selector, Some(labels));
}
