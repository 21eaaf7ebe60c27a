//! What the operator knows of a SIPCluster (`.status`): the phase (the state machine's
//! state), the host ledger, the services, the conditions and the log of transitions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;
use super::sipcluster::NodeRole;

/// How many transitions `status.history` keeps; the schema's `maxItems` says the same, so the
/// API server would refuse a status that the operator forgot to trim.
pub const HISTORY_LIMIT: usize = 32;

/// The persisted phase: the state machine's state, written to `.status.phase`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Choosing hosts for every role.
    #[default]
    Gathering,
    /// Reading each chosen host's networkData and BMC credentials.
    Extracting,
    /// Applying the support services.
    DeployingInfra,
    /// Labeling the chosen hosts for this cluster.
    Labeling,
    /// Everything asked for is in place.
    Ready,
    /// Removing services and labels before the SIPCluster goes away.
    Decommissioning,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Gathering,
        Phase::Extracting,
        Phase::DeployingInfra,
        Phase::Labeling,
        Phase::Ready,
        Phase::Decommissioning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Gathering => "Gathering",
            Phase::Extracting => "Extracting",
            Phase::DeployingInfra => "DeployingInfra",
            Phase::Labeling => "Labeling",
            Phase::Ready => "Ready",
            Phase::Decommissioning => "Decommissioning",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator knows; the phase and the host ledger are its only memory across restarts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SIPClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The spec generation the phase and conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The host ledger: every host chosen for this cluster, or found unusable while choosing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRecord>,
    /// State of each support service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,
    /// A sum of the versions of the Secrets and ConfigMaps the services were last rendered from
    /// (SSH keys, Dex's configuration, templates, BMC credentials); when they change, the
    /// services are rendered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_version: Option<String>,
    /// The latest phase transitions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub history: Vec<TransitionRecord>,
    /// The replay of the transitions dropped from `history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_checkpoint: Option<HistoryCheckpoint>,
    /// Control-plane hosts claimed/wanted, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<String>,
    /// Worker hosts claimed/wanted, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,
}

/// One host in the ledger. Never holds credentials: the BMC password is read when needed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub name: String,
    pub namespace: String,
    /// The host's UID when chosen, so a host deleted and re-created under the same name is
    /// recognised as a different machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub role: NodeRole,
    pub state: HostState,
    /// Why the host is unusable or released, naming the object and the fix; or that it was
    /// adopted from the predecessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The host's value of the role's topology key when chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_domain: Option<String>,
    /// Extracted IP per networkData link id that a service needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
    /// The BMC address from the host's spec (no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_address: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostState {
    /// Chosen by Gathering; nothing read yet.
    Chosen,
    /// Its addresses and BMC details were read.
    Extracted,
    /// Carries this cluster's labels.
    Labeled,
    /// Being released: its labels are removed before it leaves the ledger, so a crash in
    /// between never leaves a labeled host that no ledger names.
    Releasing,
    /// Cannot serve (bad secret, taken meanwhile); kept so it is not chosen again until fixed.
    /// Not a claim: other clusters may choose it, so the controller removes this cluster's
    /// labels from it (a labeled member can turn unusable when a new interface is needed).
    Unusable,
}

impl HostState {
    /// Whether a record in this state claims the host for its cluster.
    pub fn claims(self) -> bool {
        !matches!(self, HostState::Unusable)
    }

    /// Whether the host is a current member (serving, or about to).
    pub fn is_member(self) -> bool {
        matches!(
            self,
            HostState::Chosen | HostState::Extracted | HostState::Labeled
        )
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `loadBalancerControlPlane`, `loadBalancerWorker`, `jumpHost`, ...
    pub service: String,
    /// Index of the instance in its spec list.
    pub index: u32,
    /// Name of the objects deployed for it.
    pub name: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One transition of the state machine: the event it was handed (its input) and where it led.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransitionRecord {
    pub time: Time,
    /// The machine's input: the phase is these events replayed through the machine, from its
    /// start or from the history's checkpoint. Absent in records written before sip recorded
    /// it, which replay by `from` and `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::machine::Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Phase>,
    pub to: Phase,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Where the transitions dropped from the bounded history led: their replay, kept so the
/// history that remains can still be replayed through the machine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryCheckpoint {
    /// The phase the dropped transitions led to: the replay of the kept ones starts here.
    pub phase: Phase,
    /// How many transitions it stands for.
    pub transitions: u32,
}
