//! `SIPCluster` (`airship.airshipit.org/v1`): field-for-field the predecessor's JSON, so its
//! manifests apply unchanged, plus admission rules it never had and a richer status.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nodes::NodeSets;
use super::schema;

pub use super::status::{
    HISTORY_LIMIT, HistoryCheckpoint, HostRecord, HostState, Phase, SIPClusterStatus,
    ServiceStatus, TransitionRecord,
};

/// What a user asks for: hosts per role, and the support services to run for the tenant cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "airship.airshipit.org",
    version = "v1",
    kind = "SIPCluster",
    plural = "sipclusters",
    singular = "sipcluster",
    shortname = "sip",
    namespaced,
    // The name becomes a label value on every claimed host and on the services' objects.
    validation = Rule::new("size(self.metadata.name) <= 63").message("a SIPCluster's name is a label value on its hosts and services: use 63 characters at most"),
    status = "SIPClusterStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"ControlPlane","type":"string","description":"control-plane hosts claimed/wanted","jsonPath":".status.controlPlane"}"#,
    printcolumn = r#"{"name":"Workers","type":"string","description":"worker hosts claimed/wanted","jsonPath":".status.workers"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SIPClusterSpec {
    /// Hosts wanted per role. Keys: `ControlPlane`, `Worker`.
    #[serde(default, skip_serializing_if = "NodeSets::is_empty")]
    #[schemars(schema_with = "schema::node_sets")]
    pub nodes: NodeSets,

    /// Support services deployed into the SIPCluster's namespace.
    #[serde(default)]
    pub services: Services,
}

/// The role a host plays in the tenant cluster; also the value of the `node-type` host label.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

impl NodeRole {
    pub const ALL: [NodeRole; 2] = [NodeRole::ControlPlane, NodeRole::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::ControlPlane => "ControlPlane",
            NodeRole::Worker => "Worker",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which hosts may serve a role, how to spread them, and how many.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSet {
    /// Hosts whose labels match are candidates for this role.
    #[serde(default)]
    #[schemars(schema_with = "schema::label_selector")]
    pub label_selector: LabelSelector,

    /// Host label whose value is a failure domain (a rack, a physical server): at most one
    /// chosen host per value. Hosts without the label, or with it empty, are not eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_key: Option<String>,

    /// Hosts wanted: `active + standby`. Absent means none (the predecessor crashed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<NodeCount>,
}

impl NodeSet {
    /// The topology key, treating an empty string as "no anti-affinity" as the predecessor did.
    pub fn topology_key(&self) -> Option<&str> {
        self.topology_key.as_deref().filter(|k| !k.is_empty())
    }

    /// Hosts wanted for the role.
    pub fn wanted(&self) -> u32 {
        self.count.as_ref().map_or(0, NodeCount::total)
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCount {
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub active: u32,
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub standby: u32,
}

impl NodeCount {
    pub fn total(&self) -> u32 {
        self.active.saturating_add(self.standby)
    }
}

/// The per-cluster support services; each list may hold several instances, eight at most (each
/// is a Deployment, a Service and its node ports in the management cluster).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    /// HAProxy in front of the tenant API on the control-plane hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub load_balancer_control_plane: Vec<LoadBalancerControlPlane>,
    /// HAProxy in front of the worker hosts' node ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub load_balancer_worker: Vec<LoadBalancerWorker>,
    /// SSH jump host into the tenant nodes, with BMC access for power cycling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub jump_host: Vec<JumpHost>,
    /// OpenID Connect provider (Dex) for the tenant cluster's API server. New in sip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub auth: Vec<Auth>,
}

/// Fields every service shares (the predecessor's inlined `SIPClusterService`).
// Fields admission requires but the predecessor did not are read with a default, so an object
// stored before the schema tightened still reads (`super::legacy` names the problem); the
// schema keeps them required (`schema::require_*`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::require_node_interface_id)]
pub struct ServiceCommon {
    /// Container image of the service; each service has a documented default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Labels of the management-cluster nodes the service's pods may run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// The networkData link `id` whose address the service uses to reach each host.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub node_interface_id: String,
    /// A fixed cluster IP for the service's Kubernetes Service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerControlPlane {
    #[serde(flatten)]
    pub common: ServiceCommon,
    /// NodePort on which the tenant API (6443 on the hosts) is published; the API server
    /// picks one when absent (the predecessor required it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<u16>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::require_node_port_range)]
pub struct LoadBalancerWorker {
    #[serde(flatten)]
    pub common: ServiceCommon,
    /// Ports balanced to every worker host, each published as the same NodePort.
    #[serde(default)]
    pub node_port_range: PortRange,
}

/// Node ports a worker balancer publishes: at most 100, since every one becomes a NodePort of
/// the management cluster (whose default range holds 2,768 for every tenant) and a frontend in
/// each instance's haproxy. The predecessor's sample balances 10.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.start <= self.end").message("nodePortRange.start must not be greater than nodePortRange.end: swap them"),
    validation = Rule::new("self.end - self.start < 100").message("nodePortRange spans at most 100 ports (end - start + 1), each a NodePort of the management cluster: narrow it")
)]
pub struct PortRange {
    #[schemars(range(min = 1, max = 65535))]
    pub start: u16,
    #[schemars(range(min = 1, max = 65535))]
    pub end: u16,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::require_node_ssh_private_keys)]
pub struct JumpHost {
    #[serde(flatten)]
    pub common: ServiceCommon,
    /// NodePort for SSH; the API server picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcOptions>,
    /// Public keys allowed to log in to the jump host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// Name of a Secret in the SIPCluster's namespace holding the private keys for the nodes.
    #[serde(default, rename = "nodeSSHPrivateKeys")]
    #[schemars(length(min = 1))]
    pub node_ssh_private_keys: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BmcOptions {
    /// When false, BMC addresses bypass any HTTP proxy (NO_PROXY is set on the jump host).
    #[serde(default)]
    pub proxy: bool,
}

/// An OpenID Connect provider (Dex) that the tenant kube-apiserver can trust
/// (`--oidc-issuer-url` = `issuer`, `--oidc-client-id` = one of the static clients).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.issuer.startsWith('https://') || self.issuer.startsWith('http://')").message("auth issuer must be an http(s) URL; kube-apiserver requires https://")
)]
pub struct Auth {
    /// Dex image; the default is documented in the README.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Labels of the management-cluster nodes the pods may run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// A fixed cluster IP for the Service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// NodePort publishing Dex; a ClusterIP Service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<u16>,
    /// The issuer URL exactly as tokens carry it and clients reach it.
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: String,
    /// Where Dex keeps refresh tokens and signing keys.
    #[serde(default)]
    pub storage: AuthStorage,
    /// Secret in the SIPCluster's namespace with the keys `connectors` and (optionally)
    /// `staticClients`, each a YAML list in Dex's own format.
    #[schemars(length(min = 1))]
    pub config_secret: String,
    /// A `kubernetes.io/tls` Secret in the SIPCluster's namespace; Dex serves HTTPS with it.
    /// Without it Dex serves plain HTTP (behind a TLS-terminating proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AuthStorage {
    /// In memory: signing keys and sessions are lost when the pod restarts.
    #[default]
    Memory,
    /// Dex's Kubernetes CRD storage, through the pod's ServiceAccount (which the admin must
    /// grant Dex's RBAC; see the README).
    Kubernetes,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../manifests/samples/sipcluster.yaml");

    fn sample() -> SIPCluster {
        let doc = serde_norway::Deserializer::from_str(SAMPLE)
            .map(|d| serde_json::Value::deserialize(d).unwrap())
            .find(|d| d["kind"] == "SIPCluster")
            .unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn the_predecessor_sample_reads_with_every_field() {
        let c = sample();
        let cp = &c.spec.nodes[&NodeRole::ControlPlane];
        assert_eq!(cp.topology_key(), Some("vino.airshipit.org/rack"));
        assert_eq!(
            cp.count,
            Some(NodeCount {
                active: 1,
                standby: 1
            })
        );
        assert_eq!(
            cp.label_selector.match_labels.as_ref().unwrap()["vino.airshipit.org/flavor"],
            "control-plane"
        );
        let jump = &c.spec.services.jump_host[0];
        assert_eq!(jump.common.node_interface_id, "oam-ipv4");
        assert_eq!(jump.node_port, Some(30000));
        assert_eq!(jump.bmc, Some(BmcOptions { proxy: false }));
        assert_eq!(jump.node_ssh_private_keys, "ssh-private-keys");
        assert_eq!(jump.ssh_authorized_keys.len(), 1);
        let lbw = &c.spec.services.load_balancer_worker[0];
        assert_eq!(
            lbw.node_port_range,
            PortRange {
                start: 30002,
                end: 30011
            }
        );
        assert_eq!(
            c.spec.services.load_balancer_control_plane[0].node_port,
            Some(30001)
        );
    }

    #[test]
    fn serialization_round_trips_and_omits_what_was_absent() {
        let c = sample();
        let json = serde_json::to_value(&c.spec).unwrap();
        let back: SIPClusterSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, c.spec);
        // Absent optional fields stay absent rather than turning into nulls or defaults.
        assert!(json["services"]["jumpHost"][0].get("clusterIP").is_none());
        assert!(json["services"]["jumpHost"][0].get("nodeLabels").is_none());
        assert_eq!(
            json["services"]["jumpHost"][0]["nodeSSHPrivateKeys"],
            "ssh-private-keys"
        );
    }

    #[test]
    fn missing_count_topology_and_services_default_to_nothing() {
        let spec: SIPClusterSpec = serde_json::from_value(serde_json::json!({
            "nodes": {"Worker": {"labelSelector": {}, "topologyKey": ""}}
        }))
        .unwrap();
        let worker = &spec.nodes[&NodeRole::Worker];
        assert_eq!(worker.wanted(), 0, "a missing count wants no hosts");
        assert_eq!(
            worker.topology_key(),
            None,
            "an empty topology key means no spreading"
        );
        assert_eq!(spec.services, Services::default());
        let partial: NodeCount = serde_json::from_value(serde_json::json!({"active": 3})).unwrap();
        assert_eq!(partial.total(), 3);
    }

    #[test]
    fn unknown_roles_read_but_are_set_aside() {
        let spec = serde_json::from_value::<SIPClusterSpec>(serde_json::json!({
            "nodes": {"Master": {}}
        }))
        .unwrap();
        assert!(spec.nodes.get(&NodeRole::ControlPlane).is_none());
        assert_eq!(spec.nodes.unknown, ["Master"]);
    }

    #[test]
    fn names_used_in_labels_and_status_match_their_serialized_form() {
        for role in NodeRole::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
        assert_eq!(Phase::default(), Phase::Gathering);
    }

    #[test]
    fn counts_do_not_overflow() {
        let c = NodeCount {
            active: u32::MAX,
            standby: 1,
        };
        assert_eq!(c.total(), u32::MAX);
    }

    #[test]
    fn schema_history_bound_matches_the_trim_limit() {
        let crd = serde_json::to_value(<SIPCluster as kube::CustomResourceExt>::crd()).unwrap();
        let history = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["history"];
        assert_eq!(history["maxItems"], HISTORY_LIMIT);
    }
}
