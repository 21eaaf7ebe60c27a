//! Rendering: what each service produces from a ledger, and every way its input can be wrong.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use super::*;
use crate::api::{Auth, AuthStorage, HostState, SIPCluster};
use crate::extraction::{BmcCredentials, Password};

const SAMPLE: &str = include_str!("../../../manifests/samples/sipcluster.yaml");
pub const PASSWORD_PREFIX: &str = "pw-of-";

/// An owned set of inputs: the predecessor's sample with an OIDC provider, and a ledger of
/// two control-plane hosts (one IPv6) and two workers, plus a released and an unusable host.
/// A throwaway Ed25519 host key, made for these tests only: the jump host reuses the key its
/// Secret holds, so the rendered output is the same every run.
const FIXTURE_HOST_KEY: &str = include_str!("fixture_host_key");

pub struct Fixture {
    pub spec: SIPClusterSpec,
    pub hosts: Vec<HostRecord>,
    pub secrets: BTreeMap<String, Secret>,
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub credentials: BTreeMap<HostKey, Result<BmcCredentials, String>>,
    pub renderer: Renderer,
    pub host_keys: BTreeMap<String, Secret>,
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
                    disable_certificate_verification: h.name == "cp-2",
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
            renderer: Renderer::InProcess,
            host_keys: BTreeMap::from([(
                "tenant-jump-host-host-key".to_string(),
                secret(&[("ssh_host_ed25519_key", FIXTURE_HOST_KEY)]),
            )]),
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
            host_keys: &self.host_keys,
            renderer: &self.renderer,
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

pub const OVERRIDE: &str = "global\n  log stdout format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nlisten api\n  bind *:{{ containerPort }}\n{% for s in servers %}\n  server {{ s.name }} {{ s.host }}:{{ s.port }} check\n{% endfor %}\n";

/// The predecessor's style of templates (Go syntax over its model), as sip-gotemplate's and
/// the integration tests use them.
const GO_CONTROL_PLANE: &str =
    include_str!("../../../tests/fixtures/predecessor/loadBalancerControlPlane.cfg");
const GO_WORKER: &str = include_str!("../../../tests/fixtures/predecessor/loadBalancerWorker.cfg");

fn config_map(key: &str, text: &str) -> ConfigMap {
    ConfigMap {
        data: Some(BTreeMap::from([(key.to_string(), text.to_string())])),
        ..ConfigMap::default()
    }
}

mod inputs;
mod jump_host;
mod oidc;
mod rendering;
mod safety;
