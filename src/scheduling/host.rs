//! The scheduler's view of a host: only what eligibility depends on, taken from a snapshot.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::baremetalhost::{
    OPERATIONAL_STATUS_ERROR, PAUSED_ANNOTATION, UNHEALTHY_ANNOTATION,
};
use crate::api::{
    ANNOTATION_RELEASE, BareMetalHost, HostRecord, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE,
};

/// A host's identity: hosts live in any namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostKey {
    pub namespace: String,
    pub name: String,
}

impl HostKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        HostKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of_record(record: &HostRecord) -> Self {
        HostKey::new(&record.namespace, &record.name)
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A SIPCluster's identity, as written in the host labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    pub namespace: String,
    pub name: String,
}

impl ClusterKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ClusterKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What scheduling needs to know of one host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostView {
    pub key: HostKey,
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// metal3's paused annotation is present.
    pub paused: bool,
    /// metal3 reports an error (`status.errorMessage` or `operationalStatus: error`).
    pub errored: bool,
    /// Annotated unhealthy by cluster-api-provider-metal3.
    pub unhealthy: bool,
    /// A person asked for this host to be released first when the cluster shrinks.
    pub release_requested: bool,
    /// `spec.networkData` names a Secret.
    pub has_network_data: bool,
}

impl HostView {
    pub fn from_host(host: &BareMetalHost) -> Self {
        let meta = &host.metadata;
        let annotations = meta.annotations.as_ref();
        let annotated = |key: &str| annotations.is_some_and(|a| a.contains_key(key));
        let status = host.status.as_ref();
        let errored = status.is_some_and(|s| {
            s.error_message.as_deref().is_some_and(|m| !m.is_empty())
                || s.operational_status.as_deref() == Some(OPERATIONAL_STATUS_ERROR)
        });
        HostView {
            key: HostKey::new(
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            ),
            uid: meta.uid.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            paused: annotated(PAUSED_ANNOTATION),
            errored,
            unhealthy: annotated(UNHEALTHY_ANNOTATION),
            release_requested: annotated(ANNOTATION_RELEASE),
            has_network_data: host
                .spec
                .network_data
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(|n| !n.is_empty()),
        }
    }

    /// The cluster the host's labels give it to, if any.
    pub fn labeled_for(&self) -> Option<ClusterKey> {
        let name = self.labels.get(LABEL_CLUSTER_NAME)?;
        let namespace = self
            .labels
            .get(LABEL_CLUSTER_NAMESPACE)
            .cloned()
            .unwrap_or_default();
        Some(ClusterKey::new(namespace, name.clone()))
    }

    /// Whether the host's labels give it to a cluster other than `cluster`.
    pub fn labeled_for_other(&self, cluster: &ClusterKey) -> bool {
        match self.labels.get(LABEL_CLUSTER_NAME) {
            None => false,
            Some(name) => {
                name != &cluster.name
                    || self.labels.get(LABEL_CLUSTER_NAMESPACE) != Some(&cluster.namespace)
            }
        }
    }

    /// The host's failure domain for `topology_key`: `None` when the label is missing or empty.
    pub fn domain(&self, topology_key: &str) -> Option<&str> {
        self.labels
            .get(topology_key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether metal3 or a person has taken the host out of service.
    pub fn unavailable(&self) -> bool {
        self.deleting || self.paused || self.errored || self.unhealthy
    }
}
