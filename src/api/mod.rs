//! The API types the operator owns (`SIPCluster`) and reads (`BareMetalHost`), and the names
//! it writes onto other objects.

pub mod baremetalhost;
pub mod legacy;
mod nodes;
mod schema;
pub mod sipcluster;
pub mod status;

pub use baremetalhost::{BareMetalHost, BareMetalHostSpec, BareMetalHostStatus};
pub use nodes::NodeSets;
pub use sipcluster::{
    Auth, AuthStorage, HistoryCheckpoint, HostRecord, HostState, JumpHost,
    LoadBalancerControlPlane, LoadBalancerWorker, NodeCount, NodeRole, NodeSet, Phase, SIPCluster,
    SIPClusterSpec, SIPClusterStatus, ServiceCommon, ServiceStatus, Services, TransitionRecord,
};

/// Host label naming the SIPCluster's namespace.
pub const LABEL_CLUSTER_NAMESPACE: &str = "sip.airshipit.org/cluster-namespace";
/// Host label naming the SIPCluster.
pub const LABEL_CLUSTER_NAME: &str = "sip.airshipit.org/cluster-name";
/// Host label with the host's role: `ControlPlane` or `Worker`.
pub const LABEL_NODE_TYPE: &str = "sip.airshipit.org/node-type";
/// Annotation a person puts on a member host to have it released first when shrinking.
pub const ANNOTATION_RELEASE: &str = "sip.airshipit.org/release";
/// Finalizer that keeps a SIPCluster until its services and host labels are gone.
pub const FINALIZER: &str = "sip.airship.airshipit.org/finalizer";
/// The status condition that says whether the cluster is Ready (the predecessor's name).
pub const CONDITION_READY: &str = "Ready";
