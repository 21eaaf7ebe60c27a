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
        let mut seen = std::collections::HashSet::new();
        for cluster in [long.as_str(), dotted, "tenant-one", digit, "tenant.one2"] {
            let name = object_name(cluster, id(ServiceKind::LoadBalancerWorker, 7));
            assert!(name.len() <= 63, "{name} is too long");
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
