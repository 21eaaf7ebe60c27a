//! Rendering: what each service produces from a ledger, and every way its input can be wrong.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use super::*;
use crate::api::{Auth, AuthStorage, HostState, SIPCluster};
use crate::extraction::{BmcCredentials, Password};

const SAMPLE: &str = include_str!("../../manifests/samples/sipcluster.yaml");
pub const PASSWORD_PREFIX: &str = "pw-of-";

/// An owned set of inputs: the predecessor's sample with an OIDC provider, and a ledger of
/// two control-plane hosts (one IPv6) and two workers, plus a released and an unusable host.
pub struct Fixture {
    pub spec: SIPClusterSpec,
    pub hosts: Vec<HostRecord>,
    pub secrets: BTreeMap<String, Secret>,
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub credentials: BTreeMap<HostKey, Result<BmcCredentials, String>>,
}

fn secret(pairs: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn record(name: &str, role: NodeRole, state: HostState, ip: &str, bmc: &str) -> HostRecord {
    HostRecord {
        name: name.into(),
        namespace: "metal3".into(),
        uid: Some(format!("uid-{name}")),
        role,
        state,
        reason: None,
        topology_domain: None,
        addresses: BTreeMap::from([("oam-ipv4".to_string(), ip.to_string())]),
        bmc_address: Some(bmc.into()),
    }
}

pub const DEX_CONFIG: &str = "connectors:\n  - type: ldap\n    id: ldap\n    name: LDAP\n    config:\n      host: ldap.example:636\n      bindPW: ldap-bind-secret\nstaticClients:\n  - id: tenant-apiserver\n    name: Tenant API server\n    secret: client-secret-value\n    redirectURIs: [\"http://localhost:8000\"]\n";

impl Fixture {
    pub fn new() -> Self {
        let doc = serde_norway::Deserializer::from_str(SAMPLE)
            .map(|d| serde_json::Value::deserialize(d).unwrap())
            .find(|d| d["kind"] == "SIPCluster")
            .unwrap();
        let mut cluster: SIPCluster = serde_json::from_value(doc).unwrap();
        cluster.spec.services.auth.push(Auth {
            issuer: "https://dex.tenant.example:30556".into(),
            node_port: Some(30556),
            storage: AuthStorage::Kubernetes,
            config_secret: "dex-config".into(),
            tls_secret: Some("dex-tls".into()),
            ..Auth::default()
        });
        let hosts = vec![
            // Out of name order on purpose: configs must not depend on the ledger's order.
            record(
                "cp-2",
                NodeRole::ControlPlane,
                HostState::Labeled,
                "fd00::12",
                "redfish+https://10.23.0.12/redfish/v1/Systems/1",
            ),
            record(
                "cp-1",
                NodeRole::ControlPlane,
                HostState::Extracted,
                "192.168.100.11",
                "ipmi://10.23.0.11:623",
            ),
            record(
                "wk-1",
                NodeRole::Worker,
                HostState::Extracted,
                "192.168.100.21",
                "idrac-virtualmedia://10.23.0.21/redfish/v1/Systems/System.Embedded.1",
            ),
            record(
                "wk-2",
                NodeRole::Worker,
                HostState::Labeled,
                "192.168.100.22",
                "10.23.0.22",
            ),
            record(
                "cp-9",
                NodeRole::ControlPlane,
                HostState::Releasing,
                "192.168.100.19",
                "10.23.0.19",
            ),
            record(
                "wk-9",
                NodeRole::Worker,
                HostState::Unusable,
                "192.168.100.29",
                "10.23.0.29",
            ),
        ];
        let credentials = hosts
            .iter()
            .map(|h| {
                let c = BmcCredentials {
                    username: "admin".into(),
                    password: Password::new(format!("{PASSWORD_PREFIX}{}", h.name)),
                };
                (HostKey::of_record(h), Ok(c))
            })
            .collect();
        let secrets = BTreeMap::from([
            (
                "ssh-private-keys".to_string(),
                secret(&[("node-key", "PRIVATE KEY MATERIAL")]),
            ),
            (
                "dex-config".to_string(),
                Secret {
                    data: Some(BTreeMap::from([
                        (
                            "connectors".to_string(),
                            ByteString(
                                DEX_CONFIG
                                    .split("staticClients")
                                    .next()
                                    .unwrap()
                                    .replace("connectors:\n", "")
                                    .into_bytes(),
                            ),
                        ),
                        (
                            "staticClients".to_string(),
                            ByteString(
                                DEX_CONFIG
                                    .split("staticClients:\n")
                                    .nth(1)
                                    .unwrap()
                                    .as_bytes()
                                    .to_vec(),
                            ),
                        ),
                    ])),
                    ..Secret::default()
                },
            ),
            (
                "dex-tls".to_string(),
                secret(&[("tls.crt", "CERT"), ("tls.key", "TLS KEY MATERIAL")]),
            ),
        ]);
        Fixture {
            spec: cluster.spec,
            hosts,
            secrets,
            config_maps: BTreeMap::new(),
            credentials,
        }
    }

    pub fn facts(&self) -> Facts<'_> {
        Facts {
            cluster_name: "tenant",
            namespace: "tenants",
            spec: &self.spec,
            owner: OwnerReference {
                api_version: "airship.airshipit.org/v1".into(),
                kind: "SIPCluster".into(),
                name: "tenant".into(),
                uid: "0000-tenant".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            hosts: &self.hosts,
            secrets: &self.secrets,
            config_maps: &self.config_maps,
            credentials: &self.credentials,
        }
    }

    pub fn render(&self) -> Vec<Rendered> {
        render(&self.facts())
    }

    fn only(&self, kind: ServiceKind) -> Result<Vec<Child>, ServiceError> {
        self.render()
            .into_iter()
            .find(|r| r.id.kind == kind)
            .expect("service in the fixture")
            .objects
    }
}

fn data(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

fn secret_of(children: &[Child]) -> &Secret {
    children
        .iter()
        .find_map(|c| match c {
            Child::Secret(s) => Some(s),
            _ => None,
        })
        .unwrap()
}

fn deployment_of(children: &[Child]) -> &k8s_openapi::api::apps::v1::Deployment {
    children
        .iter()
        .find_map(|c| match c {
            Child::Deployment(d) => Some(d),
            _ => None,
        })
        .unwrap()
}

fn pod_of(children: &[Child]) -> &k8s_openapi::api::core::v1::PodSpec {
    let deployment = deployment_of(children).spec.as_ref().unwrap();
    deployment.template.spec.as_ref().unwrap()
}

fn pod_hash(children: &[Child]) -> String {
    let d = deployment_of(children);
    let template = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    template.annotations.as_ref().unwrap()[meta::ANNOTATION_CONFIG_HASH].clone()
}

#[test]
fn every_service_of_the_sample_renders_owned_labeled_objects() {
    let f = Fixture::new();
    let rendered = f.render();
    let names: Vec<(String, Vec<String>)> = rendered
        .iter()
        .map(|r| {
            let objects = r
                .objects
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", r.id));
            (
                r.name.clone(),
                objects.iter().map(Child::describe).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "tenant-lb-control-plane".into(),
                vec![
                    "Secret/tenant-lb-control-plane".into(),
                    "Service/tenant-lb-control-plane".into(),
                    "Deployment/tenant-lb-control-plane".into()
                ]
            ),
            (
                "tenant-lb-worker".into(),
                vec![
                    "Secret/tenant-lb-worker".into(),
                    "Service/tenant-lb-worker".into(),
                    "Deployment/tenant-lb-worker".into()
                ]
            ),
            (
                "tenant-jump-host".into(),
                vec![
                    "ConfigMap/tenant-jump-host".into(),
                    "Secret/tenant-jump-host".into(),
                    "Service/tenant-jump-host".into(),
                    "Deployment/tenant-jump-host".into()
                ]
            ),
            (
                "tenant-oidc".into(),
                vec![
                    "ServiceAccount/tenant-oidc".into(),
                    "Secret/tenant-oidc".into(),
                    "Service/tenant-oidc".into(),
                    "Deployment/tenant-oidc".into()
                ]
            ),
        ]
    );
    for r in &rendered {
        for child in r.objects.as_ref().unwrap() {
            let m = child.metadata();
            let what = child.describe();
            assert_eq!(m.namespace.as_deref(), Some("tenants"), "{what}");
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("0000-tenant", Some(true)),
                "{what}"
            );
            let labels = m.labels.as_ref().unwrap();
            assert_eq!(labels[meta::LABEL_MANAGED_BY], meta::MANAGED_BY, "{what}");
            assert_eq!(labels[crate::api::LABEL_CLUSTER_NAME], "tenant", "{what}");
            let value = child.to_value();
            assert_eq!(value["kind"], child.kind(), "{what} serializes its kind");
            assert!(value["apiVersion"].is_string(), "{what}");
        }
    }
}

#[test]
fn the_control_plane_balancer_sends_6443_to_each_control_plane_member() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::LoadBalancerControlPlane).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    let servers: Vec<&str> = cfg
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 2, "{cfg}");
    assert!(
        servers[0].trim() == "server cp-1 192.168.100.11:6443",
        "{cfg}"
    );
    assert!(
        servers[1].contains("server cp-2 [fd00::12]:6443"),
        "IPv6 is bracketed: {cfg}"
    );
    for line in [
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "option log-health-checks",
        "default-server check check-ssl verify none inter 5s downinter 2s fall 4 on-marked-down shutdown-sessions",
        "timeout connect 30s",
        "timeout client 600s",
        "timeout server 600s",
        "retries 1",
    ] {
        assert!(
            cfg.lines().any(|l| l.trim() == line),
            "the predecessor's check tuning, {line:?}: {cfg}"
        );
    }
    assert!(
        !cfg.contains("cp-9") && !cfg.contains("wk-"),
        "only members of the role: {cfg}"
    );
    let service = children
        .iter()
        .find_map(|c| match c {
            Child::Service(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.node_port), (6443, Some(30001)));
}

#[test]
fn the_worker_balancer_has_a_frontend_and_node_port_per_port_of_the_range() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::LoadBalancerWorker).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    for port in 30002..=30011 {
        assert!(
            cfg.contains(&format!("frontend port-{port}\n  bind *:{port}")),
            "{port}: {cfg}"
        );
        assert!(
            cfg.contains(&format!("server wk-1 192.168.100.21:{port}\n")),
            "{port}"
        );
        assert!(
            cfg.contains(&format!("server wk-2 192.168.100.22:{port}\n")),
            "{port}"
        );
    }
    assert!(
        cfg.lines().any(|l| l.trim()
            == "default-server check inter 5s downinter 2s fall 4 on-marked-down shutdown-sessions"),
        "every worker is health-checked: {cfg}"
    );
    assert!(!cfg.contains("wk-9") && !cfg.contains("cp-"), "{cfg}");
    let service = children
        .iter()
        .find_map(|c| match c {
            Child::Service(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(ports.len(), 10);
    assert!(ports.iter().all(|p| p.node_port == Some(p.port)));
}

#[test]
fn configs_follow_the_members_not_the_ledger_order() {
    let f = Fixture::new();
    let before = pod_hash(&f.only(ServiceKind::LoadBalancerControlPlane).unwrap());
    let mut reordered = Fixture::new();
    reordered.hosts.reverse();
    let same = pod_hash(
        &reordered
            .only(ServiceKind::LoadBalancerControlPlane)
            .unwrap(),
    );
    assert_eq!(before, same, "the ledger's order does not roll pods");
    let mut grown = Fixture::new();
    grown.hosts[4].state = HostState::Extracted;
    let rolled = pod_hash(&grown.only(ServiceKind::LoadBalancerControlPlane).unwrap());
    assert_ne!(before, rolled, "a new backend rolls the pods");
    let cfg = data(
        secret_of(&grown.only(ServiceKind::LoadBalancerControlPlane).unwrap()),
        "haproxy.cfg",
    );
    assert!(cfg.contains("server cp-9 192.168.100.19:6443"), "{cfg}");
}

pub const OVERRIDE: &str = "global\n  log stdout format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nlisten api\n  bind *:{{ containerPort }}\n{% for s in servers %}\n  server {{ s.name }} {{ s.host }}:{{ s.port }} check\n{% endfor %}\n";

/// A worker template in the predecessor's style (Go syntax over its model).
const GO_WORKER: &str = gotemplate::tests::WORKER;

#[test]
fn a_config_map_written_for_the_predecessor_renders_as_it_did_there() {
    let mut f = Fixture::new();
    f.config_maps.insert(
        "loadbalancerworker".into(),
        config_map(WORKER_TEMPLATE_KEY, GO_WORKER),
    );
    let children = f.only(ServiceKind::LoadBalancerWorker).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    assert!(
        cfg.contains("\nfrontend port-30002-frontend\n  bind *:30002\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("\n  server wk-1 192.168.100.21:30002\n"),
        "{cfg}"
    );
    // The annotation overrides what the text suggests: Jinja read as Jinja, Go as Go.
    let mut cm = config_map(WORKER_TEMPLATE_KEY, GO_WORKER);
    cm.metadata.annotations = Some(BTreeMap::from([(
        template::ANNOTATION_SYNTAX.to_string(),
        "jinja".to_string(),
    )]));
    let mut f = Fixture::new();
    f.config_maps.insert("loadbalancerworker".into(), cm);
    let err = f.render()[1].objects.as_ref().unwrap_err().to_string();
    assert!(err.contains("templates use Jinja syntax"), "{err}");
}

fn config_map(key: &str, text: &str) -> ConfigMap {
    ConfigMap {
        data: Some(BTreeMap::from([(key.to_string(), text.to_string())])),
        ..ConfigMap::default()
    }
}

#[test]
fn a_template_config_map_overrides_the_built_in_and_its_errors_are_clear() {
    let mut f = Fixture::new();
    f.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, OVERRIDE),
    );
    let children = f.only(ServiceKind::LoadBalancerControlPlane).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    assert!(
        cfg.contains("listen api\n  bind *:6443\n  server cp-1 192.168.100.11:6443 check\n"),
        "{cfg}"
    );

    let cases = [
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{{ range .Servers }}"),
            "the Go template from ConfigMap tenants/loadbalancercontrolplane key loadBalancerControlPlane.cfg (the predecessor's syntax) cannot be rendered: line 1: Go template syntax: range without {{end}}",
        ),
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{{ ports }}"),
            "undefined",
        ),
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{# nothing #}"),
            "rendered an empty configuration",
        ),
        (
            config_map("haproxy.cfg", OVERRIDE),
            "has no key \"loadBalancerControlPlane.cfg\"",
        ),
    ];
    for (cm, needle) in cases {
        let mut f = Fixture::new();
        f.config_maps.insert("loadbalancercontrolplane".into(), cm);
        let rendered = f.render();
        let err = rendered[0].objects.as_ref().unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.starts_with("loadBalancerControlPlane[0]"), "{err}");
        assert!(
            rendered[1..].iter().all(|r| r.objects.is_ok()),
            "other services are unaffected"
        );
    }
}

#[test]
fn the_jump_host_knows_every_member_and_reaches_bmcs_directly() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::JumpHost).unwrap();
    let secret = secret_of(&children);
    let hosts: serde_json::Value = serde_json::from_str(&data(secret, "hosts.json")).unwrap();
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cp-1", "cp-2", "wk-1", "wk-2"]);
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

/// A way to break the fixture.
type Break = fn(&mut Fixture);

/// Each case breaks a fresh fixture; the service fails with a message that starts with the
/// service, contains the case's needle and none of `secrets`.
fn assert_breaks(kind: ServiceKind, cases: &[(Break, &str)], secrets: &[&str]) {
    for (breaks, needle) in cases {
        let mut f = Fixture::new();
        breaks(&mut f);
        let err = f.only(kind).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}[0]: ", kind.field())), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        for secret in secrets {
            assert!(!err.contains(secret), "the secret's content leaked: {err}");
        }
    }
}

#[test]
fn the_oidc_provider_is_configured_from_the_users_secret() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::Auth).unwrap();
    let config: serde_json::Value =
        serde_norway::from_str(&data(secret_of(&children), "config.yaml")).unwrap();
    assert_eq!(config["issuer"], "https://dex.tenant.example:30556");
    assert_eq!(config["web"]["https"], "0.0.0.0:5556");
    assert_eq!(config["web"]["tlsCert"], "/etc/dex/tls/tls.crt");
    assert_eq!(config["storage"]["type"], "kubernetes");
    assert_eq!(config["connectors"][0]["id"], "ldap");
    assert_eq!(config["staticClients"][0]["id"], "tenant-apiserver");
    let pod = pod_of(&children);
    assert_eq!(pod.service_account_name.as_deref(), Some("tenant-oidc"));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_non_root, sc.read_only_root_filesystem),
        (Some(true), Some(true))
    );

    let mut plain = Fixture::new();
    plain.spec.services.auth[0].tls_secret = None;
    plain.spec.services.auth[0].storage = AuthStorage::Memory;
    let children = plain.only(ServiceKind::Auth).unwrap();
    assert_eq!(
        children
            .iter()
            .filter(|c| c.kind() == "ServiceAccount")
            .count(),
        0
    );
    let config: serde_json::Value =
        serde_norway::from_str(&data(secret_of(&children), "config.yaml")).unwrap();
    assert_eq!(config["web"]["http"], "0.0.0.0:5556");
    assert_eq!(config["storage"]["type"], "memory");
}

#[test]
fn oidc_input_errors_name_the_fix_without_quoting_secrets() {
    let cases: [(Break, &str); 6] = [
        (
            |f| {
                f.secrets.remove("dex-config");
            },
            "Secret tenants/dex-config (auth configSecret) does not exist",
        ),
        (
            |f| {
                f.secrets
                    .insert("dex-config".into(), secret(&[("staticClients", "[]")]));
            },
            "has no `connectors`",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[(
                        "connectors",
                        "- id: a\n  bindPW: client-secret-value\n :\n- [",
                    )]),
                );
            },
            "key \"connectors\" is not YAML at line",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[("connectors", "client-secret-value: 1")]),
                );
            },
            "must be a YAML list",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[(
                        "connectors",
                        "- type: ldap\n  name: no id client-secret-value",
                    )]),
                );
            },
            "connectors[0] has no id",
        ),
        (
            |f| {
                f.secrets
                    .insert("dex-tls".into(), secret(&[("tls.crt", "x")]));
            },
            "Secret tenants/dex-tls has no tls.key",
        ),
    ];
    assert_breaks(ServiceKind::Auth, &cases, &["client-secret-value"]);
}

#[test]
fn bmc_passwords_reach_only_the_jump_host_secret() {
    let f = Fixture::new();
    for r in f.render() {
        for child in r.objects.unwrap() {
            let text = serde_json::to_string(&child.to_value()).unwrap();
            let decoded: String = match &child {
                Child::Secret(s) => s
                    .data
                    .iter()
                    .flatten()
                    .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
                    .collect(),
                _ => String::new(),
            };
            let carries = text.contains(PASSWORD_PREFIX) || decoded.contains(PASSWORD_PREFIX);
            let allowed = child.describe() == "Secret/tenant-jump-host";
            assert_eq!(carries, allowed, "{}", child.describe());
            if let Child::ConfigMap(cm) = &child {
                let all: String = cm.data.iter().flatten().map(|(_, v)| v.as_str()).collect();
                assert!(
                    !all.contains("PRIVATE KEY") && !all.contains("client-secret-value"),
                    "{}",
                    child.describe()
                );
            }
        }
    }
}

#[test]
fn pods_run_restricted_where_the_image_allows() {
    let f = Fixture::new();
    for r in f.render() {
        let children = r.objects.unwrap();
        let pod = pod_of(&children);
        assert_eq!(
            pod.automount_service_account_token,
            Some(r.id.kind == ServiceKind::Auth),
            "{}",
            r.id
        );
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", r.id);
            assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", r.id);
            if r.id.kind != ServiceKind::JumpHost {
                assert_eq!(sc.run_as_non_root, Some(true), "{}", r.id);
                assert_eq!(
                    sc.capabilities.as_ref().unwrap().drop.as_deref(),
                    Some(&["ALL".to_string()][..])
                );
            }
        }
    }
}

/// `haproxy -c` on every configuration the operator can write. haproxy comes from
/// `tools/test-tools/ensure.sh`, which installs it when missing; only the explicit opt-out
/// `SIP_ALLOW_MISSING_TOOLS` lets this test skip when it cannot.
#[test]
fn haproxy_accepts_every_rendered_configuration() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-tools/ensure.sh");
    let ensured = Command::new("bash").arg(script).output().unwrap();
    if !ensured.status.success() {
        assert!(
            std::env::var_os("SIP_ALLOW_MISSING_TOOLS").is_some(),
            "haproxy is required and {script} could not install it: {}",
            String::from_utf8_lossy(&ensured.stderr)
        );
        eprintln!("SIP_ALLOW_MISSING_TOOLS is set and haproxy is missing: skipping");
        return;
    }
    let version = Command::new("haproxy").arg("-v").output().unwrap();
    assert!(version.status.success());
    let mut overridden = Fixture::new();
    overridden.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, OVERRIDE),
    );
    // ConfigMaps written for the predecessor, in its Go template syntax.
    let mut predecessors = Fixture::new();
    predecessors.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, gotemplate::tests::CONTROL_PLANE),
    );
    predecessors.config_maps.insert(
        "loadbalancerworker".into(),
        config_map(WORKER_TEMPLATE_KEY, GO_WORKER),
    );
    let mut empty = Fixture::new();
    empty.hosts.clear();
    let dir = std::env::temp_dir().join(format!("sip-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = 0;
    for (what, f) in [
        ("default", Fixture::new()),
        ("overridden", overridden),
        ("the predecessor's", predecessors),
        ("no members", empty),
    ] {
        for r in f
            .render()
            .into_iter()
            .filter(|r| r.id.kind != ServiceKind::JumpHost && r.id.kind != ServiceKind::Auth)
        {
            let children = r.objects.unwrap();
            let cfg = data(secret_of(&children), "haproxy.cfg");
            let path = dir.join(format!("{what}-{}.cfg", r.name));
            std::fs::write(&path, &cfg).unwrap();
            let out = Command::new("haproxy")
                .arg("-c")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what} {}: haproxy -c failed:\n{}{}\n{cfg}",
                r.id,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(checked, 8);
}
