//! The scheduler's view of a host: only what eligibility depends on, taken from a snapshot.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::Labels;

use crate::api::baremetalhost::{
    OPERATIONAL_STATUS_ERROR, PAUSED_ANNOTATION, UNHEALTHY_ANNOTATION,
};
use crate::api::{
    ANNOTATION_RELEASE, BareMetalHost, HostRecord, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE,
};

/// A host's identity: hosts live in any namespace.
///
/// Kept as one `namespace/name` string with a fingerprint computed once: hashing and unequal
/// comparisons use the fingerprint alone, so looking a host up in a set of claims never reads
/// its names, which at 100,000 hosts was a third of a scheduling decision.
#[derive(Clone)]
pub struct HostKey {
    /// `namespace/name`; a namespace never contains `/`.
    full: Box<str>,
    namespace_len: u32,
    fingerprint: u64,
}

impl HostKey {
    pub fn new(namespace: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        let (namespace, name) = (namespace.as_ref(), name.as_ref());
        // Any fixed function of the names will do: equality still compares them.
        let fingerprint = FixedState::with_seed(0x5150).hash_one((namespace, name));
        HostKey {
            full: format!("{namespace}/{name}").into_boxed_str(),
            namespace_len: namespace.len() as u32,
            fingerprint,
        }
    }

    pub fn of_record(record: &HostRecord) -> Self {
        HostKey::new(&record.namespace, &record.name)
    }

    pub fn namespace(&self) -> &str {
        &self.full[..self.namespace_len as usize]
    }

    pub fn name(&self) -> &str {
        &self.full[self.namespace_len as usize + 1..]
    }
}

impl PartialEq for HostKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.namespace_len == other.namespace_len
            && self.full == other.full
    }
}

impl Eq for HostKey {}

impl Hash for HostKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

/// Namespace, then name: the order people read.
impl Ord for HostKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.namespace(), self.name()).cmp(&(other.namespace(), other.name()))
    }
}

impl PartialOrd for HostKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .finish()
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
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
    pub labels: Labels,
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
    /// `spec.consumerRef` names a holder (`Kind namespace/name`): no candidate for anyone.
    pub consumer: Option<String>,
}

/// What takes a host out of service, read from the host itself.
struct Service {
    deleting: bool,
    paused: bool,
    errored: bool,
    unhealthy: bool,
}

impl Service {
    fn of(host: &BareMetalHost) -> Self {
        let meta = &host.metadata;
        let annotated = |key: &str| {
            meta.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(key))
        };
        let errored = host.status.as_ref().is_some_and(|s| {
            s.error_message.as_deref().is_some_and(|m| !m.is_empty())
                || s.operational_status.as_deref() == Some(OPERATIONAL_STATUS_ERROR)
        });
        Service {
            deleting: meta.deletion_timestamp.is_some(),
            paused: annotated(PAUSED_ANNOTATION),
            errored,
            unhealthy: annotated(UNHEALTHY_ANNOTATION),
        }
    }
}

/// Whether `host` is free for any cluster to choose, as far as the host itself says (its
/// labels give it to no cluster, no other consumer holds it, and it is in service): what the metrics count at each scrape,
/// without building a [`HostView`] (a copy of every host's labels).
pub fn free_by_itself(host: &BareMetalHost) -> bool {
    let s = Service::of(host);
    let labeled = host
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_CLUSTER_NAME));
    !(labeled || s.deleting || s.paused || s.errored || s.unhealthy)
        && host.spec.consumer_ref.is_none()
}

impl HostView {
    /// The view of a host, its labels copied (for a one-off look; see [`HostView::of_cached`]).
    pub fn from_host(host: &BareMetalHost) -> Self {
        Self::with_labels(
            host,
            Labels::from(host.metadata.labels.clone().unwrap_or_default()),
        )
    }

    /// The view of a cached host, sharing its labels instead of copying them.
    pub fn of_cached(host: &Arc<BareMetalHost>) -> Self {
        Self::with_labels(host, Labels::of(host))
    }

    fn with_labels(host: &BareMetalHost, labels: Labels) -> Self {
        let meta = &host.metadata;
        let annotations = meta.annotations.as_ref();
        let annotated = |key: &str| annotations.is_some_and(|a| a.contains_key(key));
        let Service {
            deleting,
            paused,
            errored,
            unhealthy,
        } = Service::of(host);
        HostView {
            key: HostKey::new(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            ),
            uid: meta.uid.clone(),
            labels,
            deleting,
            paused,
            errored,
            unhealthy,
            release_requested: annotated(ANNOTATION_RELEASE),
            has_network_data: host
                .spec
                .network_data
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            consumer: host.spec.consumer_ref.as_ref().map(|c| c.describe()),
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

    /// Whether the host's labels give it to exactly `cluster` (without building its key).
    pub fn is_labeled_for(&self, cluster: &ClusterKey) -> bool {
        self.labels.get(LABEL_CLUSTER_NAME) == Some(&cluster.name)
            && self.labels.get(LABEL_CLUSTER_NAMESPACE) == Some(&cluster.namespace)
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::HostKey;

    #[test]
    fn a_key_is_its_two_names() {
        let key = HostKey::new("metal3", "node-1");
        assert_eq!(key.namespace(), "metal3");
        assert_eq!(key.name(), "node-1");
        assert_eq!(key.to_string(), "metal3/node-1");
        assert_eq!(key, HostKey::new(String::from("metal3"), "node-1"));
        assert_ne!(key, HostKey::new("metal", "3/node-1"));
        assert_ne!(key, HostKey::new("metal3", "node-2"));
        assert_eq!(HostKey::new("", "x").namespace(), "");
    }

    #[test]
    fn keys_sort_by_namespace_then_name() {
        // As text "a-b/x" sorts before "a/x"; as names, namespace "a" comes first.
        let mut keys = [
            HostKey::new("a-b", "x"),
            HostKey::new("a", "y"),
            HostKey::new("a", "x"),
        ];
        keys.sort();
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["a/x", "a/y", "a-b/x"]);
    }

    #[test]
    fn equal_keys_are_found_in_sets() {
        let set: HashSet<HostKey> = (0..1000)
            .map(|i| HostKey::new("m", format!("h{i}")))
            .collect();
        assert!((0..1000).all(|i| set.contains(&HostKey::new("m", format!("h{i}")))));
        assert!(!set.contains(&HostKey::new("n", "h1")));
        assert!(!set.contains(&HostKey::new("m", "h1000")));
    }

    #[test]
    fn a_key_debugs_as_its_two_names() {
        assert_eq!(
            format!("{:?}", HostKey::new("metal3", "node-1")),
            r#"HostKey { namespace: "metal3", name: "node-1" }"#
        );
    }

    #[test]
    fn a_host_is_free_by_itself_only_unlabeled_unheld_and_in_service() {
        use super::free_by_itself;
        use crate::api::BareMetalHost;
        type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
        let host = |edit: Edit<'_>| -> BareMetalHost {
            let mut h = serde_json::json!({
                "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                "metadata": {"name": "h", "namespace": "m", "labels": {"flavor": "w"}},
                "spec": {},
            });
            edit(&mut h);
            serde_json::from_value(h).unwrap()
        };
        assert!(free_by_itself(&host(&|_| {})));
        let taken: [(&str, Edit<'_>); 6] = [
            ("labeled", &|h| {
                h["metadata"]["labels"]["sip.airshipit.org/cluster-name"] = "c".into()
            }),
            ("deleting", &|h| {
                h["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z".into();
                h["metadata"]["finalizers"] = serde_json::json!(["x"]);
            }),
            ("paused", &|h| {
                h["metadata"]["annotations"] =
                    serde_json::json!({"baremetalhost.metal3.io/paused": ""})
            }),
            ("errored", &|h| {
                h["status"] = serde_json::json!({"errorMessage": "BMC unreachable"})
            }),
            ("unhealthy", &|h| {
                h["metadata"]["annotations"] = serde_json::json!({"capi.metal3.io/unhealthy": ""})
            }),
            ("held", &|h| {
                h["spec"]["consumerRef"] = serde_json::json!({"kind": "Metal3Machine", "name": "m"})
            }),
        ];
        for (why, edit) in taken {
            assert!(!free_by_itself(&host(edit)), "a {why} host is not free");
        }
    }
}
