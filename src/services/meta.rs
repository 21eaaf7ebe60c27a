//! Names, labels and ownership shared by every object a service renders.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use super::ServiceId;
use crate::api::LABEL_CLUSTER_NAME;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of `app.kubernetes.io/managed-by` on every child: what pruning selects on.
pub const MANAGED_BY: &str = "sip-operator";
/// Pod-template annotation that changes with the service's configuration, so pods roll.
pub const ANNOTATION_CONFIG_HASH: &str = "sip.airshipit.org/config-hash";

/// The label selector that finds every child of one SIPCluster (owner references then say
/// which SIPCluster with that name).
pub fn children_selector(cluster_name: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_CLUSTER_NAME}={cluster_name}")
}

/// Base name of a service instance's objects: `<cluster>-<service>[-<index>]`. Services need
/// DNS-1035 labels (63 characters, starting with a letter, no dots) while SIPCluster names are
/// DNS subdomains; a name that does not fit is shortened and made unique with a hash.
pub fn object_name(cluster: &str, id: ServiceId) -> String {
    let suffix = match id.index {
        0 => format!("-{}", id.kind.short_name()),
        i => format!("-{}-{i}", id.kind.short_name()),
    };
    let plain = format!("{cluster}{suffix}");
    let fits = plain.len() <= 63
        && plain.starts_with(|c: char| c.is_ascii_lowercase())
        && plain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if fits {
        return plain;
    }
    let hash = &hex(&Sha256::digest(cluster.as_bytes()))[..8];
    let cleaned: String = cluster
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // A Service name must start with a letter.
    let lead = if cleaned.starts_with(|c: char| c.is_ascii_lowercase()) {
        ""
    } else {
        "s"
    };
    let room = 63 - suffix.len() - hash.len() - lead.len() - 1;
    let stem: String = cleaned.chars().take(room).collect();
    format!("{lead}{stem}-{hash}{suffix}")
}

/// One service instance: the name, labels and owner every object it renders shares.
pub struct Instance<'a> {
    pub id: ServiceId,
    pub name: &'a str,
    namespace: &'a str,
    owner: &'a OwnerReference,
    /// The labels every object carries; pods carry them too.
    pub labels: BTreeMap<String, String>,
}

impl<'a> Instance<'a> {
    pub fn new(
        cluster: &str,
        namespace: &'a str,
        owner: &'a OwnerReference,
        id: ServiceId,
        name: &'a str,
    ) -> Self {
        let labels = BTreeMap::from([
            (LABEL_NAME.into(), id.kind.app().into()),
            (LABEL_INSTANCE.into(), name.into()),
            (LABEL_COMPONENT.into(), id.kind.component().into()),
            (LABEL_PART_OF.into(), "sip".into()),
            (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
            (LABEL_CLUSTER_NAME.into(), cluster.into()),
        ]);
        Instance {
            id,
            name,
            namespace,
            owner,
            labels,
        }
    }

    /// The subset of the labels a Deployment selects its pods by (immutable once created).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_INSTANCE.into(), self.name.into()),
            (LABEL_COMPONENT.into(), self.id.kind.component().into()),
        ])
    }

    /// Metadata of a child: the instance's name and labels, the SIPCluster as controller owner.
    pub fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.into()),
            namespace: Some(self.namespace.into()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The instance's Secret, holding `data`.
    pub fn secret(&self, data: impl IntoIterator<Item = (&'static str, Vec<u8>)>) -> Secret {
        Secret {
            metadata: self.meta(),
            type_: Some("Opaque".into()),
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v)))
                    .collect(),
            ),
            ..Secret::default()
        }
    }
}

/// A short digest of a service's configuration, for [`ANNOTATION_CONFIG_HASH`].
pub fn config_hash<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut digest = Sha256::new();
    for (key, value) in parts {
        digest.update((key.len() as u64).to_be_bytes());
        digest.update(key.as_bytes());
        digest.update((value.len() as u64).to_be_bytes());
        digest.update(value);
    }
    hex(&digest.finalize())[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ServiceKind;

    fn id(kind: ServiceKind, index: usize) -> ServiceId {
        ServiceId { kind, index }
    }

    #[test]
    fn names_read_plainly_when_they_fit() {
        let cases = [
            (
                ServiceKind::LoadBalancerControlPlane,
                0,
                "c1-lb-control-plane",
            ),
            (ServiceKind::LoadBalancerWorker, 2, "c1-lb-worker-2"),
            (ServiceKind::JumpHost, 0, "c1-jump-host"),
            (ServiceKind::Auth, 1, "c1-oidc-1"),
        ];
        for (kind, index, want) in cases {
            assert_eq!(
                object_name("c1", id(kind, index)),
                want,
                "{kind:?}[{index}]"
            );
        }
    }

    #[test]
    fn names_that_would_be_invalid_are_shortened_distinctly() {
        let long = "a".repeat(200);
        let dotted = "tenant.one";
        let digit = "1tenant";
        // Long and led by a digit: the leading letter comes out of the stem's room.
        let long_digit = format!("9{}", "b".repeat(200));
        let mut seen = std::collections::HashSet::new();
        for cluster in [
            long.as_str(),
            dotted,
            "tenant-one",
            digit,
            "tenant.one2",
            &long_digit,
        ] {
            let name = object_name(cluster, id(ServiceKind::LoadBalancerWorker, 7));
            assert!(name.len() <= 63, "{name} is too long");
            if cluster.len() > 63 {
                assert_eq!(name.len(), 63, "{name} uses the whole room");
            }
            assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name} is not a DNS-1035 label"
            );
            assert!(name.ends_with("-lb-worker-7"), "{name}");
            assert!(seen.insert(name.clone()), "{name} collides");
        }
    }

    #[test]
    fn the_config_hash_separates_keys_from_values() {
        let a = config_hash([("ab", b"c".as_slice())]);
        let b = config_hash([("a", b"bc".as_slice())]);
        assert_ne!(a, b);
        assert_eq!(a, config_hash([("ab", b"c".as_slice())]));
        assert_eq!(a.len(), 16);
    }
}

/// Whether an object found under one of a service's names is the SIPCluster's to apply: owned
/// by it (`uid`), or left by an earlier SIPCluster of the same name (sip's labels for that
/// name, a SIPCluster owner of that name) that the garbage collector has not removed yet.
/// Anything else someone else made, and sip must not take it over (nor, through its owner
/// reference, have it deleted with the SIPCluster).
pub fn is_ours(found: &ObjectMeta, cluster: &str, uid: &str) -> bool {
    let owners = found.owner_references.as_deref().unwrap_or_default();
    if owners.iter().any(|o| o.uid == uid) {
        return true;
    }
    let labels = found.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(LABEL_MANAGED_BY) == Some(MANAGED_BY)
        && label(LABEL_CLUSTER_NAME) == Some(cluster)
        && owners
            .iter()
            .any(|o| o.kind == "SIPCluster" && o.name == cluster && o.controller == Some(true))
}

/// Who made `found`, for the refusal: its controller, else its field managers.
pub fn made_by(found: &ObjectMeta) -> String {
    let owners = found.owner_references.as_deref().unwrap_or_default();
    if let Some(o) = owners.iter().find(|o| o.controller == Some(true)) {
        return format!("controlled by {} {}", o.kind, o.name);
    }
    let mut managers: Vec<&str> = found
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    managers.sort();
    managers.dedup();
    match managers.as_slice() {
        [] => "made by someone else".into(),
        m => format!("written by {}", m.join(", ")),
    }
}

#[cfg(test)]
mod ownership_tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn owner(kind: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }
    }

    fn ours_labels(cluster: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([
            (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
            (LABEL_CLUSTER_NAME.into(), cluster.into()),
        ]))
    }

    #[test]
    fn only_this_clusters_objects_or_its_namesakes_leftovers_are_taken() {
        let owned = ObjectMeta {
            owner_references: Some(vec![owner("SIPCluster", "t", "uid-1")]),
            ..ObjectMeta::default()
        };
        assert!(is_ours(&owned, "t", "uid-1"));
        // An earlier SIPCluster "t" (deleted, recreated) whose children the GC has not removed.
        let leftover = ObjectMeta {
            labels: ours_labels("t"),
            owner_references: Some(vec![owner("SIPCluster", "t", "uid-0")]),
            ..ObjectMeta::default()
        };
        assert!(is_ours(&leftover, "t", "uid-1"));
        // The same labels copied onto an object someone else controls, or onto a bare one.
        let copied = ObjectMeta {
            labels: ours_labels("t"),
            owner_references: Some(vec![owner("Deployment", "t", "uid-9")]),
            ..ObjectMeta::default()
        };
        assert!(!is_ours(&copied, "t", "uid-1"));
        assert_eq!(made_by(&copied), "controlled by Deployment t");
        let bare = ObjectMeta {
            labels: ours_labels("t"),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl-create".into()),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        };
        assert!(!is_ours(&bare, "t", "uid-1"));
        assert_eq!(made_by(&bare), "written by kubectl-create");
        // Another SIPCluster's.
        let other = ObjectMeta {
            labels: ours_labels("u"),
            owner_references: Some(vec![owner("SIPCluster", "u", "uid-2")]),
            ..ObjectMeta::default()
        };
        assert!(!is_ours(&other, "t", "uid-1"));
    }
}
